//! Running unprivileged: under systemd the unit's `User=` does it; started as root outside
//! systemd, the daemon opens its devices and then drops to the configured user for good.
//!
//! [`decide`] is the pure policy; [`drop_to`] performs it with `nix` (initgroups, setresgid,
//! setresuid) and verifies that root cannot be regained.

use std::ffi::CString;
use std::path::Path;

use nix::unistd::{Gid, Group, Uid, User};

/// What to do about the process's identity at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not root: keep running as we are (e.g. systemd started us as `User=gatewayd`).
    KeepCurrent,
    /// Root with a user configured: open devices, then [`drop_to`] this user.
    DropTo(String),
    /// Root, no user configured, and `allow_root` set: keep running as root (warn).
    StayRoot,
    /// Root, no user configured, root not allowed: refuse to start, with this message.
    Refuse(String),
}

/// The privilege policy. `configured_user` is the config's `user` (a name `root` counts as
/// none); `allow_root` is the explicit opt-in to running as root.
pub fn decide(euid: u32, configured_user: Option<&str>, allow_root: bool) -> Decision {
    if euid != 0 {
        return Decision::KeepCurrent;
    }
    match configured_user.map(str::trim) {
        Some(u) if !u.is_empty() && u != "root" => Decision::DropTo(u.to_owned()),
        _ if allow_root => Decision::StayRoot,
        _ => Decision::Refuse(
            "refusing to run as root: set `user = \"gatewayd\"` in the [service] section \
             of the config to drop privileges after the devices are opened, or \
             `allow_root = true` to run as root anyway"
                .to_owned(),
        ),
    }
}

/// Why dropping privileges failed (the daemon must then exit, not carry on as root).
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// No such user in the user database.
    #[error("user {0:?} does not exist (create it, or change service.user)")]
    NoSuchUser(String),
    /// The user database could not be read.
    #[error("cannot look up user {user:?}: {source}")]
    Lookup {
        /// The user looked up.
        user: String,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// A system call failed.
    #[error("cannot drop privileges to {user:?}: {call} failed: {err}")]
    Syscall {
        /// The target user.
        user: String,
        /// Which call.
        call: &'static str,
        /// The error.
        #[source]
        err: nix::Error,
    },
    /// After dropping, root could still be regained, or the ids are not what they should be.
    #[error("privilege drop to {0:?} did not stick: {1}")]
    NotDropped(String, String),
    /// The ids could not be read back after dropping.
    #[error("privilege drop to {user:?} cannot be checked: {call} failed: {err}")]
    Unverifiable {
        /// The target user.
        user: String,
        /// Which call.
        call: &'static str,
        /// The error.
        #[source]
        err: nix::Error,
    },
    /// The state directory could not be listed before handing it over.
    #[error("cannot list {}: {source}", path.display())]
    ReadDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A state file could not be given to the service user.
    #[error("chown {}: {source}", path.display())]
    Chown {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The identity the process ended up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (from the group database, e.g. spi, gpio, dialout).
    pub groups: Vec<u32>,
}

/// Become `user` for good: supplementary groups from the group database, then real,
/// effective and saved group and user ids; then check that `setuid(0)` fails. Call after
/// the devices are opened and before any network traffic is handled. Must be called
/// while the process is single-threaded or from any thread (glibc applies set*id to all
/// threads).
pub fn drop_to(user: &str) -> Result<Dropped, PrivilegeError> {
    let u = lookup(user)?;
    let sys = |call, err| PrivilegeError::Syscall {
        user: user.to_owned(),
        call,
        err,
    };
    let cname = CString::new(user).map_err(|_| PrivilegeError::NoSuchUser(user.to_owned()))?;
    nix::unistd::initgroups(&cname, u.gid).map_err(|e| sys("initgroups", e))?;
    nix::unistd::setresgid(u.gid, u.gid, u.gid).map_err(|e| sys("setresgid", e))?;
    nix::unistd::setresuid(u.uid, u.uid, u.uid).map_err(|e| sys("setresuid", e))?;
    verify(user, u.uid, u.gid)
}

/// `user` from the user database.
fn lookup(user: &str) -> Result<User, PrivilegeError> {
    User::from_name(user)
        .map_err(|source| PrivilegeError::Lookup {
            user: user.to_owned(),
            source,
        })?
        .ok_or_else(|| PrivilegeError::NoSuchUser(user.to_owned()))
}

/// Give the state directory `dir` and the files in it to `user` before dropping to it, so the
/// outbox stays writable.
pub fn hand_over(dir: &Path, user: &str) -> Result<(), PrivilegeError> {
    let u = lookup(user)?;
    let entries = std::fs::read_dir(dir).map_err(|source| PrivilegeError::ReadDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let paths =
        std::iter::once(dir.to_path_buf()).chain(entries.filter_map(|e| e.ok()).map(|e| e.path()));
    for path in paths {
        std::os::unix::fs::chown(&path, Some(u.uid.as_raw()), Some(u.gid.as_raw()))
            .map_err(|source| PrivilegeError::Chown { path, source })?;
    }
    Ok(())
}

fn verify(user: &str, uid: Uid, gid: Gid) -> Result<Dropped, PrivilegeError> {
    let not = |why: String| PrivilegeError::NotDropped(user.to_owned(), why);
    let query = |call, err| PrivilegeError::Unverifiable {
        user: user.to_owned(),
        call,
        err,
    };
    if !uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(not("setuid(0) succeeded".into()));
    }
    let ids = nix::unistd::getresuid().map_err(|e| query("getresuid", e))?;
    if ids.real != uid || ids.effective != uid || ids.saved != uid {
        return Err(not(format!(
            "uids are {}/{}/{}",
            ids.real, ids.effective, ids.saved
        )));
    }
    let gids = nix::unistd::getresgid().map_err(|e| query("getresgid", e))?;
    if gids.real != gid || gids.effective != gid || gids.saved != gid {
        return Err(not(format!(
            "gids are {}/{}/{}",
            gids.real, gids.effective, gids.saved
        )));
    }
    let groups = nix::unistd::getgroups().map_err(|e| query("getgroups", e))?;
    if !uid.is_root() && groups.iter().any(|g| g.as_raw() == 0) {
        return Err(not("still in group root".into()));
    }
    Ok(Dropped {
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        groups: groups.iter().map(|g| g.as_raw()).collect(),
    })
}

/// Names of the supplementary groups the daemon needs for its devices that `user` is not
/// a member of (for a clear warning before opening /dev/spidev*, /dev/gpiochip*, ttys).
pub fn missing_device_groups(user: &str, wanted: &[&str]) -> Vec<String> {
    wanted
        .iter()
        .filter(|g| match Group::from_name(g) {
            Ok(Some(grp)) => !grp.mem.iter().any(|m| m == user),
            _ => true,
        })
        .map(|g| (*g).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert_eq!(decide(1000, None, false), Decision::KeepCurrent);
        assert_eq!(decide(1000, Some("gatewayd"), false), Decision::KeepCurrent);
        assert_eq!(
            decide(0, Some("gatewayd"), false),
            Decision::DropTo("gatewayd".into())
        );
        assert_eq!(
            decide(0, Some("gatewayd"), true),
            Decision::DropTo("gatewayd".into())
        );
        assert_eq!(decide(0, None, true), Decision::StayRoot);
        assert_eq!(decide(0, Some("root"), true), Decision::StayRoot);
        assert_eq!(decide(0, Some("  "), true), Decision::StayRoot);
        for user in [None, Some("root"), Some("")] {
            match decide(0, user, false) {
                Decision::Refuse(msg) => {
                    assert!(msg.contains("allow_root"), "{msg}");
                    assert!(msg.contains("user ="), "{msg}");
                }
                d => panic!("{user:?}: {d:?}"),
            }
        }
    }

    #[test]
    fn an_unknown_user_is_a_clear_error_and_nothing_changes() {
        let before = nix::unistd::geteuid();
        let e = drop_to("no-such-user-gatewayd-test").unwrap_err();
        assert!(matches!(e, PrivilegeError::NoSuchUser(_)), "{e}");
        assert!(e.to_string().contains("no-such-user-gatewayd-test"));
        assert_eq!(nix::unistd::geteuid(), before);
    }

    #[test]
    fn group_check_names_missing_groups() {
        let missing = missing_device_groups("nobody", &["no-such-group-gatewayd-test"]);
        assert_eq!(missing, vec!["no-such-group-gatewayd-test".to_owned()]);
    }

    const CHILD: &str = "GATEWAYD_PRIVILEGES_TEST_CHILD";

    /// The syscalls, in a child process (they are irreversible): as root, drop to
    /// `nobody` and check that root cannot come back and root-only files are closed;
    /// not as root, the drop must fail with a syscall error and leave the ids alone.
    #[test]
    fn drop_to_nobody_in_a_child_process() {
        if std::env::var_os(CHILD).is_some() {
            let was_root = nix::unistd::geteuid().is_root();
            match drop_to("nobody") {
                Ok(d) => {
                    assert!(was_root);
                    assert_eq!(d.uid, 65534);
                    assert_eq!(nix::unistd::geteuid().as_raw(), 65534);
                    assert!(nix::unistd::setuid(Uid::from_raw(0)).is_err());
                    assert!(nix::unistd::seteuid(Uid::from_raw(0)).is_err());
                    assert!(nix::unistd::setgid(Gid::from_raw(0)).is_err());
                    assert!(!d.groups.contains(&0));
                    // /root is 0700 on Debian: no longer readable.
                    assert!(std::fs::read_dir("/root").is_err());
                    println!("CHILD-DROPPED uid={} gid={}", d.uid, d.gid);
                }
                Err(e) => {
                    assert!(!was_root, "root could not drop: {e}");
                    assert!(matches!(e, PrivilegeError::Syscall { .. }), "{e}");
                    assert!(!nix::unistd::geteuid().is_root());
                    println!("CHILD-REFUSED {e}");
                }
            }
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "service::privileges::tests::drop_to_nobody_in_a_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if nix::unistd::geteuid().is_root() {
            assert!(stdout.contains("CHILD-DROPPED uid=65534"), "{stdout}");
        } else {
            assert!(stdout.contains("CHILD-REFUSED"), "{stdout}");
        }
    }
}
