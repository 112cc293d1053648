//! The command line: `serve` (the default) and `platform create`.

use std::path::Path;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use ibl_command_service::platforms::{create_platform, NewPlatform};
use ibl_events::sqlite::SqliteStore;
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
}

/// Runs the command line; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.settings).await,
        Command::Routes => {
            print!("{}", crate::routes::markdown());
            0
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
            platform_create(&cli.settings.data_dir, new).await
        }
    }
}

async fn serve(settings: &Settings) -> i32 {
    match build(settings).await {
        Ok(app) => {
            tracing::info!(addr = %settings.addr, port = app.port, "serving");
            match app.server.await {
                Ok(()) => {
                    tracing::info!("stopped");
                    0
                }
                Err(e) => {
                    tracing::error!(error = %e, "server failed");
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn platform_create(data_dir: &Path, new: NewPlatform) -> i32 {
    let store: Arc<dyn EventStore> = match SqliteStore::open(data_dir) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!(
                "error: opening the event store in {}: {e}",
                data_dir.display()
            );
            return 1;
        }
    };
    match create_platform(&store, new).await {
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
