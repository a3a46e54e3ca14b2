//! The settings page for people: `GET /` on autoconfig.D and autodiscover.D.
//!
//! One server-rendered HTML document: a form for the address, then the
//! settings to type in, the Apple profile as a link and a QR code, and short
//! steps per client. No JavaScript, no external resources except an https logo
//! the operator configured (its exact origin is the only other entry in the
//! CSP, and `Referrer-Policy: no-referrer` keeps the address from it).
//!
//! Every byte goes through [`Html`]: markup only as `&'static str`, every value
//! escaped. Pure like the rest of `render`; `http` picks the status and headers
//! from [`Outcome`].

pub mod html;
pub mod strings;

use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use qrcode::{Color, EcLevel, QrCode};
use sha2::{Digest, Sha256};

use super::Document;
use crate::address::{AddressError, EmailAddress};
use crate::model::{Provider, Server, expand};
pub use html::{Html, escape_into};
pub use strings::Lang;
use strings::Strings;

pub const HTML: &str = "text/html; charset=utf-8";

/// What the page is showing.
#[derive(Debug, Clone, Copy)]
pub enum View<'a> {
    /// No address yet: the form.
    Form,
    /// The address did not parse: the form again, with what was typed.
    Invalid {
        typed: &'a str,
        error: &'a AddressError,
    },
    /// A valid address in a domain nobody here serves.
    UnknownDomain { address: &'a EmailAddress },
    /// A served address; `provider` must be the one serving its domain.
    Settings { address: &'a EmailAddress },
}

/// How the caller should answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200, same for everyone with this language.
    Form,
    /// 200, holds the address.
    Settings,
    /// 400, holds what was typed.
    Invalid,
    /// 404, holds the address.
    UnknownDomain,
}

impl Outcome {
    /// Whether the page holds request data and must not be cached.
    pub fn is_personal(self) -> bool {
        self != Outcome::Form
    }
}

#[derive(Debug)]
pub struct Rendered {
    pub document: Document,
    pub outcome: Outcome,
    /// The `Content-Security-Policy` value for this page.
    pub csp: String,
}

/// Renders the page for `provider` (the address's provider for `Settings`,
/// else the one the Host names).
pub fn render(provider: &Provider, view: View<'_>, lang: Lang) -> Rendered {
    let s = lang.strings();
    let logo = provider.logo_url.as_deref().and_then(logo_origin);
    let mut w = Html::default();
    head(&mut w, s, provider, logo.is_some());
    let outcome = match view {
        View::Form => {
            w.element("h1", &[], s.heading);
            w.element("p", &[("class", "lead")], s.intro);
            form(&mut w, s, "", None);
            Outcome::Form
        }
        View::Invalid { typed, error } => {
            w.element("h1", &[], s.heading);
            form(&mut w, s, typed, Some(s.address_error(error)));
            Outcome::Invalid
        }
        View::UnknownDomain { address } => {
            w.start("h1", &[]);
            w.template(s.unknown_domain_heading, &address.to_string());
            w.end("h1");
            w.start("p", &[("class", "lead")]);
            w.template(s.unknown_domain, address.domain());
            w.end("p");
            form(&mut w, s, &address.to_string(), None);
            Outcome::UnknownDomain
        }
        View::Settings { address } => {
            settings(&mut w, s, provider, address);
            Outcome::Settings
        }
    };
    foot(&mut w, s, provider);
    Rendered {
        document: Document {
            content_type: HTML,
            filename: None,
            body: w.finish().into_bytes(),
        },
        outcome,
        csp: csp(logo.as_deref()),
    }
}

/// The absolute profile URL the QR code holds: what an iPhone camera opens.
pub fn profile_url(address: &EmailAddress) -> String {
    format!(
        "https://autoconfig.{}{}",
        address.domain(),
        profile_path(address)
    )
}

/// RFC 3986 unreserved characters and `@` stay; `+` in particular is encoded,
/// since a form decoder would turn it into a space.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

fn profile_path(address: &EmailAddress) -> String {
    let encoded = utf8_percent_encode(&address.to_string(), QUERY_VALUE).to_string();
    format!("/mobileconfig?emailaddress={encoded}")
}

/// `https://host[:port]` of an https logo URL without placeholders, lower-cased;
/// anything else is not shown (an http logo would be mixed content, and a
/// placeholder could send the address to the logo's host).
fn logo_origin(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    if url.contains('%') {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let valid = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    valid.then(|| format!("https://{}", authority.to_ascii_lowercase()))
}

fn csp(logo_origin: Option<&str>) -> String {
    // data: only for the empty favicon link, which stops the browser asking for /favicon.ico.
    let img = match logo_origin {
        Some(origin) => format!("data: {origin}"),
        None => "data:".to_owned(),
    };
    format!(
        "default-src 'none'; style-src '{}'; img-src {img}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        style_hash()
    )
}

/// `sha256-<base64>` of the inline style sheet, so the CSP needs no 'unsafe-inline'.
fn style_hash() -> String {
    let digest = Sha256::digest(CSS.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn head(w: &mut Html, s: &Strings, provider: &Provider, show_logo: bool) {
    w.markup("<!doctype html>\n");
    w.start("html", &[("lang", s.tag)]);
    w.markup("<head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"color-scheme\" content=\"light dark\"><meta name=\"referrer\" content=\"no-referrer\">");
    w.start("title", &[]);
    w.template(s.title, &provider.name);
    w.end("title");
    w.markup("<link rel=\"icon\" href=\"data:,\"><style>");
    w.markup(CSS);
    w.markup("</style></head>\n<body>\n<header>");
    if let (true, Some(url)) = (show_logo, provider.logo_url.as_deref()) {
        w.start(
            "img",
            &[
                ("src", url),
                ("alt", ""),
                ("referrerpolicy", "no-referrer"),
                ("height", "40"),
            ],
        );
    }
    w.element("p", &[("class", "brand")], &provider.name);
    w.markup("</header>\n<main>\n");
}

fn foot(w: &mut Html, s: &Strings, provider: &Provider) {
    w.markup("</main>\n");
    if let Some(support) = provider.support.as_deref() {
        w.markup("<footer><p>");
        w.text(s.support);
        w.markup(" ");
        let address = support.strip_prefix("mailto:").unwrap_or(support);
        if support.starts_with("https://") || support.starts_with("http://") {
            w.element("a", &[("href", support)], support);
        } else if let Ok(a) = EmailAddress::parse(address) {
            w.element("a", &[("href", &format!("mailto:{a}"))], &a.to_string());
        } else {
            w.text(support);
        }
        w.markup("</p></footer>\n");
    }
    w.markup("</body>\n</html>\n");
}

fn form(w: &mut Html, s: &Strings, value: &str, error: Option<&str>) {
    w.markup("<form method=\"get\" action=\"/\">");
    w.element("label", &[("for", "emailaddress")], s.address_label);
    w.markup("<div class=\"field\">");
    let describedby = if error.is_some() {
        "address-error address-hint"
    } else {
        "address-hint"
    };
    let mut attrs = vec![
        ("id", "emailaddress"),
        ("name", "emailaddress"),
        ("type", "text"),
        ("inputmode", "email"),
        ("autocomplete", "email"),
        ("autocapitalize", "none"),
        ("spellcheck", "false"),
        ("required", ""),
        ("value", value),
        ("aria-describedby", describedby),
    ];
    if error.is_some() {
        attrs.extend([("aria-invalid", "true"), ("autofocus", "")]);
    }
    w.start("input", &attrs);
    w.element("button", &[("type", "submit")], s.submit);
    w.markup("</div>");
    if let Some(error) = error {
        w.element("p", &[("id", "address-error"), ("class", "error")], error);
    }
    w.element(
        "p",
        &[("id", "address-hint"), ("class", "hint")],
        s.address_hint,
    );
    w.markup("</form>\n");
}

fn settings(w: &mut Html, s: &Strings, provider: &Provider, address: &EmailAddress) {
    let shown = address.to_string();
    w.start("h1", &[]);
    w.template(s.settings_heading, &shown);
    w.end("h1");

    w.markup("<section class=\"apple\" aria-labelledby=\"apple\"><div>");
    w.element("h2", &[("id", "apple")], s.apple_heading);
    w.element("p", &[], s.apple_intro);
    w.element(
        "a",
        &[
            ("class", "button"),
            // No `download` attribute: iOS Safari would file the profile away
            // in Files instead of offering to install it.
            ("href", &profile_path(address)),
        ],
        s.download,
    );
    w.markup("</div><figure>");
    qr_svg(w, &profile_url(address), s.qr_label);
    w.element("figcaption", &[], s.qr_caption);
    w.markup("</figure></section>\n");

    w.markup("<section aria-labelledby=\"manual\">");
    w.element("h2", &[("id", "manual")], s.manual_heading);
    w.element("p", &[], s.manual_intro);
    w.markup("<div class=\"servers\">");
    for server in provider.incoming() {
        server_table(w, s, s.incoming, server, address);
    }
    for server in provider.outgoing() {
        server_table(w, s, s.outgoing, server, address);
    }
    w.markup("</div>");
    w.element("p", &[("class", "hint")], s.password_hint);
    w.markup("</section>\n");

    w.markup("<section aria-labelledby=\"steps\">");
    w.element("h2", &[("id", "steps")], s.steps_heading);
    w.markup("<div class=\"steps\">");
    for (client, steps) in &s.steps {
        w.markup("<div>");
        w.element("h3", &[], client);
        w.markup("<ol>");
        for step in *steps {
            w.element("li", &[], step);
        }
        w.markup("</ol></div>");
    }
    w.markup("</div></section>\n");
    // Form last: a person who mistyped can correct it without scrolling up.
    form(w, s, &shown, None);
}

fn server_table(
    w: &mut Html,
    s: &Strings,
    direction: &str,
    server: &Server,
    address: &EmailAddress,
) {
    let Some((host, port, security)) = server.host_port() else {
        return;
    };
    w.markup("<table>");
    w.start("caption", &[]);
    w.text(direction);
    w.text(" (");
    w.text(&server.kind.config_name().to_ascii_uppercase());
    w.text(")");
    w.end("caption");
    let auth = server
        .auth
        .iter()
        .map(|a| s.auth(*a))
        .collect::<Vec<_>>()
        .join(" / ");
    for (label, value, mono) in [
        (s.server, expand(host, Some(address)).into_owned(), true),
        (s.port, port.to_string(), true),
        (s.security, s.security(security).to_owned(), false),
        (
            s.login,
            expand(&server.username, Some(address)).into_owned(),
            true,
        ),
        (s.auth, auth, false),
    ] {
        w.markup("<tr>");
        w.element("th", &[("scope", "row")], label);
        let attrs: &[(&str, &str)] = if mono { &[("class", "mono")] } else { &[] };
        w.element("td", attrs, &value);
        w.markup("</tr>");
    }
    w.markup("</table>");
}

/// Quiet zone around the code, in modules (ISO/IEC 18004 asks for 4).
const QR_QUIET_MODULES: usize = 4;

/// The QR code as inline SVG, one path of horizontal runs. Drawn here rather
/// than with qrcode's SVG renderer so that it, too, is written through `Html`.
fn qr_svg(w: &mut Html, data: &str, label: &str) {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)
        .expect("a URL of at most ~350 bytes fits a version-40 code");
    let width = code.width();
    let colors = code.to_colors();
    let mut d = String::new();
    for (y, row) in colors.chunks(width).enumerate() {
        let mut x = 0;
        while x < width {
            if row[x] == Color::Dark {
                let run = row[x..].iter().take_while(|c| **c == Color::Dark).count();
                d.push_str(&format!(
                    "M{} {}h{run}v1h-{run}z",
                    x + QR_QUIET_MODULES,
                    y + QR_QUIET_MODULES
                ));
                x += run;
            } else {
                x += 1;
            }
        }
    }
    let size = (width + 2 * QR_QUIET_MODULES).to_string();
    let view_box = format!("0 0 {size} {size}");
    w.start(
        "svg",
        &[
            ("xmlns", "http://www.w3.org/2000/svg"),
            ("viewBox", &view_box),
            ("role", "img"),
            ("aria-label", label),
            ("shape-rendering", "crispEdges"),
        ],
    );
    w.start(
        "rect",
        &[("width", &size), ("height", &size), ("fill", "#fff")],
    );
    w.end("rect");
    w.start("path", &[("d", &d), ("fill", "#000")]);
    w.end("path");
    w.end("svg");
}

/// Mobile first: one column, then side by side where there is room.
/// Colours meet WCAG AA (4.5:1) in both schemes; focus is always visible.
const CSS: &str = "\
:root{color-scheme:light dark;--fg:#1b1b1f;--muted:#4a4b55;--bg:#fff;--card:#f1f3f7;--line:#d3d6de;--accent:#1a4fa0;--on-accent:#fff;--err:#b00020;--focus:#c2410c}\
@media (prefers-color-scheme:dark){:root{--fg:#ececf1;--muted:#b8bac4;--bg:#131417;--card:#1e2026;--line:#3b3e47;--accent:#9dc1ff;--on-accent:#0b1a33;--err:#ff8a80;--focus:#fdba74}}\
*{box-sizing:border-box}\
body{margin:0;font:1rem/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;color:var(--fg);background:var(--bg)}\
header,main,footer{max-width:50rem;margin:0 auto;padding:1rem}\
header{display:flex;align-items:center;gap:.75rem;border-bottom:1px solid var(--line)}\
header img{max-height:2.5rem;max-width:10rem;width:auto}\
.brand{font-weight:700;margin:0}\
h1{font-size:1.6rem;line-height:1.2;margin:.5rem 0 .75rem;overflow-wrap:anywhere}\
h2{font-size:1.25rem;margin:0 0 .5rem}\
h3{font-size:1.05rem;margin:1rem 0 .25rem}\
section{margin:1.5rem 0}\
.lead{font-size:1.1rem}\
form{margin:1.5rem 0}\
label{display:block;font-weight:600;margin-bottom:.35rem}\
.field{display:flex;flex-wrap:wrap;gap:.5rem}\
input{flex:1 1 15rem;min-width:0;font:inherit;padding:.6rem .75rem;border:2px solid var(--muted);border-radius:.4rem;background:var(--bg);color:var(--fg)}\
button,.button{display:inline-block;font:inherit;font-weight:600;padding:.65rem 1.1rem;border:2px solid transparent;border-radius:.4rem;background:var(--accent);color:var(--on-accent);text-decoration:none;cursor:pointer}\
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}\
.hint{color:var(--muted);font-size:.9rem;margin:.35rem 0 0}\
.error{color:var(--err);font-weight:600;margin:.5rem 0 0}\
input[aria-invalid]{border-color:var(--err)}\
.apple{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:1rem 2rem;background:var(--card);border-radius:.6rem;padding:1rem}\
.apple>div{flex:1 1 16rem}\
figure{margin:0 auto;text-align:center}\
figure svg{display:block;width:11rem;height:11rem;margin:0 auto}\
figcaption{color:var(--muted);font-size:.9rem;max-width:13rem;margin-top:.25rem}\
.servers,.steps{display:grid;gap:0 1.5rem;grid-template-columns:repeat(auto-fit,minmax(min(100%,20rem),1fr))}\
table{border-collapse:collapse;width:100%;margin:.5rem 0}\
caption{text-align:left;font-weight:700;padding:.25rem 0}\
th,td{text-align:left;vertical-align:top;padding:.35rem .5rem .35rem 0;border-top:1px solid var(--line)}\
th{font-weight:400;color:var(--muted);width:7rem}\
td{overflow-wrap:anywhere}\
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.95rem}\
ol{margin:0;padding-left:1.4rem}\
li{margin:.2rem 0}\
a{color:var(--accent)}\
footer{border-top:1px solid var(--line);color:var(--muted)}\
";

#[cfg(test)]
mod tests;
