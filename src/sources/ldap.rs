//! A domain list from LDAP (OpenLDAP and friends): every entry under `base`
//! matching `filter` contributes the values of `attribute` (e.g.
//! `associatedDomain`). Plain `ldap://`, `ldap://` + StartTLS or `ldaps://`,
//! trusting the system's roots plus an optional `ca_file`; an anonymous or a
//! simple bind (`bind_dn` + the password from `password_file`). Results are
//! read in pages of [`PAGE_SIZE`] where the server supports paging.
//!
//! The connection code is shared with the LDAP user directory
//! (`crate::directory`), which keeps its connection open.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use crate::config::sources::MAX_SOURCE_DOMAINS;

/// Connecting (TCP, StartTLS or TLS) and binding, each.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Entries per page of a paged search (RFC 2696).
const PAGE_SIZE: i32 = 1000;

/// Where and how to connect and bind.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub bind_dn: Option<String>,
    pub password_file: Option<PathBuf>,
}

/// An open, bound connection; its I/O task ends when this is dropped.
pub struct Connection {
    pub ldap: Ldap,
    driver: tokio::task::AbortHandle,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The system's roots plus `ca_file` (a hoster's slapd often has a
/// certificate from a private CA).
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    crate::tls::client::client_config(ca_file).map_err(|e| format!("ca_file {e}"))
}

/// Connects and binds, each step within [`CONNECT_TIMEOUT`].
///
/// # Errors
/// Unreachable, TLS or bind failure, unreadable password or CA file.
pub async fn connect(endpoint: &Endpoint) -> Result<Connection, String> {
    let url = crate::config::sources::redact_url(&endpoint.url);
    let password = match &endpoint.password_file {
        Some(path) => Some(read_password(path).await?),
        None => None,
    };
    // Our own socket, for TCP_NODELAY: without it the StartTLS and TLS
    // handshakes stall on delayed ACKs (measured: 47 ms per connection).
    let (host, port) = host_port(&endpoint.url)?;
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| {
        format!(
            "connecting to {url}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )
    })?
    .and_then(|s| {
        s.set_nodelay(true)?;
        s.into_std()
    })
    .map_err(|e| format!("connecting to {url}: {e}"))?;
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(CONNECT_TIMEOUT)
        .set_starttls(endpoint.starttls)
        .set_std_stream(ldap3::StdStream::Tcp(tcp));
    if endpoint.starttls || endpoint.url.starts_with("ldaps://") {
        // Reading the system's roots is file I/O.
        let ca_file = endpoint.ca_file.clone();
        let config = tokio::task::spawn_blocking(move || tls_config(ca_file.as_deref()))
            .await
            .map_err(|e| format!("loading the TLS roots: {e}"))??;
        settings = settings.set_config(config);
    }
    let (conn, mut ldap) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        LdapConnAsync::with_settings(settings, &endpoint.url),
    )
    .await
    .map_err(|_| {
        format!(
            "connecting to {url}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )
    })?
    .map_err(|e| format!("connecting to {url}: {e}"))?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            tracing::debug!(error = %e, "ldap connection ended");
        }
    })
    .abort_handle();
    let connection = Connection {
        ldap: ldap.clone(),
        driver,
    };
    if let (Some(dn), Some(password)) = (&endpoint.bind_dn, password) {
        ldap.with_timeout(CONNECT_TIMEOUT)
            .simple_bind(dn, &password)
            .await
            .and_then(ldap3::LdapResult::success)
            .map_err(|e| format!("binding to {url} as {dn}: {e}"))?;
    }
    Ok(connection)
}

/// Host and port of an `ldap://` or `ldaps://` URL (389 and 636 by default).
fn host_port(url: &str) -> Result<(String, u16), String> {
    let bad = || format!("{url}: not an ldap:// or ldaps:// URL with a host");
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default = if scheme == "ldaps" { 636 } else { 389 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => default,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// The password file's first line (a systemd credential works too).
async fn read_password(path: &Path) -> Result<String, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("password_file {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Every value of `attribute` in the entries matching `filter` under `base`,
/// at most [`MAX_SOURCE_DOMAINS`] (more is reported by `normalize_list`).
pub(super) async fn search(
    endpoint: &Endpoint,
    base: &str,
    filter: &str,
    attribute: &str,
) -> Result<Vec<String>, String> {
    let connection = connect(endpoint).await?;
    let mut ldap = connection.ldap.clone();
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(PAGE_SIZE)),
    ];
    let mut stream = ldap
        .streaming_search_with(adapters, base, Scope::Subtree, filter, vec![attribute])
        .await
        .map_err(|e| format!("searching {base}: {e}"))?;
    let mut out = Vec::new();
    while let Some(entry) = stream
        .next()
        .await
        .map_err(|e| format!("searching {base}: {e}"))?
    {
        let entry = SearchEntry::construct(entry);
        // Attribute names come back as the server spells them.
        for (name, values) in entry.attrs {
            if name.eq_ignore_ascii_case(attribute) {
                out.extend(values);
            }
        }
        // One more than the cap: normalize_list reports the overflow.
        // Dropping the connection ends the search.
        if out.len() > MAX_SOURCE_DOMAINS {
            out.truncate(MAX_SOURCE_DOMAINS + 1);
            return Ok(out);
        }
    }
    let status = stream.finish().await;
    if status.rc == 4 {
        // sizeLimitExceeded: never serve a truncated list as if complete.
        return Err(format!(
            "searching {base}: the server's size limit for this account is below the number of entries; raise it (slapd: limits dn.exact=\"BIND_DN\" size=unlimited)"
        ));
    }
    status
        .success()
        .map_err(|e| format!("searching {base}: {e}"))?;
    let _ = ldap.unbind().await;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn host_and_port_come_from_the_url() {
        let hp = |u: &str| host_port(u).unwrap();
        assert_eq!(
            hp("ldap://ldap.example.com"),
            ("ldap.example.com".into(), 389)
        );
        assert_eq!(
            hp("ldaps://ldap.example.com/"),
            ("ldap.example.com".into(), 636)
        );
        assert_eq!(hp("ldap://127.0.0.1:3389/dc=x"), ("127.0.0.1".into(), 3389));
        assert_eq!(hp("ldaps://[::1]:6360"), ("::1".into(), 6360));
        assert!(host_port("ldap://").is_err());
        assert!(host_port("ldap://h:port").is_err());
    }
}
