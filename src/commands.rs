//! The one-shot commands: check, render, dns, import. Each returns the text to
//! print or a `CommandError` that `main` turns into stderr lines and an exit code.

use std::path::Path;

use crate::address::EmailAddress;
use crate::cli::Format;
use crate::config::{self, Config, ConfigError};
use crate::import;
use crate::render::{autodiscover, dns, mobileconfig, mta_sts, thunderbird};

/// EX_CONFIG from sysexits.h: the unit's RestartPreventExitStatus=78 stops a
/// restart loop on a broken config.
pub const EXIT_CONFIG: u8 = 78;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{}", .0.lines().join("\n"))]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Other(String),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Config(_) => EXIT_CONFIG,
            CommandError::Other(_) => 1,
        }
    }
}

/// `check`: the warnings (printed even on success) and a summary line.
pub fn check(path: &Path) -> Result<(Config, String), CommandError> {
    let mut config = config::load(path)?;
    if config.tls.mode == crate::config::TlsMode::Files {
        // The daemon would start and serve what it can; say now what it cannot.
        let resolver = crate::tls::CertResolver::new();
        for problem in crate::certs::files::load_into(&config, &resolver) {
            config.warnings.push(crate::config::Problem {
                key: "tls.files".into(),
                reason: problem,
            });
        }
        let uncovered: Vec<String> = config
            .domains()
            .filter(|(d, _)| resolver.domain_key(d).is_none())
            .map(|(d, _)| d.to_owned())
            .collect();
        for d in uncovered {
            config.warnings.push(crate::config::Problem {
                key: "tls.files".into(),
                reason: format!("no certificate covers autoconfig.{d}: HTTPS for {d} will fail"),
            });
        }
        let bare_uncovered: Vec<String> = config
            .domains()
            .filter(|(d, _)| config.serves_bare_domain(d))
            .filter(|(d, _)| {
                !resolver
                    .domain_names(d)
                    .is_some_and(|names| names.iter().any(|n| n == d))
            })
            .map(|(d, _)| d.to_owned())
            .collect();
        for d in bare_uncovered {
            config.warnings.push(crate::config::Problem {
                key: "tls.files".into(),
                reason: format!(
                    "bare_domain is on but no certificate covers {d}: https://{d}/ will fail"
                ),
            });
        }
    }
    let clients = client_report(&mut config);
    let summary = format!(
        "{}: ok, {} provider(s), {} mail domain(s), tls.mode = {:?}\n{clients}",
        path.display(),
        config.providers.len(),
        config.domains().count(),
        config.tls.mode
    );
    Ok((config, summary.trim_end().to_owned()))
}

/// For `check`: per provider, which server each single-server client gets
/// and what the bare domain needs; a warning for each client that would
/// throw the whole document away (unless validation already named it).
fn client_report(config: &mut Config) -> String {
    use crate::render::clients;
    let mut out = String::new();
    let mut warnings = Vec::new();
    for (i, provider) in config.providers.iter().enumerate() {
        let Some(domain) = provider.domains.first() else {
            continue;
        };
        let Ok(sample) = EmailAddress::parse(&format!("user@{domain}")) else {
            continue;
        };
        out.push_str(&format!("provider[{i}] ({}), for {sample}:\n", provider.id));
        for v in clients::verdicts(provider, &sample) {
            match &v.outcome {
                Ok(took) => out.push_str(&format!("  {}: {took}\n", v.client)),
                Err(reason) => {
                    out.push_str(&format!("  {}: {reason}\n", v.client));
                    let key = format!("provider[{i}]");
                    let named = config.warnings.iter().any(|w| {
                        (w.key == key || w.key.starts_with(&format!("{key}.")))
                            && w.reason.contains(v.client)
                    });
                    if !named {
                        warnings.push(crate::config::Problem {
                            key,
                            reason: format!("{}: {reason}", v.client),
                        });
                    }
                }
            }
        }
        match provider.pacc() {
            Ok(_) if provider.publish_pacc => out.push_str(&format!(
                "  PACC: served at https://ua-auto-config.{domain}/.well-known/user-agent-configuration.json (publish the _ua-auto-config TXT digest: mailconfd dns)\n"
            )),
            Ok(_) => {}
            Err(reason) if provider.publish_pacc => {
                out.push_str(&format!("  PACC: left out: {reason}\n"))
            }
            Err(_) => {}
        }
        for d in &provider.domains {
            if config.serves_bare_domain(d) {
                out.push_str(&format!(
                    "  bare_domain: https://{d}/ is served and {d} is in its certificate: {d}'s A/AAAA records must point here (mailconfd dns --domain {d})\n"
                ));
            }
        }
    }
    config.warnings.extend(warnings);
    out
}

/// `render`: exactly the bytes the server serves for this address (profiles
/// unsigned: signing needs the certificate the running daemon holds).
pub fn render(path: &Path, email: &str, format: Format) -> Result<Vec<u8>, CommandError> {
    let config = config::load(path)?;
    let address =
        EmailAddress::parse(email).map_err(|e| CommandError::Other(format!("--email: {e}")))?;
    let provider = config
        .provider_for_domain(address.domain())
        .ok_or_else(|| {
            CommandError::Other(format!(
                "--email: no provider serves the domain {}",
                address.domain()
            ))
        })?;
    let doc = match format {
        Format::Thunderbird => thunderbird::render(provider, address.domain(), Some(&address)),
        Format::Autodiscover => autodiscover::render(
            provider,
            &address,
            &autodiscover::ResponseSchema::Outlook2006a,
        ),
        Format::AutodiscoverJson => {
            autodiscover::render_json(provider, &address, "AutodiscoverV1").document
        }
        Format::Mobileconfig => mobileconfig::render(provider, &address),
        Format::MtaSts => match &provider.mta_sts {
            Some(policy) => mta_sts::render(policy),
            None => {
                return Err(CommandError::Other(format!(
                    "provider {} has no [provider.mta_sts]",
                    provider.id
                )));
            }
        },
    };
    Ok(doc.body)
}

/// `dns`: zone-file lines for every domain, or one.
pub fn dns(path: &Path, only: Option<&str>) -> Result<String, CommandError> {
    let config = config::load(path)?;
    let only = only
        .map(|d| {
            crate::address::normalize_domain(d)
                .map_err(|e| CommandError::Other(format!("--domain: {e}")))
        })
        .transpose()?;
    let mut out = String::new();
    let mut found = false;
    for (domain, provider) in config.domains() {
        if only.as_deref().is_some_and(|o| o != domain) {
            continue;
        }
        found = true;
        out.push_str(&dns::render(
            provider,
            domain,
            config.server.public_name.as_deref(),
        ));
        out.push('\n');
        out.push_str(&dns::bare_domain(
            domain,
            config.server.public_name.as_deref(),
            config.serves_bare_domain(domain),
        ));
        out.push('\n');
    }
    if !found {
        return Err(CommandError::Other(format!(
            "--domain: {} is not configured",
            only.unwrap_or_default()
        )));
    }
    Ok(out)
}

/// `import`: a `[[provider]]` block from a config-v1.1.xml file.
pub fn import(file: &Path) -> Result<String, CommandError> {
    let meta = std::fs::metadata(file)
        .map_err(|e| CommandError::Other(format!("{}: {e}", file.display())))?;
    if meta.len() > import::MAX_INPUT_BYTES as u64 {
        return Err(CommandError::Other(format!(
            "{}: larger than {} bytes",
            file.display(),
            import::MAX_INPUT_BYTES
        )));
    }
    let bytes =
        std::fs::read(file).map_err(|e| CommandError::Other(format!("{}: {e}", file.display())))?;
    import::import(&bytes).map_err(|e| CommandError::Other(format!("{}: {e}", file.display())))
}

/// `state export` / `state import`.
pub fn state(action: crate::cli::StateAction) -> Result<String, CommandError> {
    use crate::cli::StateAction;
    use crate::store::dump;
    let other = |e: anyhow::Error| CommandError::Other(format!("{e:#}"));
    match action {
        StateAction::Export { config, output } => {
            let config = config::load(&config.path)?;
            let store = open_state_store(&config)?;
            let counts = dump::export(store.as_ref(), &output).map_err(other)?;
            Ok(format!("exported {counts} to {}\n", output.display()))
        }
        StateAction::Import { config, file } => {
            let config = config::load(&config.path)?;
            let store = open_state_store(&config)?;
            let counts = dump::import(store.as_ref(), &file).map_err(other)?;
            Ok(format!("imported {counts} from {}\n", file.display()))
        }
    }
}

/// The config's `[state]` store, for a one-shot command.
fn open_state_store(config: &Config) -> Result<Box<dyn crate::store::Store>, CommandError> {
    use crate::config::state::StateBackend;
    match &config.state {
        StateBackend::Sled => crate::store::SledStore::open(&config.server.state_dir)
            .map(|s| Box::new(s) as Box<dyn crate::store::Store>)
            .map_err(|e| {
                CommandError::Other(format!(
                    "{e:#} (is the daemon running? stop it first: sled allows one process)"
                ))
            }),
        StateBackend::Postgres(settings) => crate::store::PostgresStore::open_uncached(settings)
            .map(|s| Box::new(s) as Box<dyn crate::store::Store>)
            .map_err(|e| CommandError::Other(format!("{e:#}"))),
    }
}

/// `certs`: the certificate report, from the database, or from the daemon's
/// `certs.json` while it holds the database lock.
pub fn certs(path: &Path) -> Result<String, CommandError> {
    use crate::certs::report;
    use crate::config::TlsMode;
    let config = config::load(path)?;
    let state_dir = &config.server.state_dir;
    match config.tls.mode {
        TlsMode::Off => Ok("tls.mode = \"off\": mailconfd serves no certificates\n".to_owned()),
        TlsMode::Files => {
            let resolver = crate::tls::CertResolver::new();
            let problems = crate::certs::files::load_into(&config, &resolver);
            let mut out = String::new();
            for (domain, _) in config.domains() {
                let names = resolver.domain_names(domain).unwrap_or_default();
                let state = if names.is_empty() {
                    "no certificate file covers it"
                } else {
                    "served from file"
                };
                out.push_str(&format!(
                    "{domain}\n  names:       {}\n  state:       {state}\n",
                    names.join(", ")
                ));
            }
            for p in problems {
                out.push_str(&format!("problem: {p}\n"));
            }
            Ok(out)
        }
        TlsMode::Acme | TlsMode::Local => {
            let shared = !matches!(config.state, crate::config::state::StateBackend::Sled);
            // A node of several: the running daemon's view first (it knows
            // what it serves); the shared database when no daemon runs here.
            let snapshot = if shared {
                report::read_snapshot(state_dir).ok()
            } else {
                None
            };
            let rows = match snapshot {
                Some(rows) => rows,
                None => match open_state_store(&config) {
                    Ok(store) => report::rows(&config, store.as_ref(), crate::certs::unix_now()),
                    Err(open_error) => report::read_snapshot(state_dir).map_err(|e| {
                        CommandError::Other(format!(
                            "{open_error}; and no report from a running daemon: {e}"
                        ))
                    })?,
                },
            };
            let mut out = report::format_table(&rows);
            out.push_str(&source_lines(&config));
            Ok(out)
        }
    }
}

/// Domain sources as the running daemon last saw them.
fn source_lines(config: &Config) -> String {
    if config.domain_sources.is_empty() {
        return String::new();
    }
    let mut out = String::from("\ndomain sources\n");
    for row in crate::sources::read_status(&config.server.state_dir) {
        match row.error {
            None => out.push_str(&format!("  {}: {} domain(s)\n", row.provider, row.domains)),
            Some(e) => out.push_str(&format!(
                "  {}: FAILING, serving the last good list of {} domain(s): {e}\n",
                row.provider, row.domains
            )),
        }
    }
    out
}

/// How long `health` waits for the daemon.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// `health`: GET the Thunderbird document of the first domain over the first
/// HTTP listener; exit 0 only on 200 (liveness). With `ready`, also every
/// configured domain must have a valid certificate (readiness): from the
/// running daemon's `certs.json` report (ACME, local CA), or the certificate
/// files (files mode).
pub fn health(path: &Path, ready: bool) -> Result<(), CommandError> {
    let config = config::load(path)?;
    health_answers(&config)?;
    if ready {
        let missing = domains_without_valid_certificate(&config)?;
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
            return Err(CommandError::Other(format!(
                "not ready: {} domain(s) without a valid certificate: {}{}",
                missing.len(),
                shown.join(", "),
                if missing.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            )));
        }
    }
    Ok(())
}

fn domains_without_valid_certificate(config: &Config) -> Result<Vec<String>, CommandError> {
    use crate::config::TlsMode;
    match config.tls.mode {
        TlsMode::Off => Ok(Vec::new()),
        TlsMode::Files => {
            let resolver = crate::tls::CertResolver::new();
            let _ = crate::certs::files::load_into(config, &resolver);
            Ok(config
                .domains()
                .filter(|(d, _)| resolver.domain_key(d).is_none())
                .map(|(d, _)| d.to_owned())
                .collect())
        }
        TlsMode::Acme | TlsMode::Local => {
            let rows =
                crate::certs::report::read_snapshot(&config.server.state_dir).map_err(|e| {
                    CommandError::Other(format!(
                        "not ready: no certificate report from the daemon ({}): {e}",
                        crate::certs::report::snapshot_file(&config.server.state_dir).display()
                    ))
                })?;
            let now = crate::certs::unix_now();
            let valid: std::collections::HashSet<&str> = rows
                .iter()
                .filter(|r| r.state.starts_with("valid") && r.not_after.is_some_and(|t| t > now))
                .map(|r| r.domain.as_str())
                .collect();
            Ok(config
                .domains()
                .filter(|(d, _)| !valid.contains(d))
                .map(|(d, _)| d.to_owned())
                .collect())
        }
    }
}

fn health_answers(config: &Config) -> Result<(), CommandError> {
    use std::io::{Read as _, Write as _};
    let mut addr = *config.server.http_listen.first().ok_or_else(|| {
        CommandError::Other("server.http_listen is empty: nothing to check".into())
    })?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let (domain, _) = config
        .domains()
        .next()
        .ok_or_else(|| CommandError::Other("no domain configured".into()))?;
    let fail = |e: std::io::Error| CommandError::Other(format!("{addr}: {e}"));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, HEALTH_TIMEOUT).map_err(fail)?;
    stream
        .set_read_timeout(Some(HEALTH_TIMEOUT))
        .map_err(fail)?;
    stream
        .set_write_timeout(Some(HEALTH_TIMEOUT))
        .map_err(fail)?;
    let request = format!(
        "GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: autoconfig.{domain}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(fail)?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(fail)?;
    if &head[..] == b"HTTP/1.1 200" {
        Ok(())
    } else {
        Err(CommandError::Other(format!(
            "{addr}: unexpected answer {:?}",
            String::from_utf8_lossy(&head)
        )))
    }
}

/// `doctor`: every check, on a runtime of its own.
pub fn doctor(
    path: &Path,
    domain: Option<String>,
    resolver: Option<&str>,
    ca_file: Option<std::path::PathBuf>,
) -> Result<crate::doctor::report::Report, CommandError> {
    let config = config::load(path)?;
    let resolver = resolver
        .map(|r| {
            r.parse::<std::net::SocketAddr>()
                .or_else(|_| r.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
                .map_err(|_| {
                    CommandError::Other(format!("--resolver {r}: not an IP address or IP:PORT"))
                })
        })
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Other(format!("starting the runtime: {e}")))?;
    let opts = crate::doctor::Options {
        domain,
        resolver,
        ca_file,
    };
    runtime
        .block_on(crate::doctor::run(&config, &opts))
        .map_err(CommandError::Other)
}

/// `check --online`: every domain source run once. Lines to print, and
/// whether every source answered.
pub fn check_sources_online(config: &Config) -> (Vec<String>, bool) {
    if config.domain_sources.is_empty() {
        return (vec!["no domain sources to run".to_owned()], true);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return (vec![format!("starting the runtime: {e}")], false),
    };
    let mut lines = Vec::new();
    let mut all_ok = true;
    for source in &config.domain_sources {
        let provider = &config.providers[source.provider].id;
        let started = std::time::Instant::now();
        match runtime.block_on(crate::sources::fetch(source)) {
            Ok((domains, skipped)) => {
                lines.push(format!(
                    "provider {provider}: {}: {} domain(s) in {} ms{}",
                    source.describe(),
                    domains.len(),
                    started.elapsed().as_millis(),
                    domains
                        .first()
                        .map(|d| format!(", e.g. {d}"))
                        .unwrap_or_default()
                ));
                for s in skipped.iter().take(5) {
                    lines.push(format!("  skipped: {s}"));
                }
            }
            Err(e) => {
                all_ok = false;
                lines.push(format!(
                    "provider {provider}: {}: FAILED: {e}",
                    source.describe()
                ));
            }
        }
    }
    (lines, all_ok)
}
