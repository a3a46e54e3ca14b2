//! The command line, as ../shared/spec/interface.md fixes it.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "mailconfd",
    version,
    about = "Makes e-mail accounts configure themselves: autoconfig, autodiscover, Apple profiles and MTA-STS from one TOML file, with TLS and ACME built in"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon
    Serve {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate the config; exit 0, or 78 with one "KEY: reason" line per problem
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Also run every domain source ([provider.domains_from]) once and print what it returns
        #[arg(long)]
        online: bool,
    },
    /// Print one document to stdout, exactly as the server serves it
    Render {
        #[command(flatten)]
        config: ConfigArg,
        /// The e-mail address the document is for
        #[arg(long)]
        email: String,
        format: Format,
    },
    /// Print the DNS records to publish, as zone-file lines
    Dns {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this mail domain
        #[arg(long)]
        domain: Option<String>,
    },
    /// Show every domain's certificate: names, issuer, expiry, state, last error
    Certs {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Exit 0 if the local daemon answers on its first HTTP listener (for container health checks)
    Health {
        #[command(flatten)]
        config: ConfigArg,
        /// Also require a valid certificate for every configured name (readiness, not just liveness)
        #[arg(long)]
        ready: bool,
    },
    /// Check from the outside what clients will see: DNS records, CAA, names, HTTPS, mail servers' TLS
    Doctor {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this mail domain
        #[arg(long)]
        domain: Option<String>,
        /// Ask this DNS server (IP or IP:PORT) instead of the system's resolver
        #[arg(long)]
        resolver: Option<String>,
        /// Also trust this CA (PEM) for HTTPS and mail certificates, e.g. tls.mode = "local"'s CA
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Print JSON instead of the report
        #[arg(long)]
        json: bool,
    },
    /// Validate the config, send SIGHUP to the daemon and wait for it to apply the file (systemd's ExecReload)
    Reload {
        #[command(flatten)]
        config: ConfigArg,
        /// The daemon's process id (systemd: $MAINPID)
        #[arg(long)]
        pid: u32,
    },
    /// Move the state (ACME account, certificates, statuses) between stores, e.g. from sled to PostgreSQL
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// Print a [[provider]] TOML block equivalent to a Thunderbird config-v1.1.xml
    Import {
        /// A config-v1.1.xml file, e.g. from the ISPDB
        file: PathBuf,
    },
    /// Print the man page (roff) to stdout, or write mailconfd.1 and one page per command into a directory (packaging)
    #[command(hide = true)]
    Manpage {
        /// Write mailconfd.1 and mailconfd-COMMAND.1 here instead of printing mailconfd.1
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Print a shell completion script to stdout (packaging)
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum StateAction {
    /// Write everything the config's [state] store holds to a file (mode 0600: it holds private keys)
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// The file to write
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Read a file written by `state export` into the config's [state] store (no certificate is ordered again)
    Import {
        #[command(flatten)]
        config: ConfigArg,
        /// A file written by `state export`
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file
    #[arg(short = 'c', long = "config", env = "MAILCONFD_CONFIG", default_value = crate::config::DEFAULT_PATH)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Thunderbird,
    Autodiscover,
    AutodiscoverJson,
    Mobileconfig,
    MtaSts,
}
