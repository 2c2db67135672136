//! What the kernel still has to release after a run deleted a namespace.
//!
//! `ip netns del` only unmounts the namespace: the kernel frees it, its links and a
//! macvtap's `/dev/tap<ifindex>` later, from a workqueue (seconds on a busy
//! machine). A run is finished only when that has happened, so before deleting a
//! namespace the run records the device nodes of the macvtaps in it, and waits for
//! them (see `crate::clean::wait_gone`). `/dev/tapN` is named by ifindex on the one
//! host devtmpfs, so a run waits only for the nodes it recorded — by inode, so that
//! another run's new `/dev/tapN` of the same number is not taken for ours.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Device nodes being released: (owner prefix, path, devtmpfs inode).
static PENDING: Mutex<Vec<(String, PathBuf, u64)>> = Mutex::new(Vec::new());

/// `/dev/tap<ifindex>` of every macvtap in the named namespace (empty when it has
/// none or is gone).
pub fn tap_nodes_in(ns: &str) -> Vec<PathBuf> {
    let Ok(out) = super::run(
        "ip",
        &["-n", ns, "-j", "link", "show", "type", "macvtap"],
        Duration::from_secs(10),
    ) else {
        return Vec::new();
    };
    crate::probe::ip::links(&out)
        .unwrap_or_default()
        .iter()
        .map(|l| PathBuf::from(format!("/dev/tap{}", l.index)))
        .collect()
}

/// Records the macvtap device nodes of namespace `ns` as to be released (under the
/// namespace's name, which carries the run id); call it right before deleting `ns`.
pub fn record_namespace(ns: &str) {
    let owner = ns;
    let nodes = tap_nodes_in(ns);
    if nodes.is_empty() {
        return;
    }
    let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    for node in nodes {
        if let Some(ino) = inode(&node) {
            pending.push((owner.to_string(), node, ino));
        }
    }
}

/// The recorded device nodes of owners that `matches` that still exist; those gone
/// are forgotten.
pub(crate) fn pending(matches: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    pending.retain(|(_, path, ino)| inode(path) == Some(*ino));
    pending
        .iter()
        .filter(|(owner, _, _)| matches(owner))
        .map(|(_, path, _)| path.clone())
        .collect()
}

/// Waits up to `timeout` until the recorded device nodes of owners that `matches`
/// are gone; the error lists those still there.
pub fn wait(matches: impl Fn(&str) -> bool, timeout: Duration) -> Result<(), Vec<PathBuf>> {
    let deadline = std::time::Instant::now() + timeout;
    let mut nap = Duration::from_millis(5);
    loop {
        let left = pending(&matches);
        if left.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(left);
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(100));
    }
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}
