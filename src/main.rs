use clap::Parser;

fn main() {
    let cli = ibl_data_manager::cli::Cli::parse();
    ibl_data_manager::process::run(|| ibl_data_manager::cli::run(cli))
}
