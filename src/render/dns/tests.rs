use super::*;
use crate::config;

const CONFIG: &str = r#"
[[provider]]
id = "example.com"
name = "Example Mail"
domains = ["example.org"]
  [[provider.server]]
  type = "imap"
  host = "imap.%EMAILDOMAIN%"
  [[provider.server]]
  type = "pop3"
  host = "pop.example.com"
  port = 110
  security = "starttls"
  [[provider.server]]
  type = "imap"
  host = "mail.example.com"
  port = 143
  security = "starttls"
  [[provider.server]]
  type = "smtp"
  host = "smtp.example.com"
  port = 587
  security = "starttls"
  [[provider.server]]
  type = "smtp"
  host = "%EMAILLOCALPART%.smtp.example.com"
  [[provider.server]]
  type = "caldav"
  url = "https://dav.example.com/dav/cal/"
  [[provider.server]]
  type = "carddav"
  url = "http://dav.example.com:8080/card/%EMAILADDRESS%/"
  [provider.mta_sts]
  mode = "enforce"
  mx = ["mail.example.com"]
  max_age = 604800
  tlsrpt_rua = ["mailto:tlsrpt@example.org", "https://report.example.com/tlsrpt"]
"#;

fn provider(text: &str) -> Provider {
    config::parse(text).unwrap().providers.remove(0)
}

/// Records as (owner, type, rdata), whitespace-normalised; comments dropped.
fn records(zone: &str) -> Vec<(String, String, String)> {
    zone.lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(|l| {
            let mut f = l.split_whitespace();
            let owner = f.next().unwrap().to_owned();
            assert_eq!(f.next(), Some("3600"), "{l}");
            assert_eq!(f.next(), Some("IN"), "{l}");
            let rtype = f.next().unwrap().to_owned();
            (owner, rtype, f.collect::<Vec<_>>().join(" "))
        })
        .collect()
}

fn find(zone: &str, owner: &str, rtype: &str) -> Vec<String> {
    records(zone)
        .into_iter()
        .filter(|(o, t, _)| o == owner && t == rtype)
        .map(|(_, _, d)| d)
        .collect()
}

#[test]
fn host_names_cname_to_public_name() {
    let zone = render(&provider(CONFIG), "example.org", Some("mail.provider.net"));
    for name in ["autoconfig", "autodiscover", "mta-sts"] {
        assert_eq!(
            find(&zone, &format!("{name}.example.org."), "CNAME"),
            ["mail.provider.net."]
        );
    }
    assert!(zone.starts_with("; DNS records for mail domain example.org"));
}

#[test]
fn host_names_without_public_name_are_hints() {
    let no_sts = CONFIG.split("[provider.mta_sts]").next().unwrap();
    let zone = render(&provider(no_sts), "example.org", None);
    assert!(records(&zone).iter().all(|(_, t, _)| t != "CNAME"));
    let hints: Vec<&str> = zone.lines().filter(|l| l.contains("A/AAAA")).collect();
    assert_eq!(hints.len(), 2, "no mta-sts name without a policy: {zone}");
    assert!(hints[0].starts_with("; autoconfig.example.org. "));
    assert!(hints[0].ends_with("3600 IN A/AAAA <this server's address>"));
    assert!(zone.contains("server.public_name"));
}

#[test]
fn mail_srv_follow_operator_order() {
    let zone = render(&provider(CONFIG), "example.org", None);
    // Incoming servers are ranked together: imaps 0, pop3 1, imap 2.
    assert_eq!(
        find(&zone, "_imaps._tcp.example.org.", "SRV"),
        ["0 1 993 imap.example.org."]
    );
    assert_eq!(
        find(&zone, "_pop3._tcp.example.org.", "SRV"),
        ["1 1 110 pop.example.com."]
    );
    assert_eq!(
        find(&zone, "_imap._tcp.example.org.", "SRV"),
        ["2 1 143 mail.example.com."]
    );
    assert_eq!(
        find(&zone, "_submission._tcp.example.org.", "SRV"),
        ["0 1 587 smtp.example.com."]
    );
}

#[test]
fn services_not_offered_get_null_records() {
    let zone = render(&provider(CONFIG), "example.org", None);
    assert_eq!(find(&zone, "_pop3s._tcp.example.org.", "SRV"), ["0 0 0 ."]);
    let minimal = r#"
[[provider]]
id = "example.com"
name = "Example"
domains = ["example.org"]
  [[provider.server]]
  type = "imap"
  host = "mail.example.org"
  [[provider.server]]
  type = "smtp"
  host = "mail.example.org"
"#;
    let zone = render(&provider(minimal), "example.org", None);
    for service in ["_submission", "_imap", "_pop3", "_pop3s"] {
        assert_eq!(
            find(&zone, &format!("{service}._tcp.example.org."), "SRV"),
            ["0 0 0 ."],
            "{service}"
        );
    }
    assert_eq!(
        find(&zone, "_submissions._tcp.example.org.", "SRV"),
        ["0 1 465 mail.example.org."]
    );
    // No DAV configured, no DAV records; no policy, no MTA-STS.
    assert!(!zone.contains("dav"));
    assert!(!zone.contains("_mta-sts") && !zone.contains("_smtp._tls"));
}

#[test]
fn placeholder_hosts_become_comments() {
    let zone = render(&provider(CONFIG), "example.org", None);
    // The per-user SMTP host is offered, so no null record either.
    assert!(find(&zone, "_submissions._tcp.example.org.", "SRV").is_empty());
    assert!(zone.lines().any(|l| l.starts_with(
        "; _submissions._tcp.example.org: smtp server %EMAILLOCALPART%.smtp.example.com \
         depends on the user's address"
    )));
}

#[test]
fn autodiscover_srv() {
    let zone = render(&provider(CONFIG), "example.org", None);
    assert_eq!(
        find(&zone, "_autodiscover._tcp.example.org.", "SRV"),
        ["0 0 443 autodiscover.example.org."]
    );
}

#[test]
fn caldav_and_carddav_srv_and_path() {
    let zone = render(&provider(CONFIG), "example.org", None);
    assert_eq!(
        find(&zone, "_caldavs._tcp.example.org.", "SRV"),
        ["0 1 443 dav.example.com."]
    );
    assert_eq!(
        find(&zone, "_caldavs._tcp.example.org.", "TXT"),
        ["\"path=/dav/cal/\""]
    );
    assert_eq!(find(&zone, "_caldav._tcp.example.org.", "SRV"), ["0 0 0 ."]);
    // http URL: the non-TLS service; per-user path: no TXT, a comment instead.
    assert_eq!(
        find(&zone, "_carddav._tcp.example.org.", "SRV"),
        ["0 1 8080 dav.example.com."]
    );
    assert!(find(&zone, "_carddav._tcp.example.org.", "TXT").is_empty());
    assert!(zone.contains("clients use /.well-known/carddav"));
    assert_eq!(
        find(&zone, "_carddavs._tcp.example.org.", "SRV"),
        ["0 0 0 ."]
    );
}

#[test]
fn mta_sts_and_tlsrpt_txt() {
    let p = provider(CONFIG);
    let zone = render(&p, "example.org", None);
    let policy = p.mta_sts.as_ref().unwrap();
    let id = mta_sts::policy_id(&mta_sts::render(policy).body);
    assert_eq!(
        find(&zone, "_mta-sts.example.org.", "TXT"),
        [format!("\"v=STSv1; id={id}\"")]
    );
    assert_eq!(
        find(&zone, "_smtp._tls.example.org.", "TXT"),
        ["\"v=TLSRPTv1; rua=mailto:tlsrpt@example.org,https://report.example.com/tlsrpt\""]
    );
    let no_rua = CONFIG.replace(
        "  tlsrpt_rua = [\"mailto:tlsrpt@example.org\", \"https://report.example.com/tlsrpt\"]\n",
        "",
    );
    let zone = render(&provider(&no_rua), "example.org", None);
    assert_eq!(find(&zone, "_mta-sts.example.org.", "TXT").len(), 1);
    assert!(!zone.contains("_smtp._tls"));
}

#[test]
fn same_input_same_output() {
    let p = provider(CONFIG);
    assert_eq!(
        render(&p, "example.org", Some("a.example")),
        render(&p, "example.org", Some("a.example"))
    );
}

#[test]
fn txt_strings_are_escaped_and_split() {
    assert_eq!(txt_rdata(r#"a"b\c"#), r#""a\"b\\c""#);
    assert_eq!(txt_rdata("x\ny;é"), "\"x\\010y;\\195\\169\"");
    assert_eq!(txt_rdata(""), "\"\"");
    let long = "v".repeat(300);
    let rdata = txt_rdata(&long);
    assert_eq!(
        rdata,
        format!("\"{}\" \"{}\"", "v".repeat(255), "v".repeat(45))
    );
}

#[test]
fn hostile_values_never_break_a_line() {
    assert_eq!(zone_name("a b\n.example."), "a\\032b\\010.example.");
    let mut p = provider(CONFIG);
    p.name = "evil\n_mta-sts.example.org. 3600 IN TXT \"v=STSv1; id=x\"".into();
    p.mta_sts.as_mut().unwrap().tlsrpt_rua = vec!["mailto:a\"b\\c@example.org".into()];
    let zone = render(&p, "example.org", None);
    // The name stays inside the first comment line.
    assert_eq!(find(&zone, "_mta-sts.example.org.", "TXT").len(), 1);
    for line in zone.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.starts_with(';') || line.split_whitespace().nth(1) == Some("3600"),
            "{line}"
        );
    }
    assert_eq!(
        find(&zone, "_smtp._tls.example.org.", "TXT"),
        ["\"v=TLSRPTv1; rua=mailto:a\\\"b\\\\c@example.org\""]
    );
}
