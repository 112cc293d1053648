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
    let store = match ibl_edge::server::open_event_store(settings).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match command(store).await {
        Ok(created) => match serde_json::to_string(&created) {
            Ok(json) => {
                println!("{json}");
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
