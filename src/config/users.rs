//! Per-user values for a provider (`[provider.users_from]`): a static map
//! file, an SQL query or an LDAP search, with the lookup's deadline and cache bounds.
//! Validation only; the lookups are `crate::directory`'s.

use std::path::PathBuf;

use super::raw::{RawLdapAttributes, RawUserSource};
use super::sources::{check_ldap, check_sql_url, redact_url, sqlx_url};
use super::validate::Problems;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSource {
    /// Index of the provider in `Config::providers`.
    pub provider: usize,
    pub kind: UserSourceKind,
    /// Longest a lookup may take before the defaults are served.
    pub timeout_ms: u64,
    /// Addresses remembered at most (hits and misses together).
    pub cache_entries: u64,
    pub hit_ttl_secs: u64,
    pub miss_ttl_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSourceKind {
    /// A TOML file: one table per address with `login_name`,
    /// `display_name`, `imap_host`, `pop3_host`, `smtp_host` (all optional).
    MapFile { path: PathBuf },
    /// A query with one parameter (the address), returning any of those
    /// columns by name.
    Sql {
        url: String,
        password_file: Option<PathBuf>,
        query: String,
    },
    /// One entry under `base` matching `filter`, whose placeholders (`%s`
    /// the address, `%u` its local part, `%d` its domain, `%%` a `%`:
    /// Postfix's `ldap_table` spelling) are filled in with values escaped
    /// per RFC 4515; values from the attributes named in `attributes`.
    Ldap {
        url: String,
        base: String,
        filter: String,
        bind_dn: Option<String>,
        bind_password_file: Option<PathBuf>,
        starttls: bool,
        ca_file: Option<PathBuf>,
        attributes: LdapAttributes,
    },
}

/// The LDAP attribute holding each per-user value; `None`: not looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapAttributes {
    pub login_name: Option<String>,
    pub display_name: Option<String>,
    pub imap_host: Option<String>,
    pub pop3_host: Option<String>,
    pub smtp_host: Option<String>,
}

impl UserSource {
    pub fn describe(&self) -> String {
        match &self.kind {
            UserSourceKind::MapFile { path } => format!("map file {}", path.display()),
            UserSourceKind::Sql { url, .. } => format!("sql {}", redact_url(url)),
            UserSourceKind::Ldap { url, base, .. } => {
                format!("ldap {} base {base}", redact_url(url))
            }
        }
    }
}

pub(super) fn user_source(
    key: &str,
    provider: usize,
    mut raw: RawUserSource,
    p: &mut Problems,
) -> Option<UserSource> {
    p.unknown(key, &raw.unknown);
    let mut bounded =
        |name: &str, v: Option<i64>, default: u64, range: std::ops::RangeInclusive<i64>| match v {
            None => default,
            Some(x) if range.contains(&x) => x as u64,
            Some(_) => {
                p.error(
                    format!("{key}.{name}"),
                    format!("must be {}-{}", range.start(), range.end()),
                );
                default
            }
        };
    // Well under a second by default: a client waits for this.
    let timeout_ms = bounded("timeout_ms", raw.timeout_ms, 500, 10..=10_000);
    let cache_entries = bounded("cache_entries", raw.cache_entries, 10_000, 0..=10_000_000);
    let hit_ttl_secs = bounded("hit_ttl_secs", raw.hit_ttl_secs, 300, 1..=86_400);
    let miss_ttl_secs = bounded("miss_ttl_secs", raw.miss_ttl_secs, 60, 1..=86_400);
    if let Some(url) = raw.ldap.take() {
        if raw.file.is_some() || raw.sql.is_some() {
            p.error(key.to_owned(), "needs exactly one of file, sql, ldap");
            return None;
        }
        let kind = ldap_user_source(key, url, raw, p)?;
        return Some(UserSource {
            provider,
            kind,
            timeout_ms,
            cache_entries,
            hit_ttl_secs,
            miss_ttl_secs,
        });
    }
    if raw.base.is_some() || raw.filter.is_some() || raw.attributes.is_some() {
        p.error(
            key.to_owned(),
            "base, filter and attributes are for ldap only",
        );
    }
    let kind = match (raw.file, raw.sql) {
        (Some(path), None) => {
            if raw.query.is_some() || raw.password_file.is_some() {
                p.error(key.to_owned(), "file takes no query or password_file");
            }
            UserSourceKind::MapFile {
                path: PathBuf::from(path),
            }
        }
        (None, Some(url)) => {
            check_sql_url(&format!("{key}.sql"), &url, p);
            let Some(query) = raw.query.filter(|q| !q.trim().is_empty()) else {
                p.error(
                    format!("{key}.query"),
                    "is required: one parameter, the address",
                );
                return None;
            };
            UserSourceKind::Sql {
                url: sqlx_url(&url),
                password_file: raw.password_file.map(PathBuf::from),
                query,
            }
        }
        _ => {
            p.error(key.to_owned(), "needs exactly one of file, sql, ldap");
            return None;
        }
    };
    Some(UserSource {
        provider,
        kind,
        timeout_ms,
        cache_entries,
        hit_ttl_secs,
        miss_ttl_secs,
    })
}

fn ldap_user_source(
    key: &str,
    url: String,
    raw: RawUserSource,
    p: &mut Problems,
) -> Option<UserSourceKind> {
    if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
        p.error(format!("{key}.ldap"), "must be an ldap:// or ldaps:// URL");
    }
    let starttls = raw.starttls.unwrap_or(false);
    if starttls && url.starts_with("ldaps://") {
        p.error(format!("{key}.starttls"), "ldaps:// is already TLS");
    }
    if raw.query.is_some() {
        p.error(
            format!("{key}.query"),
            "is for sql; ldap takes base and filter",
        );
    }
    check_ldap(
        key,
        (&url, starttls),
        raw.bind_dn.as_deref(),
        raw.password_file.as_deref(),
        p,
    );
    let Some(base) = raw.base.filter(|b| !b.trim().is_empty()) else {
        p.error(format!("{key}.base"), "is required and must not be empty");
        return None;
    };
    let Some(filter) = raw.filter.filter(|f| !f.trim().is_empty()) else {
        p.error(
            format!("{key}.filter"),
            "is required, e.g. \"(mail=%s)\" (%s: the address)",
        );
        return None;
    };
    // Without the address (or local part) every user would get one entry.
    if !filter.contains("%s") && !filter.contains("%u") {
        p.error(
            format!("{key}.filter"),
            "must contain %s (the address) or %u (its local part)",
        );
    } else if ldap3::parse_filter(sample_filter(&filter)).is_err() {
        p.error(format!("{key}.filter"), "is not an LDAP filter (RFC 4515)");
    }
    let attributes = ldap_attributes(key, raw.attributes.unwrap_or_default(), p);
    Some(UserSourceKind::Ldap {
        url,
        base,
        filter,
        bind_dn: raw.bind_dn,
        bind_password_file: raw.password_file.map(PathBuf::from),
        starttls,
        ca_file: raw.ca_file.map(PathBuf::from),
        attributes,
    })
}

/// The filter as a lookup of `user@example.com` would send it (no value
/// there needs escaping), to check its syntax.
fn sample_filter(filter: &str) -> String {
    filter
        .replace("%%", "\u{0}")
        .replace("%s", "user@example.com")
        .replace("%u", "user")
        .replace("%d", "example.com")
        .replace('\u{0}', "%")
}

/// Defaults: `uid` for the login name and `cn` for the display name
/// (inetOrgPerson); hosts only when named. `""` turns a default off.
fn ldap_attributes(key: &str, raw: RawLdapAttributes, p: &mut Problems) -> LdapAttributes {
    p.unknown(&format!("{key}.attributes"), &raw.unknown);
    let mut pick = |name: &str, v: Option<String>, default: Option<&str>| {
        let v = v.or_else(|| default.map(str::to_owned))?;
        if v.is_empty() {
            return None;
        }
        // RFC 4512 descr (or a numeric OID): nothing a filter could abuse.
        if !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ';')
        {
            p.error(
                format!("{key}.attributes.{name}"),
                "must be an LDAP attribute name",
            );
            return None;
        }
        Some(v)
    };
    LdapAttributes {
        login_name: pick("login_name", raw.login_name, Some("uid")),
        display_name: pick("display_name", raw.display_name, Some("cn")),
        imap_host: pick("imap_host", raw.imap_host, None),
        pop3_host: pick("pop3_host", raw.pop3_host, None),
        smtp_host: pick("smtp_host", raw.smtp_host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(users_from: &str) -> Result<crate::config::Config, String> {
        crate::config::parse(&format!(
            "[tls]\nmode = \"off\"\n[[provider]]\nid = \"example.com\"\nname = \"E\"\ndomains = [\"example.com\"]\n\
             [[provider.server]]\ntype = \"imap\"\nhost = \"imap.example.com\"\n\
             [[provider.server]]\ntype = \"smtp\"\nhost = \"smtp.example.com\"\n\
             [provider.users_from]\n{users_from}"
        ))
        .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn ldap_user_source_validates_and_defaults_uid_and_cn() {
        let c = config(
            "ldap = \"ldap://ldap.example.com\"\nstarttls = true\nbase = \"ou=people,dc=example,dc=com\"\n\
             filter = \"(&(objectClass=inetOrgPerson)(mail=%s))\"\nattributes = { imap_host = \"mailHost\", display_name = \"\" }\n",
        )
        .unwrap();
        let UserSourceKind::Ldap {
            attributes,
            starttls,
            ..
        } = &c.user_sources[0].kind
        else {
            panic!("not ldap: {:?}", c.user_sources[0].kind);
        };
        assert!(starttls);
        assert_eq!(attributes.login_name.as_deref(), Some("uid"));
        assert_eq!(attributes.display_name, None, "\"\" turns a default off");
        assert_eq!(attributes.imap_host.as_deref(), Some("mailHost"));
    }

    #[test]
    fn ldap_user_source_problems_are_named() {
        let base = "ldap = \"ldap://l\"\nbase = \"dc=x\"\n";
        for (extra, expected) in [
            ("filter = \"(mail=alice)\"", "must contain %s"),
            ("filter = \"(mail=%s\"", "is not an LDAP filter"),
            (
                "filter = \"(mail=%s)\"\nbind_dn = \"cn=r\"",
                "is required with bind_dn",
            ),
            (
                "filter = \"(mail=%s)\"\nattributes = { login_name = \"uid)(x\" }",
                "must be an LDAP attribute name",
            ),
            (
                "filter = \"(mail=%s)\"\nattributes = { login = \"uid\" }",
                "attributes.login",
            ),
            ("filter = \"(mail=%s)\"\nquery = \"x\"", "is for sql"),
        ] {
            let err = config(&format!("{base}{extra}\n")).unwrap_err();
            assert!(err.contains(expected), "{extra}: {err}");
        }
        let err = config(
            "ldap = \"ldaps://l\"\nstarttls = true\nbase = \"dc=x\"\nfilter = \"(mail=%s)\"\n",
        )
        .unwrap_err();
        assert!(err.contains("ldaps:// is already TLS"), "{err}");
    }

    #[test]
    fn a_clear_text_bind_over_the_network_is_a_warning() {
        let with = |url: &str, starttls: bool| {
            config(&format!(
                "ldap = \"{url}\"\nstarttls = {starttls}\nbase = \"dc=x\"\nfilter = \"(mail=%s)\"\n\
                 bind_dn = \"cn=r\"\npassword_file = \"/p\"\n"
            ))
            .unwrap()
            .warnings
            .iter()
            .any(|w| w.key.ends_with("users_from.starttls"))
        };
        assert!(with("ldap://ldap.example.com", false));
        assert!(!with("ldap://ldap.example.com", true));
        assert!(!with("ldap://127.0.0.1:389", false));
        assert!(!with("ldaps://ldap.example.com", false));
    }
}
