//! Records for the newer discovery standards: JMAP's SRV (RFC 8620 §2.2) and
//! PACC's digest TXT (draft-ietf-mailmaint-pacc-02).

use super::{Line, comment_text, publishable_host, txt_rdata, zone_name};
use crate::model::Provider;
use crate::render::mobileconfig::split_url;
use crate::render::pacc;

/// `_jmap._tcp.D SRV` to the session URL's host and port; JMAP clients then
/// ask `https://<target>/.well-known/jmap`.
pub(super) fn jmap_srv(lines: &mut Vec<Line>, provider: &Provider, domain: &str) {
    let Some(url) = provider.jmap_url() else {
        return;
    };
    let owner = format!("_jmap._tcp.{domain}");
    lines.push(Line::Blank);
    lines.push(Line::Comment(
        "JMAP (RFC 8620 2.2): clients ask https://<target>/.well-known/jmap".into(),
    ));
    match split_url(url).and_then(|p| Some((publishable_host(p.host, domain)?, p.port))) {
        Some((target, port)) => lines.push(Line::Record {
            owner,
            rtype: "SRV",
            rdata: format!("0 1 {port} {}", zone_name(&target)),
        }),
        None => lines.push(Line::Comment(format!(
            "{owner}: jmap url {} has no host an SRV record can hold",
            comment_text(url)
        ))),
    }
}

/// `_ua-auto-config.D TXT`: the digest of the exact PACC document bytes.
/// Clients reject the document when it does not match, so this record must be
/// republished whenever the provider's settings change.
pub(super) fn pacc_txt(lines: &mut Vec<Line>, provider: &Provider, domain: &str) {
    let Some(doc) = pacc::render(provider) else {
        return;
    };
    lines.push(Line::Blank);
    lines.push(Line::Comment(format!(
        "PACC (draft-ietf-mailmaint-pacc-02): https://ua-auto-config.{domain}{} is accepted",
        pacc::PATH
    )));
    lines.push(Line::Comment(
        "only with this digest of its bytes: publish it again after every change of the provider's settings".into(),
    ));
    lines.push(Line::Record {
        owner: format!("_ua-auto-config.{domain}"),
        rtype: "TXT",
        rdata: txt_rdata(&pacc::digest_record(&doc.body)),
    });
}
