//! Reloading the configuration: in the daemon (SIGHUP: load and validate the
//! whole file, publish it or keep the old one) and in the `reload` command
//! that the systemd unit's `ExecReload=` runs.
//!
//! `systemctl reload` reports what the `ExecReload=` process exits with, and
//! a bare `kill -HUP` always succeeds, even when the daemon then refuses the
//! file (and `/bin/kill` is missing on minimal Debian). So the daemon records
//! each reload's outcome in `$RUNTIME_DIRECTORY/reload.json` (systemd's
//! `RuntimeDirectory=`, shared by the unit's processes), and `mailconfd
//! reload` validates the file, sends SIGHUP and waits for that record: exit 0
//! when the daemon applied the file, 78 when it (or the command) refused it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{self, Config};

/// How long `mailconfd reload` waits for the daemon's answer.
pub const RELOAD_WAIT: Duration = Duration::from_secs(60);

/// The outcome of the daemon's latest reload, as written to `reload.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The daemon's PID: a record left by an earlier process is not an answer.
    pub pid: u32,
    /// 0 at startup, +1 per reload attempt.
    pub generation: u64,
    pub applied: bool,
    /// One "FILE: KEY: reason" line per problem when refused.
    pub problems: Vec<String>,
}

/// Where the outcome lives: `$RUNTIME_DIRECTORY/reload.json`, when the
/// service manager gave us a runtime directory.
pub fn outcome_file() -> Option<PathBuf> {
    let dirs = std::env::var_os("RUNTIME_DIRECTORY")?;
    // systemd separates several directories with ':'; ours is the first.
    let first = dirs.to_str()?.split(':').next()?.to_owned();
    (!first.is_empty()).then(|| Path::new(&first).join("reload.json"))
}

/// Records `outcome` atomically (temp file + rename). Failures are logged:
/// the reload itself has happened either way.
pub fn record(outcome: &Outcome) {
    let Some(path) = outcome_file() else { return };
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(outcome).expect("outcome serializes: plain data");
    if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path)) {
        tracing::warn!(file = %path.display(), error = %e, "cannot record the reload outcome; `mailconfd reload` will time out");
    }
}

fn read_outcome(path: &Path) -> Option<Outcome> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The daemon's side: loads and validates the whole file. Returns the new
/// config to publish, or the problems (the caller keeps the old config).
pub async fn apply(path: &Path, old: &Config) -> Result<Config, Vec<String>> {
    let path_owned = path.to_owned();
    let new = match tokio::task::spawn_blocking(move || config::load(&path_owned)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let problems = e.lines();
            tracing::error!(problems = %problems.join("; "), "reload failed; keeping the old config");
            return Err(problems);
        }
        Err(e) => {
            tracing::error!(error = %e, "reload failed; keeping the old config");
            return Err(vec![format!("loading the config: {e}")]);
        }
    };
    for (key, changed) in [
        (
            "server.http_listen",
            old.server.http_listen != new.server.http_listen,
        ),
        (
            "server.https_listen",
            old.server.https_listen != new.server.https_listen,
        ),
        (
            "server.state_dir",
            old.server.state_dir != new.server.state_dir,
        ),
        (
            "server.metrics_listen",
            old.server.metrics_listen != new.server.metrics_listen,
        ),
        ("tls.mode", old.tls.mode != new.tls.mode),
        ("acme", old.acme != new.acme),
    ] {
        if changed {
            tracing::warn!(key, "changed key takes effect only after a restart");
        }
    }
    for w in &new.warnings {
        tracing::warn!(key = %w.key, reason = %w.reason, "config warning");
    }
    Ok(new)
}

/// Why `mailconfd reload` failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is invalid (checked here, or refused by the daemon).
    #[error("{}", .0.join("\n"))]
    Refused(Vec<String>),
    #[error("{0}")]
    Other(String),
}

/// The `reload` command: validate `path`, send SIGHUP to `pid`, and, when the
/// daemon records outcomes, wait for its answer. Returns what to print.
///
/// # Errors
/// `Refused` with the problems when the file is invalid or the daemon kept its
/// old config; `Other` when the signal cannot be sent or no answer comes.
pub fn request(path: &Path, pid: u32) -> Result<String, ReloadError> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    config::load(path).map_err(|e| ReloadError::Refused(e.lines()))?;
    let raw_pid = i32::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| ReloadError::Other(format!("--pid {pid}: not a daemon's process id")))?;
    let outcome_path = outcome_file();
    let before = outcome_path
        .as_deref()
        .and_then(read_outcome)
        .filter(|o| o.pid == pid)
        .map(|o| o.generation);
    kill(Pid::from_raw(raw_pid), Signal::SIGHUP)
        .map_err(|e| ReloadError::Other(format!("sending SIGHUP to {pid}: {e}")))?;
    let Some(outcome_path) = outcome_path else {
        return Ok(format!(
            "{}: valid; SIGHUP sent to {pid} (the daemon's log says when it is applied)",
            path.display()
        ));
    };
    let deadline = Instant::now() + RELOAD_WAIT;
    while Instant::now() < deadline {
        if let Some(o) = read_outcome(&outcome_path)
            && o.pid == pid
            && before.is_none_or(|g| o.generation > g)
            && o.generation > 0
        {
            return if o.applied {
                Ok(format!("{}: reloaded", path.display()))
            } else {
                Err(ReloadError::Refused(o.problems))
            };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(ReloadError::Other(format!(
        "no answer from {pid} within {} s (see its log)",
        RELOAD_WAIT.as_secs()
    )))
}
