//! What `mailconfd certs` shows: every configured domain with its names,
//! issuer, expiry, state and last error. The daemon holds the database lock,
//! so it also writes this report to `state_dir/certs.json` whenever something
//! changes, and the command reads that file while the daemon runs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::store::{CertRecord, DomainStatus, Store};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub domain: String,
    pub names: Vec<String>,
    pub issuer: Option<String>,
    /// Unix seconds.
    pub not_after: Option<i64>,
    pub state: String,
    pub last_error: Option<String>,
    /// Unix seconds.
    pub next_attempt: Option<i64>,
}

pub fn snapshot_file(state_dir: &Path) -> PathBuf {
    state_dir.join("certs.json")
}

/// One row per configured domain, from the store (`mailconfd certs` with no
/// daemon running).
pub fn rows(config: &Config, store: &dyn Store, now: i64) -> Vec<Row> {
    let issuer = super::issuer_of(config);
    rows_from(
        config,
        |d| {
            let records = store.certs_for(d).unwrap_or_default();
            super::pick(&records, &issuer, now)
                .or_else(|| records.iter().find(|r| r.source == issuer))
                .cloned()
        },
        |d| store.status(d, &issuer).ok().flatten().unwrap_or_default(),
        &issuer,
        now,
    )
}

/// One row per configured domain: `cert` is the certificate served for a
/// domain (from the configured CA, or the one still serving until it
/// replaces it), `status` its issuance bookkeeping.
pub fn rows_from(
    config: &Config,
    cert: impl Fn(&str) -> Option<CertRecord>,
    status: impl Fn(&str) -> DomainStatus,
    issuer: &str,
    now: i64,
) -> Vec<Row> {
    config
        .domains()
        .map(|(domain, _)| {
            let cert = cert(domain);
            let status = status(domain);
            let wanted = config.names_for_domain(domain);
            let state = match &cert {
                None if status.failures > 0 => "failing",
                None => "pending",
                // Not "valid...": readiness (`health --ready`) must not count
                // a certificate from the CA we switched away from.
                Some(c) if c.source != issuer && c.not_after > now => {
                    "previous CA's certificate, until the configured CA issues"
                }
                Some(c) if c.not_after <= now => "expired",
                Some(_) if status.failures > 0 => "valid, renewal failing",
                Some(c) if !wanted.iter().all(|n| c.names.contains(n)) => "valid, names changed",
                Some(_) => "valid",
            };
            Row {
                domain: domain.to_owned(),
                names: cert.as_ref().map_or(wanted, |c| c.names.clone()),
                issuer: cert.as_ref().map(|c| c.issuer.clone()),
                not_after: cert.as_ref().map(|c| c.not_after),
                state: state.to_owned(),
                last_error: status.last_error,
                next_attempt: status.next_attempt,
            }
        })
        .collect()
}

/// Writes the report durably (temp file, fsync, rename, fsync of the
/// directory), so a reader never sees half and a power loss never leaves it
/// empty. Blocking: callers on the runtime use `spawn_blocking`.
pub fn write_snapshot(state_dir: &Path, rows: &[Row]) -> std::io::Result<()> {
    let bytes =
        serde_json::to_vec_pretty(rows).expect("rows serialize: plain strings and integers");
    crate::store::write_durably(&snapshot_file(state_dir), &bytes)
}

pub fn read_snapshot(state_dir: &Path) -> std::io::Result<Vec<Row>> {
    let bytes = std::fs::read(snapshot_file(state_dir))?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}

/// A plain table for a terminal.
pub fn format_table(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        out.push_str(&format!("{}\n", r.domain));
        out.push_str(&format!("  names:       {}\n", r.names.join(", ")));
        out.push_str(&format!("  state:       {}\n", r.state));
        if let Some(issuer) = &r.issuer {
            out.push_str(&format!("  issuer:      {issuer}\n"));
        }
        if let Some(t) = r.not_after {
            out.push_str(&format!("  not after:   {}\n", rfc3339(t)));
        }
        if let Some(e) = &r.last_error {
            out.push_str(&format!("  last error:  {e}\n"));
        }
        if let Some(t) = r.next_attempt {
            out.push_str(&format!("  next try:    {}\n", rfc3339(t)));
        }
    }
    out
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(source: &str, not_after: i64) -> CertRecord {
        CertRecord {
            names: ["autoconfig", "autodiscover", "mta-sts"]
                .map(|p| format!("{p}.a.example"))
                .to_vec(),
            key_pem: String::new(),
            chain_pem: String::new(),
            not_before: 0,
            not_after,
            issuer: "CN=test".into(),
            source: source.into(),
        }
    }

    /// Issue 11 finding 3 as `mailconfd certs` shows it: another CA's
    /// certificate serves only until the configured CA's replaces it.
    #[test]
    fn certificates_of_another_ca_are_shown_as_pending_replacement() {
        let config = crate::config::parse(
            r#"
[tls]
mode = "local"
[[provider]]
id = "a.example"
name = "A"
domains = ["a.example"]
  [[provider.server]]
  type = "imap"
  host = "imap.a.example"
  [[provider.server]]
  type = "smtp"
  host = "smtp.a.example"
"#,
        )
        .unwrap();
        let now = 100;
        let staging = [record("https://staging/dir", 200)];
        let state = |records: &[CertRecord]| {
            let cert = crate::certs::pick(records, "local", now)
                .or_else(|| records.iter().find(|r| r.source == "local"))
                .cloned();
            rows_from(
                &config,
                |_| cert.clone(),
                |_| DomainStatus::default(),
                "local",
                now,
            )[0]
            .state
            .clone()
        };
        assert_eq!(
            state(&staging),
            "previous CA's certificate, until the configured CA issues"
        );
        let both = [record("https://staging/dir", 200), record("local", 150)];
        assert_eq!(
            crate::certs::pick(&both, "local", now).unwrap().source,
            "local"
        );
        assert_eq!(state(&both), "valid");
        assert_eq!(state(&[record("local", 50)]), "expired");
        assert_eq!(state(&[]), "pending");
    }
}
