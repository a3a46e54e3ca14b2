//! CAA (RFC 8659): may the CA in use issue for each name mailconfd serves?
//!
//! The CA's CAA identity comes from a short list of well-known ACME CAs, else
//! from the CA's own directory (RFC 8555 §7.1.1, `meta.caaIdentities`). A CA
//! that names none (Pebble, many private CAs) is reported as unknown: a warning
//! where a CAA set restricts issuance, never an "allowed" it cannot back.

use std::path::Path;

use serde::Deserialize;

use super::lookup::{Answer, Dns};
use super::probe;
use super::report::{Report, Status};
use crate::config::{Config, TlsMode};

/// The ACME CA the config orders from, and what CAA must name for it.
#[derive(Debug, Clone)]
pub struct CaInUse {
    pub directory: String,
    /// CAA issuer domains of the CA; empty when unknown.
    pub identities: Vec<String>,
    /// Where `identities` came from, or why they are unknown.
    pub source: String,
}

/// Well-known directories and their CAA identities (each CA's documentation;
/// the same values their directories publish), so that the common case needs
/// no request to the CA.
fn well_known(url: &str) -> Option<&'static str> {
    [
        ("letsencrypt.org", "letsencrypt.org"),
        ("zerossl.com", "sectigo.com"),
        ("pki.goog", "pki.goog"),
        ("buypass", "buypass.com"),
    ]
    .into_iter()
    .find(|(part, _)| url.contains(part))
    .map(|(_, identity)| identity)
}

/// The CA in use under `tls.mode = "acme"`; `None` for other modes (no CA
/// is asked, so CAA does not concern mailconfd).
pub async fn ca_in_use(config: &Config) -> Option<CaInUse> {
    if config.tls.mode != TlsMode::Acme {
        return None;
    }
    let directory = config.acme.directory_url.clone();
    if let Some(identity) = well_known(&directory) {
        return Some(CaInUse {
            directory,
            identities: vec![identity.to_owned()],
            source: "mailconfd's list of well-known CAs".to_owned(),
        });
    }
    let (identities, source) =
        match directory_identities(&directory, config.acme.ca_file.as_deref()).await {
            Ok(ids) if ids.is_empty() => (ids, "its directory names no caaIdentities".to_owned()),
            Ok(ids) => (ids, "the CA's directory".to_owned()),
            Err(e) => (Vec::new(), format!("its directory could not be read: {e}")),
        };
    Some(CaInUse {
        directory,
        identities,
        source,
    })
}

/// `meta.caaIdentities` of the ACME directory at `url`.
async fn directory_identities(url: &str, ca_file: Option<&Path>) -> Result<Vec<String>, String> {
    #[derive(Deserialize, Default)]
    struct Directory {
        #[serde(default)]
        meta: Meta,
    }
    #[derive(Deserialize, Default)]
    struct Meta {
        #[serde(default, rename = "caaIdentities")]
        caa_identities: Vec<String>,
    }
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{url}: not an https URL"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("{url}: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let tls = probe::client_config(ca_file)?;
    let addr = tokio::time::timeout(probe::STEP_TIMEOUT, tokio::net::lookup_host((&*host, port)))
        .await
        .map_err(|_| format!("resolving {host}: no answer"))?
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} does not resolve"))?;
    let answer = probe::https_get(&tls, addr, &host, path).await?;
    if answer.status != 200 {
        return Err(format!("HTTP {}", answer.status));
    }
    let directory: Directory =
        serde_json::from_slice(&answer.body).map_err(|e| format!("not an ACME directory: {e}"))?;
    Ok(directory.meta.caa_identities)
}

/// RFC 8659: the CAA set that governs a name is the first one found walking
/// from the name up towards the root.
pub async fn check(
    report: &mut Report,
    dns_client: &Dns,
    config: &Config,
    ca: &CaInUse,
    domain: &str,
) {
    for name in config.names_for_domain(domain) {
        let mut at = name.clone();
        let mut governing = None;
        loop {
            match dns_client.records(&at, "CAA").await {
                Answer::Records(r) => {
                    governing = Some((at.clone(), r));
                    break;
                }
                Answer::None => {}
                Answer::Failed(e) => {
                    report.push(
                        Status::Warn,
                        "caa",
                        domain,
                        &name,
                        format!("CAA lookup at {at} failed: {e} (the CA refuses to issue when it cannot tell)"),
                        Some("check that the zone's name servers answer CAA queries".into()),
                    );
                    break;
                }
            }
            match at.split_once('.') {
                Some((_, parent)) if parent.contains('.') => at = parent.to_owned(),
                _ => break,
            }
        }
        let Some((at, caa)) = governing else {
            report.push(
                Status::Ok,
                "caa",
                domain,
                &name,
                "no CAA record: any CA may issue",
                None,
            );
            continue;
        };
        let issuers: Vec<String> = caa
            .iter()
            .filter_map(|r| caa_issuer(r, name.starts_with("*.")))
            .collect();
        if issuers.is_empty() {
            report.push(
                Status::Ok,
                "caa",
                domain,
                &name,
                format!("CAA at {at} has no issue property: any CA may issue"),
                None,
            );
        } else if let Some(allowed) = ca
            .identities
            .iter()
            .find(|id| issuers.iter().any(|i| i.eq_ignore_ascii_case(id)))
        {
            report.push(
                Status::Ok,
                "caa",
                domain,
                &name,
                format!("CAA at {at} allows {allowed}"),
                None,
            );
        } else if let Some(identity) = ca.identities.first() {
            report.push(
                Status::Fail,
                "caa",
                domain,
                &name,
                format!(
                    "CAA at {at} allows only {issuers:?}: {identity} may not issue (the CA at {})",
                    ca.directory
                ),
                Some(format!("add `{at}. CAA 0 issue \"{identity}\"`")),
            );
        } else {
            report.push(
                Status::Warn,
                "caa",
                domain,
                &name,
                format!(
                    "CAA at {at} allows only {issuers:?}; the CAA identity of {} is unknown ({}), so whether it may issue cannot be checked",
                    ca.directory, ca.source
                ),
                Some(format!(
                    "look up the CA's CAA identity in its documentation and make sure `{at}. CAA 0 issue \"...\"` names it"
                )),
            );
        }
    }
}

/// The issuer domain of an `issue` property (`0 issue "letsencrypt.org; ..."`).
fn caa_issuer(record: &str, wildcard: bool) -> Option<String> {
    let mut parts = record.splitn(3, char::is_whitespace);
    let _flags = parts.next()?;
    let tag = parts.next()?.to_ascii_lowercase();
    let value = parts.next()?.trim().trim_matches('"');
    let wanted = if wildcard { "issuewild" } else { "issue" };
    (tag == wanted).then(|| value.split(';').next().unwrap_or("").trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_is_the_domain_before_parameters() {
        assert_eq!(
            caa_issuer(
                "0 issue \"letsencrypt.org; validationmethods=dns-01\"",
                false
            ),
            Some("letsencrypt.org".to_owned())
        );
        assert_eq!(caa_issuer("0 iodef \"mailto:a@b.example\"", false), None);
        assert_eq!(caa_issuer("0 issue \";\"", false), Some(String::new()));
        assert_eq!(caa_issuer("0 issue \"pki.goog\"", true), None);
    }

    #[test]
    fn well_known_directories_have_their_identity() {
        assert_eq!(
            well_known("https://acme-v02.api.letsencrypt.org/directory"),
            Some("letsencrypt.org")
        );
        assert_eq!(well_known("https://127.0.0.1:14000/dir"), None);
    }
}
