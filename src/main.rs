use clap::Parser;
use tracing_subscriber::EnvFilter;

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
