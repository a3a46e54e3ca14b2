//! `[state]`: where certificates, the ACME account and issuance bookkeeping
//! live. sled (the default) keeps them in `server.state_dir` for one node;
//! PostgreSQL shares them between several nodes (README "Several nodes").

use std::path::PathBuf;

use super::raw::RawState;
use super::sources::{check_sql_url, redact_url};
use super::validate::Problems;

/// Default time after which an order lease held by a node that died expires.
pub const DEFAULT_LEASE_SECS: u64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StateBackend {
    /// `state_dir/db`, this node only.
    #[default]
    Sled,
    /// Shared by every node that names the same database.
    Postgres(PostgresState),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresState {
    /// `postgres://user@host:port/db`, without a password.
    pub url: String,
    pub password_file: Option<PathBuf>,
    /// 32 bytes, hex: private keys and the ACME account are encrypted with it
    /// before they reach the database.
    pub encryption_key_file: Option<PathBuf>,
    /// This node's name in leases, logs and `mailconfd certs`.
    pub node: String,
    /// An order lease not renewed for this long is free for another node.
    pub lease_secs: u64,
}

impl PostgresState {
    /// The URL without secrets, for logs and errors.
    pub fn describe(&self) -> String {
        redact_url(&self.url)
    }
}

pub(super) fn state_section(raw: RawState, p: &mut Problems) -> StateBackend {
    p.unknown("state", &raw.unknown);
    let backend = raw.backend.as_deref().unwrap_or("sled");
    match backend {
        "sled" => {
            for (key, set) in [
                ("url", raw.url.is_some()),
                ("password_file", raw.password_file.is_some()),
                ("encryption_key_file", raw.encryption_key_file.is_some()),
                ("node", raw.node.is_some()),
                ("lease_secs", raw.lease_secs.is_some()),
            ] {
                if set {
                    p.error(
                        format!("state.{key}"),
                        "only applies with backend = \"postgresql\"",
                    );
                }
            }
            StateBackend::Sled
        }
        // interface.md spells it "postgresql"; "postgres" (the URL scheme's
        // short form) is accepted too.
        "postgresql" | "postgres" => {
            let url = match raw.url {
                Some(u) if !u.trim().is_empty() => u,
                _ => {
                    p.error("state.url", "is required with backend = \"postgresql\"");
                    String::new()
                }
            };
            if !url.is_empty() {
                check_sql_url("state.url", &url, p);
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    p.error("state.url", "must be a postgresql:// URL");
                }
            }
            let lease_secs = match raw.lease_secs {
                None => DEFAULT_LEASE_SECS,
                Some(s) if (5..=600).contains(&s) => s as u64,
                Some(_) => {
                    p.error("state.lease_secs", "must be 5-600");
                    DEFAULT_LEASE_SECS
                }
            };
            let node = match raw.node {
                Some(n) if valid_node_name(&n) => n,
                Some(_) => {
                    p.error(
                        "state.node",
                        "must be 1-64 letters, digits, '.', '-' or '_'",
                    );
                    String::new()
                }
                None => default_node_name(),
            };
            StateBackend::Postgres(PostgresState {
                url,
                password_file: raw.password_file.map(PathBuf::from),
                encryption_key_file: raw.encryption_key_file.map(PathBuf::from),
                node,
                lease_secs,
            })
        }
        _ => {
            p.error("state.backend", "must be \"sled\" or \"postgresql\"");
            StateBackend::Sled
        }
    }
}

fn valid_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The host name (what `hostname` prints), else "mailconfd".
fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| valid_node_name(h))
        .unwrap_or_else(|| "mailconfd".to_owned())
}
