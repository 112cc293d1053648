use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc: per-thread free lists, so the two actix workers do not contend
/// on the allocator (malloc/free were ~10 % of a permission check's CPU).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Log lines go to stderr from a thread of their own: a slow reader of
    // stderr never stalls a request (lines beyond a 128k backlog are dropped
    // and counted, not waited for).
    let (writer, flush_on_exit) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(writer)
        .init();
    let cli = ibl_data_manager::cli::Cli::parse();
    let code = actix_web::rt::System::new().block_on(ibl_data_manager::cli::run(cli));
    drop(flush_on_exit);
    std::process::exit(code);
}
