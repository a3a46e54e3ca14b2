//! One user's own values from a directory, and the provider as that user
//! sees it. Plain data: the lookup happened before (`crate::directory`).

use super::{Endpoint, Provider, ServerKind};
use crate::address::check_hostname;

/// What a directory knows about one address; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserValues {
    /// The login name for every server (instead of the provider's template).
    pub login_name: Option<String>,
    /// The person's name, shown where a format has a place for it.
    pub display_name: Option<String>,
    /// The user's own mail hosts (sharded hosters).
    pub imap_host: Option<String>,
    pub pop3_host: Option<String>,
    pub smtp_host: Option<String>,
}

/// Longest login or display name taken from a directory.
const MAX_VALUE_BYTES: usize = 256;

impl UserValues {
    /// Drops values no client should get: control characters, absurd
    /// lengths, host names that are not host names. Returns what was dropped.
    pub fn sanitized(mut self) -> (UserValues, Vec<&'static str>) {
        let mut dropped = Vec::new();
        // `%EMAIL...%` would be expanded as a placeholder by the renderers.
        let text_ok = |v: &String| {
            !v.is_empty()
                && v.len() <= MAX_VALUE_BYTES
                && !v.chars().any(char::is_control)
                && !v.contains("%EMAIL")
        };
        for (name, field) in [
            ("login_name", &mut self.login_name),
            ("display_name", &mut self.display_name),
        ] {
            if field.as_ref().is_some_and(|v| !text_ok(v)) {
                *field = None;
                dropped.push(name);
            }
        }
        for (name, field) in [
            ("imap_host", &mut self.imap_host),
            ("pop3_host", &mut self.pop3_host),
            ("smtp_host", &mut self.smtp_host),
        ] {
            if let Some(h) = field.as_mut() {
                *h = h.trim().trim_end_matches('.').to_ascii_lowercase();
                if check_hostname(h).is_err() {
                    *field = None;
                    dropped.push(name);
                }
            }
        }
        (self, dropped)
    }
}

impl Provider {
    /// The provider as `values`' user sees it: their hosts and login name
    /// in place of the defaults, their name where formats show one. Call it
    /// with [`UserValues::sanitized`] values.
    ///
    /// The copy carries no domain list: renderers get the asked domain on
    /// its own, and a hoster's list (100,000 domains) must not be copied per
    /// request.
    pub fn for_user(&self, values: &UserValues) -> Provider {
        // Destructured so that a new field is a compile error here, not a
        // silently missing value.
        let Provider {
            id,
            name,
            short_name,
            domains: _,
            servers,
            mta_sts,
            logo_url,
            support,
            oauth2,
            publish_pacc,
            user_display_name: _,
        } = self;
        let mut p = Provider {
            id: id.clone(),
            name: name.clone(),
            short_name: short_name.clone(),
            domains: Vec::new(),
            servers: servers.clone(),
            mta_sts: mta_sts.clone(),
            logo_url: logo_url.clone(),
            support: support.clone(),
            oauth2: oauth2.clone(),
            publish_pacc: *publish_pacc,
            user_display_name: None,
        };
        for s in &mut p.servers {
            let host = match s.kind {
                ServerKind::Imap => values.imap_host.as_ref(),
                ServerKind::Pop3 => values.pop3_host.as_ref(),
                ServerKind::Smtp => values.smtp_host.as_ref(),
                _ => None,
            };
            if let (Some(h), Endpoint::Host { host, .. }) = (host, &mut s.endpoint) {
                host.clone_from(h);
            }
            if let Some(login) = &values.login_name
                && !s.kind.uses_url()
            {
                s.username.clone_from(login);
            }
        }
        p.user_display_name.clone_from(&values.display_name);
        p
    }
}
