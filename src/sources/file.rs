//! A domain list in a file, one domain per line (Postfix's
//! `virtual_mailbox_domains = /etc/postfix/vdomains` style): `#` comments and
//! blank lines allowed. Changes are noticed by size and modification time.

use std::path::Path;
use std::time::SystemTime;

/// A domain file larger than this is refused (about 2.5 million domains).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

pub(super) async fn read(path: &Path) -> Result<Vec<String>, String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!(
                "{}: larger than {MAX_FILE_BYTES} bytes",
                path.display()
            ));
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(text.lines().map(str::to_owned).collect())
    })
    .await
    .map_err(|e| format!("reading the file: {e}"))?
}

/// What tells that the file changed: size and modification time (and
/// whether it exists at all).
pub(super) async fn fingerprint(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some((meta.len(), meta.modified().ok()?))
}
