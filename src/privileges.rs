//! Dropping root. Under systemd (DynamicUser, CAP_NET_BIND_SERVICE) and in the
//! Docker image mailconfd never runs as root. Started as root by hand, it binds
//! its ports first and then becomes `server.user`, so a bug in request
//! handling never runs with root's rights; without `server.user` it warns.

use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use anyhow::Context as _;
use nix::unistd::{Gid, Uid, User, setgid, setgroups, setuid};

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

/// Hands `root` and everything under it to `uid:gid` without following a
/// symbolic link anywhere below `root`: the tree belongs to the service user,
/// who could otherwise plant a link (or a hard link) that makes a later root
/// start give it any file on the system. Directories are opened with
/// `O_NOFOLLOW` and walked through their descriptors, entries are changed
/// relative to them with `AT_SYMLINK_NOFOLLOW`. Symbolic links are left
/// alone (with a warning); FIFOs, sockets, devices and regular files with
/// more than one link are refused.
///
/// # Errors
/// An odd file type, or a system call fails: better not to start.
pub fn chown_tree(root: &Path, uid: Uid, gid: Gid) -> anyhow::Result<()> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    // `root` itself comes from root's own config file and may be a link
    // (e.g. /var/lib/mailconfd -> private/mailconfd); below it nothing is followed.
    let fd = open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", root.display()))?;
    nix::unistd::fchown(&fd, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", root.display()))?;
    chown_below(fd, root, uid, gid, 0)
}

/// Deeper than this is not a state directory we made.
const MAX_DEPTH: usize = 16;

fn chown_below(
    dir_fd: std::os::fd::OwnedFd,
    path: &Path,
    uid: Uid,
    gid: Gid,
    depth: usize,
) -> anyhow::Result<()> {
    use nix::fcntl::{AtFlags, OFlag, openat};
    use nix::sys::stat::{Mode, SFlag, fstatat};
    use std::os::fd::AsFd as _;
    anyhow::ensure!(depth < MAX_DEPTH, "{} is nested too deeply", path.display());
    let listing = dir_fd
        .try_clone()
        .with_context(|| format!("reading {}", path.display()))?;
    let mut dir =
        nix::dir::Dir::from_fd(listing).with_context(|| format!("reading {}", path.display()))?;
    for entry in dir.iter() {
        let entry = entry.with_context(|| format!("reading {}", path.display()))?;
        let name = entry.file_name().to_owned();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let child = path.join(std::ffi::OsStr::from_bytes(bytes));
        let stat = fstatat(
            dir_fd.as_fd(),
            name.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .with_context(|| format!("reading {}", child.display()))?;
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            tracing::warn!(path = %child.display(), "not following a symbolic link in the state directory");
        } else if kind == SFlag::S_IFDIR {
            let sub = openat(
                dir_fd.as_fd(),
                name.as_c_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .with_context(|| format!("opening {}", child.display()))?;
            nix::unistd::fchown(&sub, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", child.display()))?;
            chown_below(sub, &child, uid, gid, depth + 1)?;
        } else if kind == SFlag::S_IFREG {
            // A hard link could be any file on the same filesystem.
            anyhow::ensure!(
                stat.st_nlink <= 1,
                "refusing to hand over {}: it has {} hard links",
                child.display(),
                stat.st_nlink
            );
            nix::unistd::fchownat(
                dir_fd.as_fd(),
                name.as_c_str(),
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .with_context(|| format!("chown {}", child.display()))?;
        } else {
            anyhow::bail!(
                "refusing to hand over {}: not a regular file or directory",
                child.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    /// Needs root (chown to another user); skipped otherwise.
    #[test]
    fn chown_follows_no_links_and_refuses_odd_files() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: chown to another user needs root");
            return;
        }
        let (uid, gid) = (Uid::from_raw(65_534), Gid::from_raw(65_534));
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "root's").unwrap();
        let state = tempfile::tempdir().unwrap();
        let root = state.path();
        std::fs::create_dir(root.join("db")).unwrap();
        std::fs::write(root.join("db/conf"), "x").unwrap();
        std::os::unix::fs::symlink(&victim, root.join("db/link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("dirlink")).unwrap();
        chown_tree(root, uid, gid).unwrap();
        for p in [root.to_owned(), root.join("db"), root.join("db/conf")] {
            assert_eq!(
                std::fs::metadata(&p).unwrap().uid(),
                65_534,
                "{}",
                p.display()
            );
        }
        assert_eq!(
            std::fs::metadata(&victim).unwrap().uid(),
            0,
            "link followed"
        );
        assert_eq!(std::fs::metadata(outside.path()).unwrap().uid(), 0);

        // A hard link to a file elsewhere, then a FIFO: refused, nothing handed over.
        std::fs::hard_link(&victim, root.join("db/hard")).unwrap();
        let err = chown_tree(root, uid, gid).unwrap_err();
        assert!(format!("{err:#}").contains("hard links"), "{err:#}");
        assert_eq!(std::fs::metadata(&victim).unwrap().uid(), 0);
        std::fs::remove_file(root.join("db/hard")).unwrap();
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = chown_tree(root, uid, gid).unwrap_err();
        assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
    }
}
