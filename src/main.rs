use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc: per-thread free lists, so the two actix workers do not contend
/// on the allocator (malloc/free were ~10 % of a permission check's CPU).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = ibl_data_manager::cli::Cli::parse();
    let code = actix_web::rt::System::new().block_on(ibl_data_manager::cli::run(cli));
    std::process::exit(code);
}
