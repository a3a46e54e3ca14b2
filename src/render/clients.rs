//! What clients that hold one server of each kind end up with, and which
//! clients would throw away what we serve: the lines `mailconfd check` prints.
//!
//! Pure: every answer comes from rendering the provider's documents and
//! reading them back the way the client does (`tb_android`), or from the same
//! choice the renderer makes (`mobileconfig::chosen_servers`).

use crate::address::EmailAddress;
use crate::model::{Provider, Server};
use crate::render::{mobileconfig, tb_android, thunderbird};

/// A client's verdict on one provider's documents for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub client: &'static str,
    /// What it takes ("imap mail.example.com:993 tls, smtp ..."), or why it refuses.
    pub outcome: Result<String, String>,
}

/// The client name `check` prints for Thunderbird for Android.
pub const TB_ANDROID: &str = "Thunderbird for Android";
/// The client name `check` prints for Apple profiles.
pub const APPLE: &str = "Apple profile (iOS, macOS)";

/// Every single-server format's choice for `address`, in a fixed order.
pub fn verdicts(provider: &Provider, address: &EmailAddress) -> Vec<Verdict> {
    let apple = match mobileconfig::chosen_servers(provider) {
        Some((incoming, outgoing)) => Ok(format!(
            "{}, {}",
            describe(incoming, address),
            describe(outgoing, address)
        )),
        None => Err("no incoming or no SMTP server".to_owned()),
    };
    let document = thunderbird::render(provider, address.domain(), Some(address));
    let android = tb_android::evaluate(&document.body, address)
        .map(|a| {
            format!(
                "imap {}:{} {}, smtp {}:{} {}",
                a.imap.hostname,
                a.imap.port,
                a.imap.socket_type,
                a.smtp.hostname,
                a.smtp.port,
                a.smtp.socket_type
            )
        })
        .map_err(|r| format!("throws the autoconfig answer away: {r}"));
    vec![
        Verdict {
            client: APPLE,
            outcome: apple,
        },
        Verdict {
            client: TB_ANDROID,
            outcome: android,
        },
    ]
}

/// `imap mail.example.com:993 tls`, placeholders filled in for `address`.
fn describe(s: &Server, address: &EmailAddress) -> String {
    match s.host_port() {
        Some((host, port, security)) => format!(
            "{} {}:{port} {}",
            s.kind.config_name(),
            crate::model::expand(host, Some(address)),
            security.config_name()
        ),
        None => format!("{} {}", s.kind.config_name(), s.url().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn provider(servers: &str) -> Provider {
        let text = format!(
            "[[provider]]\nid = \"example.com\"\nname = \"Example\"\ndomains = [\"example.com\"]\n{servers}"
        );
        config::parse(&text).unwrap().providers.remove(0)
    }

    fn addr() -> EmailAddress {
        EmailAddress::parse("user@example.com").unwrap()
    }

    #[test]
    fn plain_first_apple_takes_the_encrypted_one_android_refuses() {
        let p = provider(
            "[[provider.server]]\ntype = \"imap\"\nhost = \"mail.example.com\"\nport = 143\nsecurity = \"plain\"\n\
             [[provider.server]]\ntype = \"imap\"\nhost = \"mail.example.com\"\nport = 143\nsecurity = \"starttls\"\n\
             [[provider.server]]\ntype = \"smtp\"\nhost = \"mail.example.com\"\n",
        );
        let v = verdicts(&p, &addr());
        assert_eq!(v[0].client, APPLE);
        assert_eq!(
            v[0].outcome,
            Ok("imap mail.example.com:143 starttls, smtp mail.example.com:465 tls".to_owned())
        );
        assert_eq!(v[1].client, TB_ANDROID);
        let reason = v[1].outcome.clone().unwrap_err();
        assert!(reason.contains("'plain'"), "{reason}");
    }

    #[test]
    fn pop3_only_is_refused_by_android_but_not_by_apple() {
        let p = provider(
            "[[provider.server]]\ntype = \"pop3\"\nhost = \"pop.example.com\"\n\
             [[provider.server]]\ntype = \"smtp\"\nhost = \"smtp.example.com\"\n",
        );
        let v = verdicts(&p, &addr());
        assert_eq!(
            v[0].outcome,
            Ok("pop3 pop.example.com:995 tls, smtp smtp.example.com:465 tls".to_owned())
        );
        let reason = v[1].outcome.clone().unwrap_err();
        assert!(reason.contains("it reads IMAP only"), "{reason}");
    }

    #[test]
    fn a_good_provider_passes_with_its_first_servers() {
        let p = provider(
            "[[provider.server]]\ntype = \"imap\"\nhost = \"imap.%EMAILDOMAIN%\"\n\
             [[provider.server]]\ntype = \"smtp\"\nhost = \"smtp.example.com\"\nport = 587\nsecurity = \"starttls\"\n",
        );
        let v = verdicts(&p, &addr());
        assert_eq!(
            v[1].outcome,
            Ok("imap imap.example.com:993 SSL, smtp smtp.example.com:587 STARTTLS".to_owned())
        );
    }
}
