//! The DNS the bare mail domain needs when `bare_domain` puts it into its
//! certificate (and what happens when it does not).

/// Comment lines for `domain` itself: what to publish when mailconfd serves
/// `https://domain/` (`served`), else why nothing is needed.
pub fn bare_domain(domain: &str, public_name: Option<&str>, served: bool) -> String {
    let target = public_name.unwrap_or("this server");
    if served {
        format!(
            "; the mail domain itself (bare_domain is on): https://{domain}/ is answered by mailconfd\n\
             ; and {domain} is in its certificate, so {domain}'s A/AAAA records must point at {target}\n\
             ; (a CNAME is not allowed at the zone apex: copy {target}'s addresses, or use your DNS\n\
             ; host's ALIAS/ANAME); while they point elsewhere every certificate order for {domain} fails\n"
        )
    } else {
        format!(
            "; the mail domain itself: not served (bare_domain is off), nothing to publish; clients\n\
             ; that ask https://{domain}/ first get no answer from mailconfd and move on to the names above\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_where_the_apex_must_point_only_when_served() {
        let on = bare_domain("example.org", Some("mailconf.example.net"), true);
        assert!(on.contains("example.org's A/AAAA records must point at mailconf.example.net"));
        assert!(on.lines().all(|l| l.starts_with("; ")), "{on}");
        let off = bare_domain("example.org", None, false);
        assert!(off.contains("not served (bare_domain is off)"));
        assert!(!off.contains("A/AAAA"));
    }
}
