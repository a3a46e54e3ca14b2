//! A static map file: one TOML table per address.
//!
//! ```toml
//! ["alice@example.com"]
//! login_name = "alice"
//! display_name = "Alice Liddell"
//! imap_host = "imap3.example.com"
//! ```
//! Re-read when its size or modification time changes (looked at no more
//! than every two seconds); a file that does not parse keeps the last good map.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use tokio::sync::Mutex;

use super::{Directory, UserValues};
use crate::address::EmailAddress;

const STAT_INTERVAL: Duration = Duration::from_secs(2);
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

pub(super) struct MapFile {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    map: Arc<HashMap<String, UserValues>>,
    seen: Option<(u64, SystemTime)>,
    checked: Option<Instant>,
    loaded_once: bool,
}

impl MapFile {
    pub(super) fn new(path: PathBuf) -> MapFile {
        MapFile {
            path,
            state: Mutex::new(State::default()),
        }
    }

    async fn current(&self) -> Result<Arc<HashMap<String, UserValues>>, String> {
        let mut state = self.state.lock().await;
        if state.checked.is_some_and(|t| t.elapsed() < STAT_INTERVAL) {
            return Ok(state.map.clone());
        }
        state.checked = Some(Instant::now());
        let meta = tokio::fs::metadata(&self.path)
            .await
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let seen = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        if state.loaded_once && state.seen == Some(seen) {
            return Ok(state.map.clone());
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!(
                "{}: larger than {MAX_FILE_BYTES} bytes",
                self.path.display()
            ));
        }
        let path = self.path.clone();
        let parsed = tokio::task::spawn_blocking(move || parse(&path))
            .await
            .map_err(|e| format!("reading the map file: {e}"))?;
        match parsed {
            Ok(map) => {
                tracing::info!(file = %self.path.display(), users = map.len(), "user map loaded");
                state.map = Arc::new(map);
                state.seen = Some(seen);
                state.loaded_once = true;
                Ok(state.map.clone())
            }
            // Keep serving the last good map; say why (the caller logs it).
            Err(e) if state.loaded_once => {
                state.seen = Some(seen);
                tracing::error!(file = %self.path.display(), error = %e, "user map not reloaded; the last good map stays");
                Ok(state.map.clone())
            }
            Err(e) => Err(e),
        }
    }
}

fn parse(path: &std::path::Path) -> Result<HashMap<String, UserValues>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let raw: HashMap<String, UserValues> =
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    let mut map = HashMap::with_capacity(raw.len());
    for (key, values) in raw {
        let address = EmailAddress::parse(&key)
            .map_err(|e| format!("{}: [\"{key}\"]: {e}", path.display()))?;
        let (values, dropped) = values.sanitized();
        if !dropped.is_empty() {
            return Err(format!(
                "{}: [\"{key}\"]: unusable {}",
                path.display(),
                dropped.join(", ")
            ));
        }
        map.insert(address.to_string(), values);
    }
    Ok(map)
}

impl Directory for MapFile {
    fn lookup<'a>(
        &'a self,
        address: &'a EmailAddress,
    ) -> BoxFuture<'a, Result<Option<UserValues>, String>> {
        Box::pin(async move {
            let map = self.current().await?;
            Ok(map.get(&address.to_string()).cloned())
        })
    }
}
