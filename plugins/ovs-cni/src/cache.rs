//! What ADD leaves for DEL: `/var/lib/cni/ovs-cni/cache/<container id>-<ifname>`
//! (upstream's path), holding the network configuration and the host-side port.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const CACHE_DIR: &str = "/var/lib/cni/ovs-cni/cache";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// The network configuration ADD ran with.
    pub netconf: Value,
    pub bridge: String,
    /// The host end of the veth, also the Port and Interface name.
    #[serde(rename = "hostIface")]
    pub host_iface: String,
    #[serde(rename = "contNetns")]
    pub netns: String,
}

/// The entry's file. The ids were checked against the runtime's character set
/// (`cni_kit::invocation`), so the name never leaves [`CACHE_DIR`]; checked again
/// here because a wrong one would name any file on the node.
pub fn path(container_id: &str, ifname: &str) -> PathBuf {
    let name = format!("{container_id}-{ifname}");
    assert!(
        !name.contains('/') && !container_id.starts_with('.'),
        "cache entry name {name:?} must be checked before use"
    );
    Path::new(CACHE_DIR).join(name)
}

/// Writes atomically (a temporary file renamed into place).
pub fn write(container_id: &str, ifname: &str, entry: &Entry) -> std::io::Result<()> {
    let target = path(container_id, ifname);
    std::fs::create_dir_all(CACHE_DIR)?;
    let tmp = target.with_extension("tmp");
    let written = std::fs::write(&tmp, serde_json::to_vec(entry).expect("cache serializes"))
        .and_then(|()| std::fs::rename(&tmp, &target));
    if written.is_err() {
        // A full disk must not leave half an entry behind.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// `Ok(None)` when there is no entry (never written, or already removed) or it is
/// unreadable garbage (DEL must still succeed).
pub fn read(container_id: &str, ifname: &str) -> std::io::Result<Option<Entry>> {
    match std::fs::read(path(container_id, ifname)) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn remove(container_id: &str, ifname: &str) -> std::io::Result<()> {
    match std::fs::remove_file(path(container_id, ifname)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
