use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = mailconfd::cli::Cli::parse();
    let _ = cli;
    std::process::ExitCode::SUCCESS
}
