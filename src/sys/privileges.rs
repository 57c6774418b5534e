//! Who the processes run as, Gunicorn's way: the master binds as it was started (root,
//! for port 80 or a socket in /run), then takes `--user` and `--group` before any worker
//! or migration child starts; `--umask` and unix-socket ownership and mode.

use nix::unistd::{Gid, Group, Uid, User};
use std::path::Path;

/// The identity to switch to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    pub uid: Uid,
    pub gid: Gid,
}

/// A user name or uid.
pub fn user(s: &str) -> Result<User, String> {
    let found = match s.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)),
        Err(_) => User::from_name(s),
    };
    found
        .map_err(|e| format!("cannot look up user {s:?}: {e}"))?
        .ok_or_else(|| format!("no such user {s:?}"))
}

/// A group name or gid.
pub fn group(s: &str) -> Result<Gid, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    Group::from_name(s)
        .map_err(|e| format!("cannot look up group {s:?}: {e}"))?
        .map(|g| g.gid)
        .ok_or_else(|| format!("no such group {s:?}"))
}

/// The credentials `--user` and `--group` name (the user's own group by default), or
/// `None` when neither is set.
pub fn resolve(
    user_name: Option<&str>,
    group_name: Option<&str>,
) -> Result<Option<Credentials>, String> {
    if user_name.is_none() && group_name.is_none() {
        return Ok(None);
    }
    let (uid, primary) = match user_name {
        Some(u) => {
            let u = user(u)?;
            (u.uid, u.gid)
        }
        None => (Uid::effective(), Gid::effective()),
    };
    let gid = match group_name {
        Some(g) => group(g)?,
        None => primary,
    };
    Ok(Some(Credentials { uid, gid }))
}

/// Switches this process to `c` for good (supplementary groups: only `c.gid`). A
/// process that already is `c` (a `USR2` successor) has nothing to do.
pub fn switch_to(c: Credentials) -> Result<(), String> {
    if Uid::effective() == c.uid && Gid::effective() == c.gid {
        return Ok(());
    }
    if !Uid::effective().is_root() {
        return Err(format!(
            "cannot switch to uid {} gid {}: only root can (this process is uid {})",
            c.uid,
            c.gid,
            Uid::effective()
        ));
    }
    nix::unistd::setgroups(&[c.gid]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setgid(c.gid).map_err(|e| format!("setgid({}): {e}", c.gid))?;
    nix::unistd::setuid(c.uid).map_err(|e| format!("setuid({}): {e}", c.uid))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() && !c.uid.is_root() {
        return Err("the switch did not stick: root could be regained".into());
    }
    Ok(())
}

/// Gives `path` to `c` (a unix socket or a log file the new user must reopen).
pub fn chown(path: &Path, c: Credentials) -> Result<(), String> {
    nix::unistd::chown(path, Some(c.uid), Some(c.gid)).map_err(|e| {
        format!(
            "cannot chown {} to {}:{}: {e}",
            path.display(),
            c.uid,
            c.gid
        )
    })
}

/// `chmod MODE path`.
pub fn chmod(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {:o} {}: {e}", mode, path.display()))
}

/// Sets the process's umask.
pub fn set_umask(mode: u32) {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        mode as libc::mode_t,
    ));
}

/// An octal mode: `0660`, `660`, `0o660`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let t = t.strip_prefix("0o").unwrap_or(t);
    u32::from_str_radix(t, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{s:?} is not an octal mode such as 0660"))
}
