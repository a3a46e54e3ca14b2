//! MTA-STS policy file (RFC 8461 §3.2) and the policy id for its TXT record (§3.1).
//!
//! Owns: the policy text and how its id is derived. Must not: read a clock for the id
//! (a timestamp id would change on every restart and make senders refetch for nothing,
//! and two servers behind one name would disagree). The id is a hash of the exact bytes
//! served, so it changes exactly when the policy does: publish the file, then the id.

use sha2::{Digest, Sha256};

use crate::model::MtaSts;
use crate::render::Document;

/// RFC 8461 §3.2: the policy is served as `text/plain`. No charset parameter: the body
/// is ASCII (A-label host names), and a sender that compares the media type strictly
/// must not reject us over a parameter.
pub const CONTENT_TYPE: &str = "text/plain";

/// RFC 8461 §3.1: `id` is 1-32 characters of `[A-Za-z0-9]`.
pub const MAX_POLICY_ID_CHARS: usize = 32;

/// The policy file served at `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
///
/// `version` first (some validators insist), then `mode`, one `mx` per pattern,
/// `max_age`. Lines end in CRLF: §3.2's prose calls the pairs "CRLF-separated", and its
/// ABNF (`sts-policy-term = LF / CRLF`) obliges senders to accept it, so CRLF is right
/// under both readings; a trailing terminator is allowed by the ABNF too.
pub fn render(policy: &MtaSts) -> Document {
    let mut body = String::new();
    let mut line = |key: &str, value: &str| {
        body.push_str(key);
        body.push_str(": ");
        body.push_str(value);
        body.push_str("\r\n");
    };
    line("version", "STSv1");
    line("mode", policy.mode.name());
    for mx in &policy.mx {
        line("mx", mx);
    }
    line("max_age", &policy.max_age.to_string());
    Document {
        content_type: CONTENT_TYPE,
        filename: None,
        body: body.into_bytes(),
    }
}

/// The `id=` of the `_mta-sts` TXT record for a rendered policy body: the first 128
/// bits of its SHA-256, as 32 lower-case hex digits.
///
/// SHA-256 rather than std's `DefaultHasher`, which may change between Rust releases:
/// the id must stay the same across builds and machines, or every upgrade would make
/// senders refetch and two servers would publish different ids for one policy.
pub fn policy_id(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut id = String::with_capacity(MAX_POLICY_ID_CHARS);
    for byte in digest.iter().take(MAX_POLICY_ID_CHARS / 2) {
        id.push(hex_digit(byte >> 4));
        id.push(hex_digit(byte & 0x0f));
    }
    id
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).expect("a nibble is below 16")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MtaStsMode;

    fn policy() -> MtaSts {
        MtaSts {
            mode: MtaStsMode::Enforce,
            mx: vec!["mail.example.org".into(), "*.mx.provider.net".into()],
            max_age: 1_209_600,
            tlsrpt_rua: vec!["mailto:tlsrpt@example.org".into()],
        }
    }

    /// A sender's view (RFC 8461 §3.2): split on LF, trim CR, `key: value`.
    fn parse(body: &[u8]) -> Vec<(String, String)> {
        std::str::from_utf8(body)
            .unwrap()
            .split('\n')
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect()
    }

    #[test]
    fn policy_parses_back_in_order() {
        let doc = render(&policy());
        assert_eq!(doc.content_type, "text/plain");
        assert_eq!(doc.filename, None);
        assert_eq!(
            doc.body,
            b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\n\
              mx: *.mx.provider.net\r\nmax_age: 1209600\r\n"
        );
        let fields = parse(&doc.body);
        let want = [
            ("version", "STSv1"),
            ("mode", "enforce"),
            ("mx", "mail.example.org"),
            ("mx", "*.mx.provider.net"),
            ("max_age", "1209600"),
        ];
        assert_eq!(
            fields,
            want.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec()
        );
    }

    #[test]
    fn every_line_ends_in_crlf() {
        let body = render(&policy()).body;
        assert!(body.ends_with(b"\r\n"));
        let lf = body.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(body.windows(2).filter(|w| w == b"\r\n").count(), lf);
    }

    #[test]
    fn mode_none_without_mx() {
        let p = MtaSts {
            mode: MtaStsMode::None,
            mx: vec![],
            max_age: 86400,
            tlsrpt_rua: vec![],
        };
        assert_eq!(
            render(&p).body,
            b"version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"
        );
        let testing = MtaSts {
            mode: MtaStsMode::Testing,
            ..policy()
        };
        assert!(parse(&render(&testing).body).contains(&("mode".into(), "testing".into())));
    }

    #[test]
    fn policy_id_follows_rfc_8461_rules() {
        let body = render(&policy()).body;
        let id = policy_id(&body);
        assert!((1..=MAX_POLICY_ID_CHARS).contains(&id.len()));
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
        assert_eq!(id, policy_id(&body), "same bytes, same id");
        assert_eq!(policy_id(b""), "e3b0c44298fc1c149afbf4c8996fb924");
    }

    #[test]
    fn policy_id_changes_with_content() {
        let base = policy();
        let ids: Vec<String> = [
            base.clone(),
            MtaSts {
                mode: MtaStsMode::Testing,
                ..base.clone()
            },
            MtaSts {
                max_age: 604_800,
                ..base.clone()
            },
            MtaSts {
                mx: vec!["mail.example.org".into()],
                ..base.clone()
            },
        ]
        .iter()
        .map(|p| policy_id(&render(p).body))
        .collect();
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // TLS-RPT addresses are not part of the policy file, so they don't change it.
        let no_rua = MtaSts {
            tlsrpt_rua: vec![],
            ..base.clone()
        };
        assert_eq!(ids[0], policy_id(&render(&no_rua).body));
    }
}
