//! What `mailconfd dns` asks an operator to publish, read back from its own
//! output: the doctor checks exactly the lines `dns` prints, so the two can
//! never disagree about what "published" means.
//!
//! Pure: text in, expectations out.

/// One record line of `dns` output, or one commented address hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// `owner TTL IN TYPE rdata`, with the owner and any target names
    /// lower-cased and without the trailing dot.
    Record {
        owner: String,
        rtype: String,
        rdata: String,
    },
    /// `; owner TTL IN A/AAAA <this server's address>`: the name must resolve
    /// to this host, which `dns` cannot know.
    Address { owner: String },
}

impl Expected {
    pub fn owner(&self) -> &str {
        match self {
            Expected::Record { owner, .. } | Expected::Address { owner } => owner,
        }
    }
}

/// Reads the records and hints out of `dns` output.
pub fn parse(zone_text: &str) -> Vec<Expected> {
    let mut out = Vec::new();
    for line in zone_text.lines() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix(';') {
            let fields: Vec<&str> = comment.split_whitespace().collect();
            if fields.len() >= 4 && fields[2] == "IN" && fields[3] == "A/AAAA" {
                out.push(Expected::Address {
                    owner: name(fields[0]),
                });
            }
            continue;
        }
        let Some((fields, rdata)) = split_fields(line, 4) else {
            continue;
        };
        if fields[2] != "IN" {
            continue;
        }
        let owner = fields[0];
        let rtype = fields[3].to_owned();
        let rdata = normalize_rdata(&rtype, rdata);
        out.push(Expected::Record {
            owner: name(owner),
            rtype,
            rdata,
        });
    }
    out
}

/// The first `n` whitespace-separated fields of `line` and the rest (trimmed),
/// or `None` when there are not `n` fields and a non-empty rest.
fn split_fields(line: &str, n: usize) -> Option<(Vec<&str>, &str)> {
    let mut fields = Vec::with_capacity(n);
    let mut rest = line.trim_start();
    while fields.len() < n {
        let end = rest.find(char::is_whitespace)?;
        fields.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    (!rest.is_empty()).then_some((fields, rest.trim_end()))
}

/// A domain name as compared: lower case, no trailing dot ("." stays ".").
pub fn name(n: &str) -> String {
    if n == "." {
        return ".".to_owned();
    }
    n.trim_end_matches('.').to_ascii_lowercase()
}

/// RDATA in the form the doctor compares: names normalized, TXT strings
/// unquoted and joined (RFC 7208 §3.3 style: clients concatenate them).
pub fn normalize_rdata(rtype: &str, rdata: &str) -> String {
    match rtype {
        "CNAME" => name(rdata),
        "SRV" => {
            let f: Vec<&str> = rdata.split_whitespace().collect();
            match f.as_slice() {
                [p, w, port, target] => format!("{p} {w} {port} {}", name(target)),
                _ => rdata.to_owned(),
            }
        }
        "TXT" => unquote_txt(rdata),
        _ => rdata.to_owned(),
    }
}

/// `"a" "b"` -> `ab`, undoing master-file escapes (`\"`, `\\`, `\DDD`).
fn unquote_txt(rdata: &str) -> String {
    let mut out = Vec::new();
    let mut chars = rdata.bytes().peekable();
    let mut in_string = false;
    while let Some(b) = chars.next() {
        match (in_string, b) {
            (false, b'"') => in_string = true,
            (false, _) => {}
            (true, b'"') => in_string = false,
            (true, b'\\') => {
                let digits: Vec<u8> = std::iter::from_fn(|| chars.next_if(u8::is_ascii_digit))
                    .take(3)
                    .collect();
                if digits.len() == 3 {
                    let v = digits
                        .iter()
                        .fold(0u32, |a, d| a * 10 + u32::from(d - b'0'));
                    out.push(u8::try_from(v).unwrap_or(b'?'));
                } else if let Some(next) = chars.next() {
                    out.extend_from_slice(&digits);
                    out.push(next);
                }
            }
            (true, _) => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_records_and_address_hints() {
        let text = "; DNS records for mail domain example.com\n\
; autoconfig.example.com.         3600 IN A/AAAA <this server's address>\n\
autodiscover.Example.com.         3600 IN CNAME mailconf.example.net.\n\
_imaps._tcp.example.com.        3600 IN SRV 0 1 993 Mail.example.com.\n\
_imap._tcp.example.com.         3600 IN SRV 0 0 0 .\n\
_mta-sts.example.com.           3600 IN TXT \"v=STSv1; id=abc\"\n\
_x._tcp.example.com. 3600 IN TXT \"a\\\"b\" \"c\\059d\"\n";
        let got = parse(text);
        assert_eq!(
            got,
            vec![
                Expected::Address {
                    owner: "autoconfig.example.com".into()
                },
                Expected::Record {
                    owner: "autodiscover.example.com".into(),
                    rtype: "CNAME".into(),
                    rdata: "mailconf.example.net".into()
                },
                Expected::Record {
                    owner: "_imaps._tcp.example.com".into(),
                    rtype: "SRV".into(),
                    rdata: "0 1 993 mail.example.com".into()
                },
                Expected::Record {
                    owner: "_imap._tcp.example.com".into(),
                    rtype: "SRV".into(),
                    rdata: "0 0 0 .".into()
                },
                Expected::Record {
                    owner: "_mta-sts.example.com".into(),
                    rtype: "TXT".into(),
                    rdata: "v=STSv1; id=abc".into()
                },
                Expected::Record {
                    owner: "_x._tcp.example.com".into(),
                    rtype: "TXT".into(),
                    rdata: "a\"bc;d".into()
                },
            ]
        );
    }
}
