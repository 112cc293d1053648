//! What every binary does before and after its server: the allocator, the
//! log, the settings from flags and environment, and the exit code.

use std::future::Future;
use std::net::TcpListener;

use clap::Parser;
use ibl_edge::server::{Running, Settings};
use tracing_subscriber::EnvFilter;

/// mimalloc: per-thread free lists, so the two actix workers do not contend
/// on the allocator (malloc/free were ~10 % of a permission check's CPU).
/// Built without its advice for transparent huge pages (feature `no_thp`):
/// memory it frees goes back to the system in 4 KiB pages, not kept
/// resident in 2 MiB ones. (Where the kernel's THP mode is `always`, the
/// kernel still uses them; `madvise` is the common default.)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets up the log (to stderr from a thread of its own: a slow reader of
/// stderr never stalls a request; lines beyond a 128k backlog are dropped
/// and counted), runs `main` on an actix system and exits with its code.
pub fn run<F, Fut>(main: F) -> !
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = i32>,
{
    let (writer, flush_on_exit) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(writer)
        .init();
    let code = actix_web::rt::System::new().block_on(main());
    drop(flush_on_exit);
    std::process::exit(code);
}

/// The command line of a split service: the settings and nothing else.
#[derive(Debug, Parser)]
#[command(version)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub settings: Settings,
}

/// Runs one service of the split deployment: parses its settings, binds
/// `IBL_ADDR`, builds it with `build` and serves until SIGTERM.
pub fn service<B, Fut>(name: &'static str, about: &'static str, build: B) -> !
where
    B: FnOnce(Settings, TcpListener) -> Fut,
    Fut: Future<Output = std::io::Result<Running>>,
{
    use clap::{CommandFactory, FromArgMatches};
    let matches = ServiceArgs::command().name(name).about(about).get_matches();
    let args = match ServiceArgs::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    run(|| async move {
        let settings = args.settings;
        let listener = match TcpListener::bind(&settings.addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: binding {}: {e}", settings.addr);
                return 1;
            }
        };
        let addr = settings.addr.clone();
        match build(settings, listener).await {
            Ok(running) => running.until_stopped(&addr).await,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    })
}
