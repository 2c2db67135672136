//! `/dev/tap<ifindex>`, checked against the macvtap it is meant to open.
//!
//! devtmpfs is one for the whole node and names a macvtap's character device after
//! the link's ifindex, but ifindexes are per network namespace. A pod with NET_ADMIN
//! that creates macvtaps in its own namespace at the indexes the node hands out next
//! owns `/dev/tapN` before the node's macvtap of that index exists; devtmpfs then
//! keeps the pod's node, and whoever opens `/dev/tapN` gets the pod's macvtap. The
//! only reliable tie between the path and the link is the device number: the kernel
//! publishes each macvtap's in sysfs (`/sys/class/net/<link>/macvtap/tap<N>/dev`)
//! in the link's own namespace, and the node's `st_rdev` must equal it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::stat::{Mode, SFlag, fstat, major, minor};

use crate::netns::NetNs;

/// devtmpfs creates and removes nodes asynchronously (normally within microseconds).
pub const NODE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TapDevError {
    #[error(
        "failed to read the device number of macvtap {link} (ifindex {index}) from sysfs: {source}"
    )]
    Sysfs {
        link: String,
        index: u32,
        source: io::Error,
    },
    #[error(
        "{path} is not the device of macvtap {link}: it is {found}, the macvtap's is {expected} (another network namespace's macvtap of the same ifindex holds that path)"
    )]
    Foreign {
        path: PathBuf,
        link: String,
        found: String,
        expected: String,
    },
    #[error("{path} did not appear within {NODE_WAIT:?} (is devtmpfs mounted on /dev?)")]
    Missing { path: PathBuf },
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: nix::Error,
    },
}

/// A device number as `major:minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevNum {
    pub major: u64,
    pub minor: u64,
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "char {}:{}", self.major, self.minor)
    }
}

impl DevNum {
    /// Parses sysfs's `dev` file (`246:32\n`).
    pub fn parse(text: &str) -> Option<DevNum> {
        let (major, minor) = text.trim().split_once(':')?;
        Some(DevNum {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }

    fn of_rdev(rdev: u64) -> DevNum {
        DevNum {
            major: major(rdev),
            minor: minor(rdev),
        }
    }
}

/// `/dev/tap<index>`.
pub fn node_path(index: u32) -> PathBuf {
    PathBuf::from(format!("/dev/tap{index}"))
}

/// The device number the kernel gave macvtap `link` (ifindex `index`), read from
/// sysfs as mounted for `ns` (`None`: the caller's namespace).
///
/// sysfs shows the links of the namespace it was mounted in, which need not be the
/// caller's (a process that only `setns`-ed keeps the old mount), so unless the
/// caller's own `/sys` shows the link, a thread mounts a fresh sysfs for `ns` in a
/// mount namespace of its own and reads it there.
pub fn link_devnum(ns: Option<&NetNs>, link: &str, index: u32) -> Result<DevNum, TapDevError> {
    let rel = format!("class/net/{link}/macvtap/tap{index}/dev");
    let sysfs_err = |source| TapDevError::Sysfs {
        link: link.to_string(),
        index,
        source,
    };
    let parse = |text: String| {
        DevNum::parse(&text).ok_or_else(|| {
            sysfs_err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{rel} holds {text:?}"),
            ))
        })
    };
    if ns.is_none() {
        match std::fs::read_to_string(Path::new("/sys").join(&rel)) {
            Ok(text) if own_sysfs_shows(link, index) => return parse(text),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(sysfs_err(e)),
        }
    }
    let current;
    let ns = match ns {
        Some(ns) => ns,
        None => {
            current = NetNs::current().map_err(sysfs_err)?;
            &current
        }
    };
    let text = std::thread::scope(|s| {
        s.spawn(|| read_private_sysfs(ns, &rel))
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("sysfs reader thread panicked")))
    })
    .map_err(sysfs_err)?;
    parse(text)
}

/// Whether the caller's `/sys` may be trusted to show its own namespace: the caller
/// is in the namespace of its PID 1 (a host process, a hostNetwork container: the
/// runtime mounted `/sys` for that namespace), and the link is there under `index`.
/// A process that only `setns`-ed elsewhere reads a private mount instead.
fn own_sysfs_shows(link: &str, index: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ns = |p: &str| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let in_pid1s =
        ns("/proc/thread-self/ns/net").is_some_and(|ours| ns("/proc/1/ns/net") == Some(ours));
    in_pid1s
        && std::fs::read_to_string(format!("/sys/class/net/{link}/ifindex"))
            .is_ok_and(|s| s.trim() == index.to_string())
}

/// On the current (scoped) thread: a private mount namespace, the thread in `ns`, a
/// fresh sysfs on `/sys`, and the file `rel` read from it. The thread's mount
/// namespace goes away with the thread.
fn read_private_sysfs(ns: &NetNs, rel: &str) -> io::Result<String> {
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS)?;
    // Nothing mounted here may propagate back to the node's mount namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )?;
    ns.enter_current_thread()?;
    // The kernel refuses (EBUSY) to mount a sysfs on a /sys showing that very one
    // (a caller in the machine's namespace): take the old mount away first (in this
    // thread's mount namespace only; `/sys` not being a mount point is fine).
    let _ = nix::mount::umount2("/sys", nix::mount::MntFlags::MNT_DETACH);
    mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )?;
    std::fs::read_to_string(Path::new("/sys").join(rel))
}

/// `/dev/tap<index>` opened as a path (no open of the device itself, no symlink
/// followed) once its device number is `expected`; waits up to [`NODE_WAIT`] for
/// devtmpfs to create (or replace a stale) node.
pub fn open_verified(link: &str, index: u32, expected: DevNum) -> Result<OwnedFd, TapDevError> {
    let path = node_path(index);
    let deadline = Instant::now() + NODE_WAIT;
    let mut found = None;
    loop {
        match open(
            &path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let st = fstat(fd.as_fd()).map_err(|source| TapDevError::Io {
                    action: "stat",
                    path: path.clone(),
                    source,
                })?;
                let is_char =
                    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
                let number = DevNum::of_rdev(st.st_rdev);
                if is_char && number == expected {
                    return Ok(fd);
                }
                found = Some(if is_char {
                    number.to_string()
                } else {
                    "not a character device".to_string()
                });
            }
            Err(nix::Error::ENOENT) => {}
            Err(source) => {
                return Err(TapDevError::Io {
                    action: "open",
                    path,
                    source,
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(match found {
                Some(found) => TapDevError::Foreign {
                    path,
                    link: link.to_string(),
                    found,
                    expected: expected.to_string(),
                },
                None => TapDevError::Missing { path },
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The link's device number from sysfs, then its `/dev/tap<index>` once it is that
/// device: the node a VM may be given.
pub fn verified_node(ns: Option<&NetNs>, link: &str, index: u32) -> Result<OwnedFd, TapDevError> {
    let expected = link_devnum(ns, link, index)?;
    open_verified(link, index, expected)
}

/// Changes owner and group of the node behind `fd` (from [`open_verified`]): the
/// very inode that was checked, not whatever the path names by then.
pub fn chown_fd(
    fd: &OwnedFd,
    index: u32,
    owner: Option<u32>,
    group: Option<u32>,
) -> Result<(), TapDevError> {
    nix::unistd::fchownat(
        fd,
        "",
        owner.map(nix::unistd::Uid::from_raw),
        group.map(nix::unistd::Gid::from_raw),
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .map_err(|source| TapDevError::Io {
        action: "chown",
        path: node_path(index),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_parse_as_sysfs_writes_them() {
        assert_eq!(
            DevNum::parse("246:32\n"),
            Some(DevNum {
                major: 246,
                minor: 32
            })
        );
        assert_eq!(DevNum::parse("246"), None);
        assert_eq!(DevNum::parse("a:b"), None);
        assert_eq!(
            DevNum {
                major: 246,
                minor: 3
            }
            .to_string(),
            "char 246:3"
        );
    }
}
