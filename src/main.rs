//! The mailconfd binary: parse the command line, set up logging, run the
//! command, turn its error into stderr lines and an exit code.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use clap::Parser;
use mailconfd::cli::{Cli, Command};
use mailconfd::commands::{self, CommandError, EXIT_CONFIG};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            init_tracing();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return fail(&format!("starting the runtime: {e}"), 1),
            };
            match runtime.block_on(mailconfd::app::serve_from_file(&config.path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => match e.downcast_ref::<mailconfd::config::ConfigError>() {
                    Some(c) => fail(&c.lines().join("\n"), EXIT_CONFIG),
                    None => fail(&format!("{e:#}"), 1),
                },
            }
        }
        Command::Check { config } => match commands::check(&config.path) {
            Ok((cfg, summary)) => {
                for w in &cfg.warnings {
                    eprintln!("warning: {w}");
                }
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => command_failed(e),
        },
        Command::Render {
            config,
            email,
            format,
        } => match commands::render(&config.path, &email, format) {
            Ok(bytes) => write_stdout(&bytes),
            Err(e) => command_failed(e),
        },
        Command::Dns { config, domain } => match commands::dns(&config.path, domain.as_deref()) {
            Ok(text) => write_stdout(text.as_bytes()),
            Err(e) => command_failed(e),
        },
        Command::Certs { config } => match commands::certs(&config.path) {
            Ok(text) => write_stdout(text.as_bytes()),
            Err(e) => command_failed(e),
        },
        Command::Health { config } => match commands::health(&config.path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => command_failed(e),
        },
        Command::Import { file } => match commands::import(&file) {
            Ok(text) => write_stdout(text.as_bytes()),
            Err(e) => command_failed(e),
        },
    }
}

fn write_stdout(bytes: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("writing to stdout: {e}"), 1),
    }
}

fn command_failed(e: CommandError) -> ExitCode {
    fail(&e.to_string(), e.exit_code())
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(code)
}

/// `RUST_LOG` filters (default info). Under systemd (JOURNAL_STREAM set) the
/// journal adds timestamps itself, so we print none and no colour.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
