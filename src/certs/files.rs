//! `tls.mode = "files"`: certificates from certbot or elsewhere. The names a
//! file serves are its own subjectAltNames, limited to the names mailconfd
//! answers for; re-read on SIGHUP (a file that fails to load keeps the
//! previously loaded certificate for its names).

use std::sync::Arc;

use rustls::sign::CertifiedKey;

use crate::config::Config;
use crate::tls::{CertResolver, certkey};

/// Loads every `[[tls.files]]` entry and serves, for each mail domain, the
/// names a loaded certificate covers. Returns the problems, one per file.
pub fn load_into(config: &Config, resolver: &CertResolver) -> Vec<String> {
    let mut problems = Vec::new();
    let mut loaded: Vec<(Vec<String>, Arc<CertifiedKey>)> = Vec::new();
    for f in &config.tls.files {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
        };
        let result = read(&f.cert).and_then(|chain| {
            let key = read(&f.key)?;
            let certified = certkey::certified_key(&chain, &key)
                .map_err(|e| format!("{}: {e}", f.cert.display()))?;
            let info = certkey::info(&chain).map_err(|e| format!("{}: {e}", f.cert.display()))?;
            Ok((info.names, certified))
        });
        match result {
            Ok(entry) => loaded.push(entry),
            Err(problem) => problems.push(problem),
        }
    }
    let mut served_domains = Vec::new();
    for (domain, _) in config.domains() {
        let names = config.names_for_domain(domain);
        let cover = |name: &str| {
            loaded
                .iter()
                .find(|(sans, _)| sans.iter().any(|p| certkey::name_matches(p, name)))
        };
        // One key per domain: the one covering its first name that any file covers.
        let Some((_, key)) = names.iter().find_map(|n| cover(n)) else {
            if resolver.domain_key(domain).is_none() {
                tracing::warn!(domain, "no certificate file covers this domain's names");
            }
            continue;
        };
        let served: Vec<String> = names
            .iter()
            .filter(|n| cover(n).is_some_and(|(_, k)| Arc::ptr_eq(k, key)))
            .cloned()
            .collect();
        resolver.set_domain(domain, served, key.clone());
        served_domains.push(domain.to_owned());
    }
    if problems.is_empty() {
        resolver.retain_domains(|d| served_domains.iter().any(|s| s == d));
    }
    problems
}
