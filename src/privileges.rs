//! Dropping root. Under systemd (DynamicUser, CAP_NET_BIND_SERVICE) and in the
//! Docker image mailconfd never runs as root. Started as root by hand, it binds
//! its ports first and then becomes `server.user`, so a bug in request
//! handling never runs with root's rights; without `server.user` it warns.

use std::path::Path;

use anyhow::Context as _;
use nix::unistd::{Gid, Uid, User, chown, setgid, setgroups, setuid};

/// Becomes `user` if we are root (after the caller has bound its ports),
/// handing it the state directory first.
///
/// # Errors
/// The user does not exist, or a system call fails: better not to start than
/// to keep running as root by surprise.
pub fn drop_root(user: Option<&str>, state_dir: &Path) -> anyhow::Result<()> {
    if !Uid::effective().is_root() {
        return Ok(());
    }
    let Some(name) = user else {
        tracing::warn!(
            "running as root: set server.user, or use the systemd unit or the container image, which never run as root"
        );
        return Ok(());
    };
    let user = User::from_name(name)
        .with_context(|| format!("looking up server.user {name:?}"))?
        .with_context(|| format!("server.user {name:?} does not exist"))?;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    chown_tree(state_dir, user.uid, user.gid)?;
    setgroups(&[user.gid]).context("dropping supplementary groups")?;
    setgid(user.gid).context("setgid")?;
    setuid(user.uid).context("setuid")?;
    // Paranoia that costs nothing: a process that can become root again has not dropped it.
    if setuid(Uid::from_raw(0)).is_ok() {
        anyhow::bail!("could regain root after dropping it to {name:?}");
    }
    tracing::info!(
        user = name,
        uid = user.uid.as_raw(),
        "dropped root privileges"
    );
    Ok(())
}

fn chown_tree(path: &Path, uid: Uid, gid: Gid) -> anyhow::Result<()> {
    chown(path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))?;
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        for entry in
            std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?
        {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}
