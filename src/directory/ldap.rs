//! Per-user values from LDAP: one entry under `base` matching `filter`, whose
//! placeholders (`%s` address, `%u` local part, `%d` domain) are filled in
//! with values escaped per RFC 4515 ([`ldap_filter`]),
//! so a `*` in a local part is a character, never a wildcard. The values
//! come from the attributes the config names (default `uid` for the login
//! name, `cn` for the display name).
//!
//! One connection, bound once and shared: ldap3 multiplexes concurrent
//! searches over it, so a lookup costs one round trip, not TCP + TLS + bind.
//! A connection whose lookup failed on the wire or was cancelled by the
//! deadline is dropped and the next lookup opens a new one; a reused
//! connection that turns out dead (an idle timeout on the server) is
//! retried once on a fresh one at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use ldap3::{LdapError, Scope, SearchEntry, SearchOptions};

use super::{Directory, UserValues};
use crate::address::EmailAddress;
use crate::config::users::LdapAttributes;
use crate::sources::ldap::{Connection, Endpoint, connect};

pub(super) struct LdapDirectory {
    endpoint: Endpoint,
    base: String,
    filter: String,
    attributes: LdapAttributes,
    /// The shared connection, numbered so that a stale failure cannot drop
    /// a newer one.
    shared: Mutex<Option<(u64, Arc<Connection>)>>,
    /// One connection attempt at a time; the others wait for its result.
    connecting: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

/// Drops the connection `generation` unless disarmed: a lookup that fails
/// on the wire, or whose future is dropped by the deadline, leaves a
/// connection nobody should trust.
struct DropOnFailure<'a> {
    directory: &'a LdapDirectory,
    generation: u64,
    armed: bool,
}

impl Drop for DropOnFailure<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.directory.invalidate(self.generation);
        }
    }
}

impl LdapDirectory {
    pub(super) fn new(
        endpoint: Endpoint,
        base: String,
        filter: String,
        attributes: LdapAttributes,
    ) -> LdapDirectory {
        LdapDirectory {
            endpoint,
            base,
            filter,
            attributes,
            shared: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    fn current(&self) -> Option<(u64, Arc<Connection>)> {
        self.shared
            .lock()
            .expect("ldap connection lock is never poisoned: no panics while held")
            .clone()
    }

    fn invalidate(&self, generation: u64) {
        let mut shared = self
            .shared
            .lock()
            .expect("ldap connection lock is never poisoned: no panics while held");
        if shared.as_ref().is_some_and(|(g, _)| *g == generation) {
            *shared = None;
        }
    }

    /// The shared connection, opened if there is none; true when reused.
    async fn connection(&self) -> Result<(u64, Arc<Connection>, bool), String> {
        if let Some((g, c)) = self.current() {
            return Ok((g, c, true));
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some((g, c)) = self.current() {
            return Ok((g, c, false)); // opened while this lookup waited
        }
        let connection = Arc::new(connect(&self.endpoint).await?);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self
            .shared
            .lock()
            .expect("ldap connection lock is never poisoned: no panics while held") =
            Some((generation, connection.clone()));
        Ok((generation, connection, false))
    }

    async fn lookup_address(&self, address: &EmailAddress) -> Result<Option<UserValues>, String> {
        let filter = ldap_filter(&self.filter, address.local_part(), address.domain());
        let (generation, connection, reused) = self.connection().await?;
        match self.search_on(generation, &connection, &filter).await {
            Err(Failure::Wire(e)) if reused => {
                tracing::debug!(error = %e, "ldap connection lost; reconnecting once");
                let (generation, connection, _) = self.connection().await?;
                self.search_on(generation, &connection, &filter)
                    .await
                    .map_err(Failure::into_message)
            }
            other => other.map_err(Failure::into_message),
        }
    }

    async fn search_on(
        &self,
        generation: u64,
        connection: &Connection,
        filter: &str,
    ) -> Result<Option<UserValues>, Failure> {
        let mut guard = DropOnFailure {
            directory: self,
            generation,
            armed: true,
        };
        let mut attrs: Vec<&str> = self.attributes.names().collect();
        if attrs.is_empty() {
            attrs.push("1.1"); // RFC 4511: no attributes (an empty list means all)
        }
        let mut ldap = connection.ldap.clone();
        // Two entries are enough to tell that a filter is ambiguous.
        let result = ldap
            .with_search_options(SearchOptions::new().sizelimit(2))
            .search(&self.base, Scope::Subtree, filter, attrs)
            .await;
        let ldap3::SearchResult(entries, status) = match result {
            Ok(r) => r,
            Err(e @ LdapError::LdapResult { .. }) => {
                guard.armed = false;
                return Err(Failure::Server(e.to_string()));
            }
            Err(e) => return Err(Failure::Wire(e.to_string())),
        };
        guard.armed = false;
        let entries: Vec<SearchEntry> = entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(SearchEntry::construct)
            .collect();
        // 4: sizeLimitExceeded, which the ambiguity check reports better.
        if status.rc != 0 && status.rc != 4 {
            return Err(Failure::Server(format!(
                "searching {}: {}",
                self.base,
                status
                    .clone()
                    .success()
                    .err()
                    .map_or(String::new(), |e| e.to_string())
            )));
        }
        match entries.as_slice() {
            [] => Ok(None),
            [entry] => Ok(Some(self.values(entry))),
            _ => Err(Failure::Server(format!(
                "the filter matches more than one entry under {}: make it specific",
                self.base
            ))),
        }
    }

    fn values(&self, entry: &SearchEntry) -> UserValues {
        let first = |attr: &Option<String>| -> Option<String> {
            let attr = attr.as_deref()?;
            entry
                .attrs
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(attr))
                .and_then(|(_, values)| values.first().cloned())
        };
        let a = &self.attributes;
        let values = UserValues {
            login_name: first(&a.login_name),
            display_name: first(&a.display_name),
            imap_host: first(&a.imap_host),
            pop3_host: first(&a.pop3_host),
            smtp_host: first(&a.smtp_host),
        };
        let (values, dropped) = values.sanitized();
        if !dropped.is_empty() {
            tracing::debug!(dropped = ?dropped, "directory values not usable, defaults used for them");
        }
        values
    }
}

/// Why a search failed: on the wire (the connection is dropped) or by the
/// server's answer (the connection is fine).
enum Failure {
    Wire(String),
    Server(String),
}

impl Failure {
    fn into_message(self) -> String {
        match self {
            Failure::Wire(e) | Failure::Server(e) => e,
        }
    }
}

impl LdapAttributes {
    /// The attribute names to ask for.
    fn names(&self) -> impl Iterator<Item = &str> {
        [
            &self.login_name,
            &self.display_name,
            &self.imap_host,
            &self.pop3_host,
            &self.smtp_host,
        ]
        .into_iter()
        .filter_map(|a| a.as_deref())
    }
}

impl Directory for LdapDirectory {
    fn lookup<'a>(
        &'a self,
        address: &'a EmailAddress,
    ) -> BoxFuture<'a, Result<Option<UserValues>, String>> {
        Box::pin(self.lookup_address(address))
    }
}

/// `filter` with its placeholders filled in, each value escaped per
/// RFC 4515 first: an address's `*`, `(`, `)`, `\` and NUL can never change
/// the filter's meaning (automx2 formats the raw address into its filter,
/// so a `*` in a local part becomes a wildcard).
fn ldap_filter(filter: &str, local_part: &str, domain: &str) -> String {
    let mut out = String::with_capacity(filter.len() + 64);
    let mut chars = filter.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => {
                out.push_str(&escape_filter_value(local_part));
                out.push('@');
                out.push_str(&escape_filter_value(domain));
            }
            Some('u') => out.push_str(&escape_filter_value(local_part)),
            Some('d') => out.push_str(&escape_filter_value(domain)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// RFC 4515 section 3: `*`, `(`, `)`, `\` and NUL as `\XX`; everything
/// else (UTF-8 included) stays as it is.
fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped_per_rfc_4515() {
        assert_eq!(escape_filter_value("plain.user"), "plain.user");
        assert_eq!(escape_filter_value("*"), "\\2a");
        assert_eq!(
            escape_filter_value("a*b(c)d\\e\0f"),
            "a\\2ab\\28c\\29d\\5ce\\00f"
        );
        assert_eq!(escape_filter_value("jörg"), "jörg");
        // A backslash from the address is escaped like any other.
        assert_eq!(escape_filter_value("\\2a"), "\\5c2a");
    }

    #[test]
    fn placeholders_are_filled_with_escaped_values() {
        assert_eq!(
            ldap_filter(
                "(&(objectClass=inetOrgPerson)(mail=%s))",
                "a*",
                "example.com"
            ),
            "(&(objectClass=inetOrgPerson)(mail=a\\2a@example.com))"
        );
        assert_eq!(
            ldap_filter("(|(uid=%u)(mail=%u@%d))(x=100%%)", "*)(uid=*", "ex.org"),
            "(|(uid=\\2a\\29\\28uid=\\2a)(mail=\\2a\\29\\28uid=\\2a@ex.org))(x=100%)"
        );
        // The escaped filter parses, and as one equality match.
        assert!(ldap3::parse_filter(ldap_filter("(mail=%s)", "*)(|(a=*", "x.org")).is_ok());
    }
}
