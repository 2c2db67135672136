//! Allocate's work for one device ID: (re)create its macvtap on the lower device in
//! the plugin's (host) namespace and find the `/dev/tapN` the container gets.

use std::path::PathBuf;

use cni_kit::naming::{device_plugin_mark, hashed_link_name};
use cni_kit::netns::{LinkFacts, errno, link_by_name};
use cni_kit::tapdev::{self, TapDevError};
use rtnetlink::packet_route::link::MacVtapMode;
use rtnetlink::{Handle, LinkMacVtap, LinkUnspec};

use crate::config::{Mode, ResourceConfig};

#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    #[error(
        "failed to allocate device {id}: it is not a device of resource {resource} (expected {resource}Mvp0 to {resource}Mvp{last})"
    )]
    UnknownDevice {
        id: String,
        resource: String,
        last: u32,
    },
    #[error(
        "failed to allocate device {id}: lower device {lower} does not exist on this node; fix lowerDevice in the config or bring the link back"
    )]
    LowerMissing { id: String, lower: String },
    #[error("failed to {action} for device {id}: {source}")]
    Netlink {
        id: String,
        action: String,
        source: rtnetlink::Error,
    },
    #[error("failed to allocate device {id}: macvtap {link} vanished right after its creation")]
    Vanished { id: String, link: String },
    #[error("failed to allocate device {id}: {source}")]
    TapNode { id: String, source: TapDevError },
}

/// How macvtaps get their ifindex, and so their `/dev/tap<ifindex>` name.
///
/// devtmpfs is shared by every network namespace but ifindexes are not: two
/// namespaces (two netns-cluster nodes, two parallel tests) both create `tap4`, and
/// `/dev/tap4` then opens the first one's macvtap, and vanishes when it is deleted.
/// In the machine's own namespace we keep the kernel's numbering, as upstream's plugin
/// on a real node does (a drop-in numbers its taps as the node's tools expect); in any
/// other namespace we pick a high index whose `/dev/tapN` is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapIndex {
    Kernel,
    /// Pick indexes from a hash of (this namespace, device ID, attempt).
    Unique {
        namespace: u64,
    },
}

impl TapIndex {
    /// `Kernel` in the machine's initial network namespace (a real node's, which a
    /// hostNetwork DaemonSet shares), `Unique` in any other (a kind node, a netns
    /// node, a pod): their ifindexes collide with their neighbours' on the one
    /// devtmpfs.
    pub fn for_current_namespace() -> TapIndex {
        if in_initial_namespace() {
            TapIndex::Kernel
        } else {
            TapIndex::Unique {
                namespace: own_namespace_id(),
            }
        }
    }

    fn candidate(self, id: &str, attempt: u32) -> Option<u32> {
        match self {
            TapIndex::Kernel => None,
            TapIndex::Unique { namespace } => {
                let key = format!("{namespace}/{id}/{attempt}");
                let hash = xxhash_rust::xxh64::xxh64(key.as_bytes(), 0);
                Some(UNIQUE_INDEX_BASE + (hash % UNIQUE_INDEX_SPAN) as u32)
            }
        }
    }
}

/// Sysctls the kernel registers for the initial network namespace only (other
/// namespaces do not have them in `/proc/sys`, which shows the reader's namespace).
/// Several, as a kernel may make one per-namespace (`rmem_max` became so in 6.x).
/// Neither PID 1's namespace (unreadable in some sandboxes, the node container's
/// own in kind) nor the kubelet's (a kind node's) tells a real node from a nested one.
const INITIAL_NAMESPACE_ONLY: [&str; 3] = [
    "/proc/sys/net/core/netdev_max_backlog",
    "/proc/sys/net/core/dev_weight",
    "/proc/sys/net/core/fb_tunnels_only_for_init_net",
];

/// Whether the caller runs in the machine's initial network namespace.
pub fn in_initial_namespace() -> bool {
    INITIAL_NAMESPACE_ONLY
        .iter()
        .any(|p| std::path::Path::new(p).exists())
}

const UNIQUE_INDEX_BASE: u32 = 1 << 20;
const UNIQUE_INDEX_SPAN: u64 = (1 << 30) - (1 << 20);
const UNIQUE_INDEX_ATTEMPTS: u32 = 16;

/// A macvtap made for a device ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tap {
    pub link_name: String,
    pub index: u32,
    /// `/dev/tap<index>`, the character device qemu opens.
    pub dev_path: PathBuf,
}

/// Checks that `id` is `<name>Mvp<i>` with `i` below the capacity.
pub fn check_device_id(resource: &ResourceConfig, id: &str) -> Result<(), AllocateError> {
    let ordinal = id
        .strip_prefix(resource.name.as_str())
        .and_then(|rest| rest.strip_prefix("Mvp"))
        .filter(|n| !n.is_empty() && (n == &"0" || !n.starts_with('0')))
        .and_then(|n| n.parse::<u32>().ok());
    match ordinal {
        Some(i) if i < resource.capacity => Ok(()),
        _ => Err(AllocateError::UnknownDevice {
            id: id.to_string(),
            resource: resource.name.clone(),
            last: resource.capacity - 1,
        }),
    }
}

/// The device IDs of a resource, in order.
pub fn device_ids(resource: &ResourceConfig) -> Vec<String> {
    (0..resource.capacity)
        .map(|i| format!("{}Mvp{i}", resource.name))
        .collect()
}

/// Replaces the macvtap of `id` by a fresh one: any old link of that name is deleted
/// first (a device ID re-allocated after a pod died must not inherit its state).
pub async fn create_tap(
    handle: &Handle,
    resource: &ResourceConfig,
    id: &str,
    indexes: TapIndex,
) -> Result<Tap, AllocateError> {
    check_device_id(resource, id)?;
    let link_name = hashed_link_name(id);
    let netlink = |action: String| {
        let id = id.to_string();
        move |source| AllocateError::Netlink { id, action, source }
    };

    let lower = link_by_name(handle, &resource.lower_device)
        .await
        .map_err(netlink(format!(
            "look up lower device {}",
            resource.lower_device
        )))?
        .ok_or_else(|| AllocateError::LowerMissing {
            id: id.to_string(),
            lower: resource.lower_device.clone(),
        })?;

    if let Some(old) = link_by_name(handle, &link_name)
        .await
        .map_err(netlink(format!("look up old macvtap {link_name}")))?
    {
        match handle.link().del(old.index).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(nix::libc::ENODEV) => {}
            Err(e) => return Err(netlink(format!("delete old macvtap {link_name}"))(e)),
        }
    }

    let mut indexes = indexes;
    let mut attempt = 0;
    let mut foreign_nodes = 0;
    loop {
        let created = add_link(
            handle,
            resource,
            id,
            &link_name,
            &lower,
            indexes,
            &mut attempt,
        )
        .await?;
        // The mark that lets the CNI tell our links from any other macvtap. The kernel
        // ignores IFLA_IFALIAS when creating a link, hence a second message.
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(created)
                    .alias(device_plugin_mark(id))
                    .build(),
            )
            .execute()
            .await
            .map_err(netlink(format!(
                "mark macvtap {link_name} with its deviceID"
            )))?;

        let name = link_name.clone();
        let verified =
            tokio::task::spawn_blocking(move || tapdev::verified_node(None, &name, created))
                .await
                .unwrap_or_else(|e| {
                    Err(TapDevError::Sysfs {
                        link: link_name.clone(),
                        index: created,
                        source: std::io::Error::other(e.to_string()),
                    })
                });
        let node = match verified {
            Ok(node) => node,
            Err(e) => {
                // Never hand out a link whose /dev/tapN is not its own.
                let _ = handle.link().del(created).execute().await;
                if matches!(e, TapDevError::Foreign { .. }) && foreign_nodes < FOREIGN_NODE_RETRIES
                {
                    // Another namespace's macvtap holds the path of the index the
                    // kernel gave us: its owner predicted our numbering. Continue
                    // with indexes it cannot predict, whose node is free.
                    tracing::warn!(device = id, "{e}; trying another ifindex");
                    foreign_nodes += 1;
                    if indexes == TapIndex::Kernel {
                        indexes = TapIndex::Unique {
                            namespace: own_namespace_id(),
                        };
                        attempt = 0;
                    }
                    continue;
                }
                return Err(AllocateError::TapNode {
                    id: id.to_string(),
                    source: e,
                });
            }
        };
        if resource.owner.is_some() || resource.group.is_some() {
            tapdev::chown_fd(&node, created, resource.owner, resource.group).map_err(|source| {
                AllocateError::TapNode {
                    id: id.to_string(),
                    source,
                }
            })?;
        }
        return Ok(Tap {
            link_name,
            index: created,
            dev_path: tapdev::node_path(created),
        });
    }
}

/// How often a fresh link is tried after the one before found its `/dev/tapN` held by
/// another namespace's macvtap.
const FOREIGN_NODE_RETRIES: u32 = 3;

/// A per-boot-unique number for the caller's network namespace (its inode).
fn own_namespace_id() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .unwrap_or_else(|_| u64::from(std::process::id()))
}

/// Creates the macvtap `link_name` on `lower` at an index from `indexes` (skipping
/// candidates whose `/dev/tapN` exists or whose index is taken) and returns its
/// ifindex.
async fn add_link(
    handle: &Handle,
    resource: &ResourceConfig,
    id: &str,
    link_name: &str,
    lower: &LinkFacts,
    indexes: TapIndex,
    attempt: &mut u32,
) -> Result<u32, AllocateError> {
    let netlink = |action: String| {
        let id = id.to_string();
        move |source| AllocateError::Netlink { id, action, source }
    };
    loop {
        // After too many taken candidates, let the kernel choose.
        let index = if *attempt < UNIQUE_INDEX_ATTEMPTS {
            indexes.candidate(id, *attempt)
        } else {
            None
        };
        if let Some(index) = index
            && tapdev::node_path(index).exists()
        {
            *attempt += 1;
            continue;
        }
        let mut message = LinkMacVtap::new(link_name, lower.index, kernel_mode(resource.mode))
            .txqueuelen(lower.txqueuelen)
            .up();
        if let Some(index) = index {
            message = message.index(index);
        }
        match handle.link().add(message.build()).execute().await {
            Ok(()) => break,
            // The index is taken in this namespace (EEXIST since Linux 6.6, EBUSY
            // before): try the next candidate.
            Err(e)
                if index.is_some()
                    && matches!(errno(&e), Some(nix::libc::EEXIST | nix::libc::EBUSY)) =>
            {
                *attempt += 1;
            }
            Err(e) => {
                return Err(netlink(format!(
                    "create macvtap {link_name} on {}",
                    resource.lower_device
                ))(e));
            }
        }
    }
    link_by_name(handle, link_name)
        .await
        .map_err(netlink(format!("look up new macvtap {link_name}")))?
        .map(|l| l.index)
        .ok_or_else(|| AllocateError::Vanished {
            id: id.to_string(),
            link: link_name.to_string(),
        })
}

fn kernel_mode(mode: Mode) -> MacVtapMode {
    match mode {
        Mode::Bridge => MacVtapMode::Bridge,
        Mode::Private => MacVtapMode::Private,
        Mode::Vepa => MacVtapMode::Vepa,
        Mode::Passthru => MacVtapMode::Passthrough,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_CAPACITY, ResourceConfig};

    #[test]
    fn device_ids_are_checked_against_name_and_capacity() {
        let mut r = ResourceConfig::discovered("dataplane");
        r.capacity = 3;
        assert_eq!(
            device_ids(&r),
            vec!["dataplaneMvp0", "dataplaneMvp1", "dataplaneMvp2"]
        );
        for id in device_ids(&r) {
            check_device_id(&r, &id).unwrap();
        }
        for bad in [
            "dataplaneMvp3",
            "dataplaneMvp",
            "dataplaneMvp01",
            "otherMvp0",
            "dataplaneMvp-1",
            "dataplane0",
        ] {
            let err = check_device_id(&r, bad).unwrap_err().to_string();
            assert!(
                err.contains("dataplaneMvp0 to dataplaneMvp2"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            device_ids(&ResourceConfig::discovered("x")).len(),
            DEFAULT_CAPACITY as usize
        );
    }
}
