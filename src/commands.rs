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
    let config = config::load(path)?;
    let summary = format!(
        "{}: ok, {} provider(s), {} mail domain(s), tls.mode = {:?}",
        path.display(),
        config.providers.len(),
        config.domains().count(),
        config.tls.mode
    );
    Ok((config, summary))
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
        Format::Thunderbird => thunderbird::render(provider, Some(&address)),
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
