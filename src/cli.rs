//! The command line: `serve` (the default), `routes`, `relay`, `platform
//! create` and `platform key`.

use std::sync::Arc;

use clap::{Parser, Subcommand};
use ibl_command_service::platforms::{create_platform, mint_key, NewPlatform};
use ibl_events::EventStore;

use crate::app::{build, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "ibl",
    version,
    about = "ibl.ai credentials and RBAC, event-sourced"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Print the routes and the permission each needs, as Markdown.
    Routes,
    /// Publish the log's events after a position to NATS JetStream (the
    /// server's relay does this as events arrive; this republishes history
    /// for a new stream or a subscriber that lost its own), then exit.
    Relay {
        /// Publish the events after this position (0: all of them).
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
    /// Check the log against the audit log's evidence: every signed
    /// checkpoint's signature and root, then every event's leaf; exits 1
    /// naming the first event altered, reordered, inserted or deleted
    /// (0: intact, 2: the check could not run).
    Verify {
        /// The log's verifier key (`origin+keyid+base64`, as served by
        /// `/api/audit/checkpoint` in `vkey`); default: derived from the
        /// signing key's file (`--signing-key`).
        #[arg(long)]
        vkey: Option<String>,
    },
    /// Rebuild every read model from position 0 beside the live one (as
    /// its snapshot and files in the read models' folder keep it, the
    /// server may run; or in Redis, into --target) and compare their
    /// digests; exits 1 naming those
    /// that differ (0: all the same, 2: the replay could not run).
    Replay {
        /// Compare this platform's part of each model only (its digests
        /// are the same in any store its export was imported into).
        #[arg(long)]
        platform: Option<String>,
        /// With REDIS_URL (the live models in Redis): the empty Redis
        /// database to rebuild them in (`redis://host:6379/15`).
        #[arg(long)]
        target: Option<String>,
    },
    /// Write a platform's events, as stored, as JSON lines (to move it
    /// into another store with `ibl import`); prints what it wrote to
    /// stderr.
    Export {
        /// The platform's key.
        #[arg(long)]
        platform: String,
        /// The file to write (default: standard output).
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Load an export into the configured store, which must be empty,
    /// keeping the events' ids, streams, revisions, times, actors and
    /// order; then move the id counters past the highest id loaded.
    Import {
        /// The export's file (`-`: standard input).
        file: std::path::PathBuf,
    },
    /// Manage platforms (tenants).
    Platform {
        #[command(subcommand)]
        command: PlatformCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlatformCommand {
    /// Create a platform, its admin user and a first API key; prints JSON.
    Create {
        #[arg(long)]
        key: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_username: String,
        #[arg(long)]
        admin_email: String,
    },
    /// Mint a new API key for an existing user of a platform (the way back
    /// in for a tenant that lost its keys); prints JSON with `api_key`.
    Key {
        /// The platform's key.
        #[arg(long)]
        key: String,
        #[arg(long)]
        username: String,
        /// The key's name (default: `operator-{time}-{random}`).
        #[arg(long)]
        name: Option<String>,
        /// Reactivate the user first if they were deactivated.
        #[arg(long)]
        reactivate: bool,
    },
}

/// Runs the command line; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.settings).await,
        Command::Routes => {
            print!("{}", crate::routes::markdown());
            0
        }
        Command::Relay { from } => {
            let Some(bus) = cli.settings.bus() else {
                eprintln!("error: relay needs --nats-url / NATS_URL");
                return 2;
            };
            operator(&cli.settings, async |store| {
                let (published, last) =
                    ibl_projections::relay::republish(store.as_ref(), &bus, from)
                        .await
                        .map_err(ibl_edge::ApiError::Unavailable)?;
                Ok(serde_json::json!({"published": published, "from": from, "to": last}))
            })
            .await
        }
        Command::Verify { vkey } => verify(&cli.settings, vkey).await,
        Command::Replay { platform, target } => {
            replay(&cli.settings, platform.as_deref(), target.as_deref()).await
        }
        Command::Export { platform, output } => {
            transfer(&cli.settings, async |store| {
                let mut out: Box<dyn std::io::Write> = match &output {
                    Some(path) => Box::new(std::io::BufWriter::new(
                        std::fs::File::create(path)
                            .map_err(|e| format!("{}: {e}", path.display()))?,
                    )),
                    None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                };
                ibl_events::transfer::export(store.as_ref(), &platform, &mut out).await
            })
            .await
        }
        Command::Import { file } => {
            transfer(&cli.settings, async |store| {
                let input: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
                    Box::new(std::io::stdin().lock())
                } else {
                    Box::new(std::io::BufReader::new(
                        std::fs::File::open(&file)
                            .map_err(|e| format!("{}: {e}", file.display()))?,
                    ))
                };
                ibl_events::transfer::import(store.as_ref(), input).await
            })
            .await
        }
        Command::Platform {
            command:
                PlatformCommand::Create {
                    key,
                    name,
                    admin_username,
                    admin_email,
                },
        } => {
            let new = NewPlatform {
                key,
                name,
                admin_username,
                admin_email,
            };
            operator(&cli.settings, async |store| {
                create_platform(&store, new).await
            })
            .await
        }
        Command::Platform {
            command:
                PlatformCommand::Key {
                    key,
                    username,
                    name,
                    reactivate,
                },
        } => {
            operator(&cli.settings, async |store| {
                mint_key(&store, &key, &username, name, reactivate).await
            })
            .await
        }
    }
}

/// `ibl verify`: prints what it checked, and the first problem found.
async fn verify(settings: &Settings, vkey: Option<String>) -> i32 {
    let (report, verifier) = match checked(settings, vkey).await {
        Ok(done) => done,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    println!(
        "{} events in the log (root {}), {} recorded leaves, {} signed checkpoints by {} (latest of size {})",
        report.events,
        hex::encode(report.root),
        report.recorded,
        report.checkpoints,
        verifier.vkey(),
        report.signed
    );
    match report.problem {
        None => {
            println!(
                "verified: the log matches its record; {} events not recorded yet, {} recorded but not yet signed",
                report.events.saturating_sub(report.recorded),
                report.recorded.saturating_sub(report.signed)
            );
            0
        }
        Some(problem) => {
            println!("TAMPERED: {problem}");
            1
        }
    }
}

/// The log's key (`--vkey`, else the signing key's file), the evidence in
/// the data folder and the store, checked against each other.
async fn checked(
    settings: &Settings,
    vkey: Option<String>,
) -> Result<(ibl_projections::audit_verify::Report, ibl_audit::Verifier), String> {
    use ibl_projections::audit_log::{read_evidence, AUDIT_FILE};
    let verifier = match vkey {
        Some(vkey) => ibl_audit::Verifier::from_vkey(&vkey).map_err(|e| format!("--vkey: {e}"))?,
        None => {
            let path = settings.signing_key_path().map_err(|e| e.to_string())?;
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "{}: {e} (give the log's verifier key with --vkey)",
                    path.display()
                )
            })?;
            ibl_audit::Signer::from_skey(text.trim())
                .map_err(|e| format!("{}: {e}", path.display()))?
                .verifier()
        }
    };
    let path = settings.data_dir.join(AUDIT_FILE);
    if !path.exists() {
        return Err(format!(
            "{} does not exist: no audit evidence to check the log against",
            path.display()
        ));
    }
    let evidence = read_evidence(&path)?;
    let store = ibl_edge::server::open_event_store(settings)
        .await
        .map_err(|e| e.to_string())?;
    let report = ibl_projections::audit_verify::verify(store.as_ref(), &evidence, &verifier)
        .await
        .map_err(|e| format!("reading the log: {e}"))?;
    Ok((report, verifier))
}

/// Runs an export or an import against the configured store; prints what
/// it moved (JSON) to stderr, standard output being the export's. Exit
/// code 1 when it failed, 2 when the store could not be opened.
async fn transfer(
    settings: &Settings,
    command: impl AsyncFnOnce(Arc<dyn EventStore>) -> Result<ibl_events::transfer::Moved, String>,
) -> i32 {
    match on_store(settings, command).await {
        Ok(Ok(moved)) => {
            eprintln!("{}", serde_json::json!(moved));
            0
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            1
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// Opens the configured store and runs `command` on it (`Err`: the store
/// could not be opened).
async fn on_store<T>(
    settings: &Settings,
    command: impl AsyncFnOnce(Arc<dyn EventStore>) -> T,
) -> Result<T, std::io::Error> {
    let store = ibl_edge::server::open_event_store(settings).await?;
    Ok(command(store).await)
}

/// `ibl replay`: prints each model's comparison, then the verdict.
async fn replay(settings: &Settings, platform: Option<&str>, target: Option<&str>) -> i32 {
    let compared = match crate::replay::replayed(settings, platform, target).await {
        Ok(compared) => compared,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let differ: Vec<&str> = compared
        .iter()
        .filter(|c| !c.same())
        .map(|c| c.model)
        .collect();
    for c in &compared {
        if c.same() {
            println!("{} at position {}: same ({})", c.model, c.position, c.live);
        } else {
            println!(
                "{} at position {}: DIFFERS (live {}, replayed {})",
                c.model, c.position, c.live, c.replayed
            );
        }
    }
    if differ.is_empty() {
        println!("replayed: {} read models match the log", compared.len());
        0
    } else {
        println!("DIFFER: {}", differ.join(", "));
        1
    }
}

async fn serve(settings: &Settings) -> i32 {
    match build(settings).await {
        Ok(app) => app.until_stopped(&settings.addr).await,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// Runs an operator command against the configured store and prints its
/// result as one JSON object; exit code 2 when the command is refused.
async fn operator<T: serde::Serialize>(
    settings: &Settings,
    command: impl AsyncFnOnce(Arc<dyn EventStore>) -> Result<T, ibl_edge::ApiError>,
) -> i32 {
    match on_store(settings, command).await {
        Ok(Ok(created)) => match serde_json::to_string(&created) {
            Ok(json) => {
                println!("{json}");
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            2
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
