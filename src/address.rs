//! E-mail addresses and host names as they arrive from clients and the config.
//!
//! Every entry point (query strings, POX bodies, JSON URLs, the CLI) parses through
//! here, so a value that reaches a renderer is already known to be a plausible
//! address: bounded, free of control characters, with an A-label domain.
//! Renderers still escape it; this is the first of two walls, not the only one.

use std::fmt;

/// RFC 5321 §4.5.3.1.1: local part at most 64 octets.
pub const MAX_LOCAL_PART_BYTES: usize = 64;
/// RFC 5321 §4.5.3.1.2: domain at most 255 octets; DNS makes it 253 in text form.
pub const MAX_DOMAIN_BYTES: usize = 253;
/// RFC 5321 §4.5.3.1.3 path limit (256) minus the angle brackets.
pub const MAX_ADDRESS_BYTES: usize = 254;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address has no @")]
    MissingAt,
    #[error("address is longer than {MAX_ADDRESS_BYTES} bytes")]
    TooLong,
    #[error("local part is empty or longer than {MAX_LOCAL_PART_BYTES} bytes")]
    LocalPartLength,
    #[error("local part holds a character that has no place in an address")]
    LocalPartCharacter,
    #[error("local part has a leading, trailing or doubled dot")]
    LocalPartDots,
    #[error("domain: {0}")]
    Domain(#[from] DomainError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("domain is empty")]
    Empty,
    #[error("domain is longer than {MAX_DOMAIN_BYTES} bytes")]
    TooLong,
    #[error("not a valid internationalized domain name")]
    Idna,
    #[error("label is empty or longer than 63 bytes")]
    LabelLength,
    #[error("only letters, digits and inner hyphens are allowed in a label")]
    LabelCharacter,
    #[error("needs at least two labels")]
    SingleLabel,
    #[error("top-level label cannot be all digits")]
    NumericTld,
}

/// A syntactically valid mailbox: `local@domain`, domain lower-case A-labels.
///
/// The local part keeps its case (RFC 5321 §2.4: only the receiving host may
/// fold it); the domain is case-folded and converted to punycode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    local: String,
    domain: String,
}

impl EmailAddress {
    /// Parses what a person or client typed: surrounding whitespace is trimmed,
    /// the domain lower-cased and IDN-encoded. Quoted local parts, comments and
    /// display names are refused: no mail client sends them for discovery.
    ///
    /// # Errors
    /// Names the first rule the input breaks.
    pub fn parse(input: &str) -> Result<EmailAddress, AddressError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        // Cheap bound before any allocation or IDNA work on hostile input.
        if input.len() > 4 * MAX_ADDRESS_BYTES {
            return Err(AddressError::TooLong);
        }
        let (local, domain) = input.rsplit_once('@').ok_or(AddressError::MissingAt)?;
        if local.is_empty() || local.len() > MAX_LOCAL_PART_BYTES {
            return Err(AddressError::LocalPartLength);
        }
        if !local.chars().all(is_local_part_char) {
            return Err(AddressError::LocalPartCharacter);
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(AddressError::LocalPartDots);
        }
        let domain = normalize_domain(domain)?;
        if local.len() + 1 + domain.len() > MAX_ADDRESS_BYTES {
            return Err(AddressError::TooLong);
        }
        Ok(EmailAddress {
            local: local.to_owned(),
            domain,
        })
    }

    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain, lower-case A-labels.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// RFC 5322 `atext` plus `.`, and any non-ASCII letter (RFC 6531 allows UTF-8).
/// Everything a hostile client might use to break out of a document (`<>"\`,
/// whitespace, controls) is outside this set; `&'` are legal atext and are
/// escaped by the writers.
fn is_local_part_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
    } else {
        !c.is_control()
            && !c.is_whitespace()
            && c != '\u{feff}'
            && !is_bidi_or_invisible(c)
            && !is_noncharacter(c)
    }
}

/// Unicode noncharacters (U+FDD0..U+FDEF and U+xxFFFE/U+xxFFFF): XML 1.0 does
/// not allow U+FFFE/U+FFFF, so no XML document or plist could carry them.
fn is_noncharacter(c: char) -> bool {
    let u = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&u) || u & 0xFFFE == 0xFFFE
}

fn is_bidi_or_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}')
}

/// Lower-cases, strips one trailing dot, converts IDN to A-labels, and checks
/// host name syntax (RFC 1123 labels, at least two, TLD not numeric).
///
/// # Errors
/// Names the first rule the name breaks.
pub fn normalize_domain(input: &str) -> Result<String, DomainError> {
    let input = input.strip_suffix('.').unwrap_or(input);
    if input.is_empty() {
        return Err(DomainError::Empty);
    }
    if input.len() > 4 * MAX_DOMAIN_BYTES {
        return Err(DomainError::TooLong);
    }
    let ascii = if input.is_ascii() {
        input.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii_strict(input).map_err(|_| DomainError::Idna)?
    };
    check_hostname(&ascii)?;
    Ok(ascii)
}

/// Checks an already lower-case ASCII host name.
pub fn check_hostname(name: &str) -> Result<(), DomainError> {
    if name.is_empty() {
        return Err(DomainError::Empty);
    }
    if name.len() > MAX_DOMAIN_BYTES {
        return Err(DomainError::TooLong);
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return Err(DomainError::LabelLength);
        }
        let bytes = label.as_bytes();
        let ldh = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if !ldh || bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
            return Err(DomainError::LabelCharacter);
        }
    }
    if labels.len() < 2 {
        return Err(DomainError::SingleLabel);
    }
    if labels[labels.len() - 1].bytes().all(|b| b.is_ascii_digit()) {
        return Err(DomainError::NumericTld);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_lowercases_domain_only() {
        let a = EmailAddress::parse("  Alice.Smith+tag@Example.ORG \n").unwrap();
        assert_eq!(a.local_part(), "Alice.Smith+tag");
        assert_eq!(a.domain(), "example.org");
        assert_eq!(a.to_string(), "Alice.Smith+tag@example.org");
    }

    #[test]
    fn idn_domain_becomes_punycode() {
        let a = EmailAddress::parse("jörg@Bücher.example").unwrap();
        assert_eq!(a.domain(), "xn--bcher-kva.example");
        assert_eq!(a.local_part(), "jörg");
    }

    #[test]
    fn refuses_what_has_no_place_in_an_address() {
        for bad in [
            "",
            "no-at-sign",
            "@example.org",
            "a@",
            "a b@example.org",
            "a<b@example.org",
            "a\"b@example.org",
            "a\r\nb@example.org",
            "a\u{0}@example.org",
            "a\u{202e}@example.org",
            "a\u{fffe}@example.org",
            "a\u{ffff}@example.org",
            ".a@example.org",
            "a..b@example.org",
            "a@exa mple.org",
            "a@-example.org",
            "a@example",
            "a@example.123",
            "a@ex_ample.org",
            "a@<script>.org",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn enforces_rfc5321_lengths() {
        let local64 = "a".repeat(64);
        assert!(EmailAddress::parse(&format!("{local64}@example.org")).is_ok());
        assert_eq!(
            EmailAddress::parse(&format!("{local64}a@example.org")),
            Err(AddressError::LocalPartLength)
        );
        let label = "b".repeat(63);
        let long_domain = format!("{label}.{label}.{label}.{}.org", "c".repeat(50));
        assert!(EmailAddress::parse(&format!("{local64}@{long_domain}")).is_err());
        assert!(EmailAddress::parse(&"x".repeat(100_000)).is_err());
    }

    #[test]
    fn hostname_rules() {
        assert_eq!(
            normalize_domain("Mail.Example.COM.").unwrap(),
            "mail.example.com"
        );
        assert_eq!(normalize_domain("a").unwrap_err(), DomainError::SingleLabel);
        assert!(normalize_domain(&format!("{}.org", "a".repeat(64))).is_err());
        assert!(normalize_domain("xn--bcher-kva.example").is_ok());
    }
}
