//! Every word the settings page says, one struct per language.
//!
//! Plain text only: the page writer escapes these like any other value, so a
//! translation can hold `&` or `<` without breaking the markup. `{}` marks where
//! a value goes (see `Html::template`). A new language is a new `static` here
//! plus a line in `Lang`.

use crate::address::AddressError;
use crate::model::{Auth, Security};

/// The languages the page speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
}

impl Lang {
    pub fn strings(self) -> &'static Strings {
        match self {
            Lang::En => &EN,
            Lang::De => &DE,
        }
    }

    fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else if primary.eq_ignore_ascii_case("de") {
            Some(Lang::De)
        } else {
            None
        }
    }

    /// Picks a language from an `Accept-Language` value (RFC 9110 §12.5.4):
    /// the supported language with the highest q, the earlier one on a tie;
    /// English when nothing matches or the header is missing. `*` is ignored.
    pub fn negotiate(accept_language: Option<&str>) -> Lang {
        let mut best: Option<(u16, Lang)> = None;
        for item in accept_language.unwrap_or("").split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let Some(lang) = Lang::from_tag(tag) else {
                continue;
            };
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
                .map_or(Some(1000), parse_qvalue);
            let Some(q) = q.filter(|q| *q > 0) else {
                continue;
            };
            if best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    let q = whole + thousandths;
    (q <= 1000).then_some(q)
}

/// One language's text. Fields are grouped by where they appear on the page.
pub struct Strings {
    /// BCP 47 tag for `<html lang>`.
    pub tag: &'static str,
    /// `<title>`; `{}` is the provider's name.
    pub title: &'static str,
    pub heading: &'static str,
    pub intro: &'static str,

    pub address_label: &'static str,
    pub address_hint: &'static str,
    pub submit: &'static str,
    pub error_empty: &'static str,
    pub error_no_at: &'static str,
    pub error_too_long: &'static str,
    pub error_invalid: &'static str,

    /// `{}` is the address.
    pub unknown_domain_heading: &'static str,
    /// `{}` is the domain.
    pub unknown_domain: &'static str,

    /// `{}` is the address.
    pub settings_heading: &'static str,
    pub apple_heading: &'static str,
    pub apple_intro: &'static str,
    pub download: &'static str,
    pub qr_caption: &'static str,
    pub qr_label: &'static str,

    pub manual_heading: &'static str,
    pub manual_intro: &'static str,
    pub incoming: &'static str,
    pub outgoing: &'static str,
    pub server: &'static str,
    pub port: &'static str,
    pub security: &'static str,
    pub login: &'static str,
    pub auth: &'static str,
    pub password_hint: &'static str,

    pub steps_heading: &'static str,
    pub steps: [(&'static str, &'static [&'static str]); 5],

    pub support: &'static str,
    pub security_words: SecurityWords,
    pub auth_words: AuthWords,
}

pub struct SecurityWords {
    pub tls: &'static str,
    pub starttls: &'static str,
    pub plain: &'static str,
}

pub struct AuthWords {
    pub password_cleartext: &'static str,
    pub password_encrypted: &'static str,
    pub oauth2: &'static str,
    pub ntlm: &'static str,
    pub gssapi: &'static str,
    pub client_ip: &'static str,
    pub smtp_after_pop: &'static str,
    pub tls_client_cert: &'static str,
    pub none: &'static str,
}

impl Strings {
    pub fn security(&self, s: Security) -> &'static str {
        let w = &self.security_words;
        match s {
            Security::Tls => w.tls,
            Security::StartTls => w.starttls,
            Security::Plain => w.plain,
        }
    }

    pub fn auth(&self, a: Auth) -> &'static str {
        let w = &self.auth_words;
        match a {
            Auth::PasswordCleartext => w.password_cleartext,
            Auth::PasswordEncrypted => w.password_encrypted,
            Auth::OAuth2 => w.oauth2,
            Auth::Ntlm => w.ntlm,
            Auth::Gssapi => w.gssapi,
            Auth::ClientIpAddress => w.client_ip,
            Auth::SmtpAfterPop => w.smtp_after_pop,
            Auth::TlsClientCert => w.tls_client_cert,
            Auth::None => w.none,
        }
    }

    /// What to tell a person whose address did not parse. The parser's own
    /// messages are for logs; people get a hint they can act on.
    pub fn address_error(&self, e: &AddressError) -> &'static str {
        match e {
            AddressError::Empty => self.error_empty,
            AddressError::MissingAt => self.error_no_at,
            AddressError::TooLong => self.error_too_long,
            _ => self.error_invalid,
        }
    }
}

pub static EN: Strings = Strings {
    tag: "en",
    title: "E-mail settings – {}",
    heading: "Set up your e-mail",
    intro: "Enter your e-mail address to get everything your phone, tablet or computer needs.",

    address_label: "Your e-mail address",
    address_hint: "For example name@example.com",
    submit: "Show my settings",
    error_empty: "Please enter your e-mail address.",
    error_no_at: "An e-mail address needs an @, like name@example.com.",
    error_too_long: "That address is too long. Please check it.",
    error_invalid: "That does not look like an e-mail address. Please check for typos.",

    unknown_domain_heading: "No settings for {}",
    unknown_domain: "Sorry, we do not provide e-mail for {}. Please check the address, or ask whoever gave it to you.",

    settings_heading: "Settings for {}",
    apple_heading: "iPhone, iPad and Mac",
    apple_intro: "Install a profile and your account is set up in one go.",
    download: "Download the profile",
    qr_caption: "On a computer? Scan this code with your iPhone’s camera.",
    qr_label: "QR code with the link to the profile",

    manual_heading: "Settings to enter by hand",
    manual_intro: "Most apps find these by themselves. If yours asks, enter:",
    incoming: "Incoming mail",
    outgoing: "Outgoing mail",
    server: "Server",
    port: "Port",
    security: "Security",
    login: "User name",
    auth: "Sign-in",
    password_hint: "The password is your e-mail password.",

    steps_heading: "Step by step",
    steps: [
        (
            "iPhone and iPad",
            &[
                "Scan the code above with the Camera app, or open this page on the device and tap “Download the profile”.",
                "Open Settings and tap “Profile Downloaded”.",
                "Tap Install and enter your e-mail password when asked.",
            ],
        ),
        (
            "Mac",
            &[
                "Click “Download the profile”.",
                "Open System Settings and search for “Profiles”.",
                "Double-click the new profile, click Install and enter your e-mail password.",
            ],
        ),
        (
            "Thunderbird",
            &[
                "Open the menu, then Account Settings, Account Actions, Add Mail Account.",
                "Enter your name, e-mail address and password.",
                "Thunderbird finds the settings by itself. Click Done.",
            ],
        ),
        (
            "Outlook",
            &[
                "Choose File, then Add Account (in the new Outlook: Settings, Accounts, Add account).",
                "Enter your e-mail address. Outlook finds the settings by itself.",
                "If it asks for the account type, choose IMAP and use the settings above.",
            ],
        ),
        (
            "Android",
            &[
                "In your mail app, choose Add account, then Other or IMAP.",
                "Enter your e-mail address and password.",
                "If the app does not find the settings, enter the ones above.",
            ],
        ),
    ],

    support: "Need help? Contact us:",
    security_words: SecurityWords {
        tls: "SSL/TLS (encrypted from the start)",
        starttls: "STARTTLS (encrypted after connecting)",
        plain: "None (not encrypted)",
    },
    auth_words: AuthWords {
        password_cleartext: "Normal password",
        password_encrypted: "Encrypted password",
        oauth2: "OAuth2 (sign in through the browser)",
        ntlm: "NTLM",
        gssapi: "Kerberos (GSSAPI)",
        client_ip: "None: your network is allowed",
        smtp_after_pop: "Check incoming mail first",
        tls_client_cert: "TLS client certificate",
        none: "None",
    },
};

pub static DE: Strings = Strings {
    tag: "de",
    title: "E-Mail-Einstellungen – {}",
    heading: "E-Mail einrichten",
    intro: "Geben Sie Ihre E-Mail-Adresse ein, und Sie erhalten alles, was Ihr Telefon, Tablet oder Computer braucht.",

    address_label: "Ihre E-Mail-Adresse",
    address_hint: "Zum Beispiel name@example.com",
    submit: "Meine Einstellungen zeigen",
    error_empty: "Bitte geben Sie Ihre E-Mail-Adresse ein.",
    error_no_at: "Eine E-Mail-Adresse braucht ein @, etwa name@example.com.",
    error_too_long: "Diese Adresse ist zu lang. Bitte prüfen Sie sie.",
    error_invalid: "Das sieht nicht nach einer E-Mail-Adresse aus. Bitte prüfen Sie sie auf Tippfehler.",

    unknown_domain_heading: "Keine Einstellungen für {}",
    unknown_domain: "Für {} bieten wir leider keine E-Mail an. Bitte prüfen Sie die Adresse, oder fragen Sie, wer sie Ihnen gegeben hat.",

    settings_heading: "Einstellungen für {}",
    apple_heading: "iPhone, iPad und Mac",
    apple_intro: "Installieren Sie ein Profil, und Ihr Konto ist in einem Schritt eingerichtet.",
    download: "Profil herunterladen",
    qr_caption: "Am Computer? Scannen Sie diesen Code mit der Kamera Ihres iPhones.",
    qr_label: "QR-Code mit dem Link zum Profil",

    manual_heading: "Einstellungen zum Eintippen",
    manual_intro: "Die meisten Apps finden sie von selbst. Falls Ihre danach fragt, geben Sie ein:",
    incoming: "Posteingang",
    outgoing: "Postausgang",
    server: "Server",
    port: "Port",
    security: "Sicherheit",
    login: "Benutzername",
    auth: "Anmeldung",
    password_hint: "Das Passwort ist Ihr E-Mail-Passwort.",

    steps_heading: "Schritt für Schritt",
    steps: [
        (
            "iPhone und iPad",
            &[
                "Scannen Sie den Code oben mit der Kamera-App, oder öffnen Sie diese Seite auf dem Gerät und tippen Sie auf „Profil herunterladen“.",
                "Öffnen Sie die Einstellungen und tippen Sie auf „Profil geladen“.",
                "Tippen Sie auf Installieren und geben Sie Ihr E-Mail-Passwort ein.",
            ],
        ),
        (
            "Mac",
            &[
                "Klicken Sie auf „Profil herunterladen“.",
                "Öffnen Sie die Systemeinstellungen und suchen Sie nach „Profile“.",
                "Doppelklicken Sie auf das neue Profil, klicken Sie auf Installieren und geben Sie Ihr E-Mail-Passwort ein.",
            ],
        ),
        (
            "Thunderbird",
            &[
                "Öffnen Sie das Menü, dann Konten-Einstellungen, Konten-Aktionen, E-Mail-Konto hinzufügen.",
                "Geben Sie Ihren Namen, Ihre E-Mail-Adresse und Ihr Passwort ein.",
                "Thunderbird findet die Einstellungen von selbst. Klicken Sie auf Fertig.",
            ],
        ),
        (
            "Outlook",
            &[
                "Wählen Sie Datei, dann Konto hinzufügen (im neuen Outlook: Einstellungen, Konten, Konto hinzufügen).",
                "Geben Sie Ihre E-Mail-Adresse ein. Outlook findet die Einstellungen von selbst.",
                "Fragt es nach dem Kontotyp, wählen Sie IMAP und verwenden Sie die Einstellungen oben.",
            ],
        ),
        (
            "Android",
            &[
                "Wählen Sie in Ihrer E-Mail-App Konto hinzufügen, dann Andere oder IMAP.",
                "Geben Sie Ihre E-Mail-Adresse und Ihr Passwort ein.",
                "Findet die App die Einstellungen nicht, geben Sie die von oben ein.",
            ],
        ),
    ],

    support: "Brauchen Sie Hilfe? Schreiben Sie uns:",
    security_words: SecurityWords {
        tls: "SSL/TLS (von Anfang an verschlüsselt)",
        starttls: "STARTTLS (nach dem Verbinden verschlüsselt)",
        plain: "Keine (unverschlüsselt)",
    },
    auth_words: AuthWords {
        password_cleartext: "Passwort, normal",
        password_encrypted: "Verschlüsseltes Passwort",
        oauth2: "OAuth2 (Anmeldung im Browser)",
        ntlm: "NTLM",
        gssapi: "Kerberos (GSSAPI)",
        client_ip: "Keine: Ihr Netz ist zugelassen",
        smtp_after_pop: "Erst Posteingang abrufen",
        tls_client_cert: "TLS-Client-Zertifikat",
        none: "Keine",
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_supported_language() {
        assert_eq!(Lang::negotiate(None), Lang::En);
        assert_eq!(Lang::negotiate(Some("")), Lang::En);
        assert_eq!(Lang::negotiate(Some("de-DE,de;q=0.9,en;q=0.8")), Lang::De);
        assert_eq!(Lang::negotiate(Some("DE")), Lang::De);
        assert_eq!(
            Lang::negotiate(Some("fr-CH, fr;q=0.9, de;q=0.7, en;q=0.8")),
            Lang::En
        );
        assert_eq!(Lang::negotiate(Some("fr, de;q=0.5")), Lang::De);
        assert_eq!(Lang::negotiate(Some("en;q=0.5, de;q=0.5")), Lang::En);
        assert_eq!(Lang::negotiate(Some("de;q=0, en;q=0.1")), Lang::En);
        assert_eq!(Lang::negotiate(Some("de;q=0")), Lang::En);
        assert_eq!(Lang::negotiate(Some("*, de;q=0.1")), Lang::De);
        // Malformed weights are ignored rather than trusted.
        assert_eq!(Lang::negotiate(Some("de;q=2, en;q=0.2")), Lang::En);
        assert_eq!(Lang::negotiate(Some("dee, de-AT;q=0.3")), Lang::De);
    }

    #[test]
    fn qvalues_parse_per_rfc() {
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("0.875"), Some(875));
        assert_eq!(parse_qvalue("0.5"), Some(500));
        assert_eq!(parse_qvalue("1.5"), None);
        assert_eq!(parse_qvalue("0.1234"), None);
        assert_eq!(parse_qvalue("x"), None);
    }

    #[test]
    fn every_language_fills_every_string() {
        for lang in [Lang::En, Lang::De] {
            let s = lang.strings();
            let texts = [
                s.title,
                s.heading,
                s.intro,
                s.address_label,
                s.submit,
                s.error_empty,
                s.error_invalid,
                s.unknown_domain,
                s.settings_heading,
                s.download,
                s.qr_label,
                s.manual_heading,
                s.login,
                s.support,
            ];
            assert!(texts.iter().all(|t| !t.trim().is_empty()), "{}", s.tag);
            for (name, steps) in &s.steps {
                assert!(!name.is_empty() && !steps.is_empty(), "{}", s.tag);
            }
            for t in [
                s.title,
                s.unknown_domain_heading,
                s.unknown_domain,
                s.settings_heading,
            ] {
                assert_eq!(t.matches("{}").count(), 1, "{}: {t}", s.tag);
            }
            for a in Auth::ALL {
                assert!(!s.auth(a).is_empty());
            }
        }
        assert_ne!(EN.heading, DE.heading);
    }
}
