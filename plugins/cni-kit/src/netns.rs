//! Network namespaces and netlink handles opened inside them.
//!
//! A netlink socket belongs to the namespace it was created in, so we create it on a
//! short-lived OS thread that has `setns`-ed into the target and hand the socket back.
//! No tokio worker thread ever changes namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use nix::sched::{CloneFlags, setns};
use rtnetlink::Handle;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};

/// An open network namespace file (`/run/netns/x`, `/proc/<pid>/ns/net`, ...).
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens `path` without blocking (a FIFO or a device must not hang the caller)
    /// and checks that it is a network namespace: anything else is `InvalidInput`.
    pub fn open(path: impl AsRef<Path>) -> io::Result<NetNs> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = path.as_ref().to_path_buf();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(&path)?;
        // NS_GET_NSTYPE (_IO(0xb7, 0x3)) answers only for namespace files.
        const NS_GET_NSTYPE: nix::libc::Ioctl = 0xb703;
        // SAFETY: an argument-less ioctl on an fd we own.
        let kind = unsafe { nix::libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
        if kind != nix::libc::CLONE_NEWNET {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a network namespace", path.display()),
            ));
        }
        Ok(NetNs { file, path })
    }

    /// The namespace of the calling thread.
    pub fn current() -> io::Result<NetNs> {
        NetNs::open("/proc/thread-self/ns/net")
    }

    /// Another handle on the same namespace (a duplicated descriptor).
    pub fn try_clone(&self) -> io::Result<NetNs> {
        Ok(NetNs {
            file: self.file.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Whether this is the namespace the calling process started in (`/proc/self/
    /// ns/net`): for a plugin, the node's own. Compared by device and inode.
    pub fn is_callers_own(&self) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let ours = std::fs::metadata("/proc/self/ns/net")?;
        let this = self.file.metadata()?;
        Ok(ours.dev() == this.dev() && ours.ino() == this.ino())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Moves the calling OS thread into this namespace. Only for threads that are
    /// not tokio workers (see the module comment).
    pub fn enter_current_thread(&self) -> io::Result<()> {
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
    }
}

/// Opens an rtnetlink connection in `ns` (or in the caller's namespace for `None`)
/// and spawns its driver on the current tokio runtime.
pub async fn netlink_in(ns: Option<&NetNs>) -> io::Result<Handle> {
    let (conn, handle, _) = match ns {
        None => rtnetlink::new_connection()?,
        Some(ns) => {
            let runtime = tokio::runtime::Handle::current();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let _guard = runtime.enter();
                    ns.enter_current_thread()?;
                    rtnetlink::new_connection()
                })
                .join()
                .expect("netlink thread panicked")
            })?
        }
    };
    tokio::spawn(conn);
    Ok(handle)
}

/// The errno of a netlink error, if it is one.
pub fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

pub fn to_io(err: rtnetlink::Error) -> io::Error {
    match &err {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        _ => io::Error::other(err.to_string()),
    }
}

/// The facts about a link that plugins check and report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFacts {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub up: bool,
    pub promisc: bool,
    pub txqueuelen: u32,
    /// Index of the lower device (macvlan/macvtap/vlan parent), if any.
    pub parent: Option<u32>,
    /// `ifalias` (`ip link set X alias …`), where a device plugin marks its links.
    pub alias: Option<String>,
}

impl LinkFacts {
    pub fn from_message(msg: &LinkMessage) -> LinkFacts {
        let mut facts = LinkFacts {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            mac: None,
            mtu: 0,
            up: msg.header.flags.contains(LinkFlags::Up),
            promisc: msg.header.flags.contains(LinkFlags::Promisc),
            txqueuelen: 0,
            parent: None,
            alias: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => facts.name = n.clone(),
                LinkAttribute::Address(a) => facts.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
                LinkAttribute::Mtu(m) => facts.mtu = *m,
                LinkAttribute::TxQueueLen(q) => facts.txqueuelen = *q,
                LinkAttribute::Link(p) => facts.parent = Some(*p),
                LinkAttribute::IfAlias(a) => facts.alias = Some(a.clone()),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            facts.kind = Some(kind_name(kind));
                        }
                    }
                }
                _ => {}
            }
        }
        facts
    }
}

fn kind_name(kind: &InfoKind) -> String {
    match kind {
        InfoKind::MacVtap => "macvtap".into(),
        InfoKind::MacVlan => "macvlan".into(),
        InfoKind::Veth => "veth".into(),
        InfoKind::Bridge => "bridge".into(),
        InfoKind::Bond => "bond".into(),
        InfoKind::Dummy => "dummy".into(),
        InfoKind::Vlan => "vlan".into(),
        InfoKind::Tun => "tun".into(),
        other => other.to_string(),
    }
}

/// Looks a link up by name; `Ok(None)` when it does not exist.
pub async fn link_by_name(
    handle: &Handle,
    name: &str,
) -> Result<Option<LinkFacts>, rtnetlink::Error> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(LinkFacts::from_message(&msg))),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc_enodev()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Looks a link up by index; `Ok(None)` when it does not exist.
pub async fn link_by_index(
    handle: &Handle,
    index: u32,
) -> Result<Option<LinkFacts>, rtnetlink::Error> {
    let mut links = handle.link().get().match_index(index).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(LinkFacts::from_message(&msg))),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc_enodev()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every link in the handle's namespace.
pub async fn all_links(handle: &Handle) -> Result<Vec<LinkFacts>, rtnetlink::Error> {
    handle
        .link()
        .get()
        .execute()
        .map_ok(|m| LinkFacts::from_message(&m))
        .try_collect()
        .await
}

const fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_network_namespaces_open() {
        NetNs::open("/proc/self/ns/net").expect("our own netns");
        let err = NetNs::open("/proc/self/ns/mnt").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = NetNs::open("/etc/hostname").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // A FIFO nobody writes to must not block the open.
        let dir = std::env::temp_dir().join(format!("cni-kit-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let start = std::time::Instant::now();
        let err = NetNs::open(&fifo).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
