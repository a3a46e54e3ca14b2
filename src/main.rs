//! The mailconfd binary: parse the command line, set up logging, run the
//! command, turn its error into stderr lines and an exit code.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser};
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
        Command::Check { config, online } => match commands::check(&config.path) {
            Ok((cfg, summary)) => {
                for w in &cfg.warnings {
                    eprintln!("warning: {w}");
                }
                // write_stdout, not println!: `check | head` must not panic.
                let written = write_stdout(format!("{summary}\n").as_bytes());
                if written != ExitCode::SUCCESS {
                    return written;
                }
                if online {
                    let (lines, all_ok) = commands::check_sources_online(&cfg);
                    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
                    let written = write_stdout(text.as_bytes());
                    if written != ExitCode::SUCCESS {
                        return written;
                    }
                    if !all_ok {
                        return ExitCode::from(1);
                    }
                }
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
        Command::Health { config, ready } => match commands::health(&config.path, ready) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => command_failed(e),
        },
        Command::Doctor {
            config,
            domain,
            resolver,
            ca_file,
            json,
        } => match commands::doctor(&config.path, domain, resolver.as_deref(), ca_file) {
            Ok(report) => {
                let text = if json {
                    report.to_json()
                } else {
                    report.to_text()
                };
                match write_stdout(text.as_bytes()) {
                    code if code != ExitCode::SUCCESS => code,
                    _ if report.failed() => ExitCode::from(1),
                    _ => ExitCode::SUCCESS,
                }
            }
            Err(e) => command_failed(e),
        },
        Command::Reload { config, pid } => match mailconfd::reload::request(&config.path, pid) {
            Ok(message) => {
                let _ = writeln!(std::io::stdout(), "{message}");
                ExitCode::SUCCESS
            }
            Err(mailconfd::reload::ReloadError::Refused(problems)) => fail(
                &format!(
                    "{}\nreload refused; the running configuration stays",
                    problems.join("\n")
                ),
                EXIT_CONFIG,
            ),
            Err(e) => fail(&e.to_string(), 1),
        },
        Command::State { action } => match commands::state(action) {
            Ok(text) => write_stdout(text.as_bytes()),
            Err(e) => command_failed(e),
        },
        Command::Import { file } => match commands::import(&file) {
            Ok(text) => write_stdout(text.as_bytes()),
            Err(e) => command_failed(e),
        },
        Command::Manpage { out_dir } => {
            let written = match &out_dir {
                None => {
                    let mut page = Vec::new();
                    clap_mangen::Man::new(public_command())
                        .render(&mut page)
                        .map(|()| page.extend_from_slice(MAN_EXTRA.as_bytes()))
                        .and_then(|()| std::io::stdout().lock().write_all(&page))
                }
                Some(dir) => write_man_pages(dir),
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&format!("writing the man page: {e}"), 1),
            }
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut public_command(), "mailconfd", &mut script);
            write_stdout(&script)
        }
    }
}

/// The command line as users see it: without the hidden packaging commands
/// (clap_complete would offer them) and without `help` as a command.
fn public_command() -> clap::Command {
    let full = Cli::command();
    let mut public = clap::Command::new("mailconfd")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .disable_help_subcommand(true)
        .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        public = public.about(about.clone());
    }
    public
}

/// Sections of mailconfd(1) that clap knows nothing about.
const MAN_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/mailconfd/mailconfd.toml\fR
The configuration (\fB\-c\fR, or \fBMAILCONFD_CONFIG\fR). The packaged file is
the commented example with every key.
.TP
\fI/var/lib/mailconfd\fR
\fBstate_dir\fR: the sled database with the ACME account, certificates, keys and
per\-domain status. Under the packaged systemd unit (DynamicUser=yes) the data
lives in \fI/var/lib/private/mailconfd\fR and \fI/var/lib/mailconfd\fR is a link to it.
.SH SIGNALS
.TP
\fBSIGHUP\fR
Reload the configuration; a file with any problem is refused and the running
configuration stays.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop accepting connections, finish requests in flight, exit 0.
.SH "EXIT STATUS"
0 on success; 78 (EX_CONFIG) when the configuration is invalid, with one
"KEY: reason" line per problem on standard error; 1 for any other failure.
.SH "SEE ALSO"
\fBmailconfd\-serve\fR(1), \fBmailconfd\-check\fR(1), \fBmailconfd\-dns\fR(1),
\fBmailconfd\-certs\fR(1), \fBsystemctl\fR(1), \fBjournalctl\fR(1)
"#;

/// mailconfd.1 (with [`MAN_EXTRA`]), plus mailconfd-COMMAND.1 for every
/// visible command: the main page lists commands only by name and summary.
fn write_man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(public_command(), dir)?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("mailconfd.1"))?
        .write_all(MAN_EXTRA.as_bytes())
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

/// `RUST_LOG` filters (default info; the h2 crate only at error: it warns
/// once per reset-flooding connection, which an attacker with many addresses
/// would turn into a log flood). Under systemd (JOURNAL_STREAM set) the
/// journal adds timestamps itself, so we print none and no colour.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,h2=error"));
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
