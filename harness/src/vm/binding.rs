//! KubeVirt's network bindings, done inside the virt-launcher pod's netns after the
//! pod's networks are attached (as virt-handler/virt-launcher do):
//!
//! - **macvtap**: the pod's macvtap interface's `/dev/tap<ifindex>` is opened and
//!   handed to QEMU as an fd; the guest NIC takes the macvtap's MAC. The node is the
//!   one the device plugin's Allocate put in the launcher's container (a
//!   `DeviceSpec`), as KubeVirt opens it: never one of the harness's making.
//! - **bridge**: an in-pod bridge `k6t-<if>` joins the pod interface and a tap
//!   `tap-<if>`; the guest takes the pod interface's MAC and its IPAM addresses (the
//!   agent configures them where KubeVirt's DHCP server would hand them out).
//!   KubeVirt then gives the pod interface another MAC. A macvlan only receives
//!   frames for its own MAC, so on a macvlan that swap cuts the guest off; there the
//!   pod interface keeps the MAC and the bridge forgets it as a local address
//!   (`bridge fdb del`), so frames for it are forwarded to the tap.
//! - **masquerade**: bridge `k6t-eth0` 10.0.2.1/24 + tap for the guest (10.0.2.2),
//!   nftables in the pod netns DNATs what arrives on eth0 to the guest (all of it,
//!   ICMP included, as KubeVirt without `ports`; the migration port aside) and
//!   masquerades the guest's traffic out of eth0. After a migration the guest is
//!   reached through the target pod's address; its own address and MAC stay.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use super::qemu::{Backend, Nic};
use crate::contract::Cluster;
use crate::contract::PodView;
use crate::contract::probe::ProbeError;
use crate::contract::probe::{pod_link, pod_run};
use crate::lab::CommandError;
use crate::lab::enter::Enter;

/// The port the target QEMU listens on for the migration stream, in its pod (the
/// binding's DNAT leaves it alone).
pub const MIGRATION_PORT: u16 = 49152;

#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("the macvtap binding needs a macvtap; {ifname} in pod {pod} is {kind}")]
    NotMacvtap {
        ifname: String,
        pod: String,
        kind: String,
    },
    #[error("{ifname} in pod {pod} has no {field}")]
    MissingField {
        ifname: String,
        pod: String,
        field: &'static str,
    },
    #[error("unreadable device number {output:?} of macvtap {ifname} in pod {pod}")]
    DeviceNumber {
        output: String,
        ifname: String,
        pod: String,
    },
    #[error(
        "the device plugin handed pod {pod} no /dev/tap{ifindex} for macvtap {ifname} (ifindex {ifindex}): its Allocate's DeviceSpecs are {handed:?}; Allocate must return the macvtap's own /dev/tap<ifindex> as container_path"
    )]
    NoDeviceSpec {
        ifname: String,
        ifindex: u64,
        pod: String,
        handed: Vec<String>,
    },
    #[error(
        "failed to open {host_path}, the device plugin's DeviceSpec for macvtap {ifname} of pod {pod}: {source}"
    )]
    OpenTap {
        ifname: String,
        host_path: String,
        pod: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the device plugin's DeviceSpec {host_path} for macvtap {ifname} of pod {pod} opens device {opened}, not the macvtap's own {own} (another namespace's tap{ifindex}?): the device plugin must hand out a /dev/tapN that is the link's"
    )]
    ForeignTap {
        ifname: String,
        host_path: String,
        pod: String,
        ifindex: u64,
        opened: String,
        own: String,
    },
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("binding {0} is not emulated (macvtap, bridge, masquerade)")]
    Unsupported(String),
    #[error("in {netns}: {source}")]
    InNode {
        netns: String,
        #[source]
        source: CommandError,
    },
}

impl BindingError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> BindingError {
        BindingError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}

/// `field` of link `ifname` of `pod`, or the error naming what is missing.
fn missing(ifname: &str, pod: &PodView, field: &'static str) -> BindingError {
    BindingError::MissingField {
        ifname: ifname.into(),
        pod: pod.name.clone(),
        field,
    }
}

pub const MASQ_GATEWAY: &str = "10.0.2.1";
pub const MASQ_GUEST: &str = "10.0.2.2";
/// The masquerade gateway's MAC, the same in every launcher pod.
pub const MASQ_GATEWAY_MAC: &str = "02:00:00:00:00:00";

/// What the binding prepared for one guest NIC.
#[derive(Debug)]
pub struct Bound {
    pub(crate) nic: Nic,
    /// Addresses (CIDR) the guest takes on this NIC.
    pub(crate) addresses: Vec<String>,
    pub(crate) gateway: Option<String>,
    /// The MAC the pod interface has after binding.
    pub(crate) pod_mac: String,
}

/// A device node the kubelet put in the launcher pod's container: one `DeviceSpec`
/// of a device plugin's Allocate answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDevice {
    pub(crate) container_path: String,
    pub(crate) host_path: String,
}

/// IPv4 addresses on an interface of the pod.
pub use crate::contract::probe::pod_addresses;

/// A locally administered MAC derived from `seed`.
pub fn generated_mac(seed: &str) -> String {
    let h = xxhash_rust::xxh64::xxh64(seed.as_bytes(), 3);
    let b = h.to_be_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

/// macvtap binding: the pod's macvtap as a tap fd, opened through the `DeviceSpec`
/// among `devices` (the launcher container's) that is its `/dev/tap<ifindex>`.
pub async fn macvtap(
    cluster: &impl Cluster,
    pod: &PodView,
    ifname: &str,
    devices: &[PodDevice],
) -> Result<Bound, BindingError> {
    let link = pod_link(cluster, pod, ifname).await?;
    if link.kind != "macvtap" {
        return Err(BindingError::NotMacvtap {
            ifname: ifname.into(),
            pod: pod.name.clone(),
            kind: format!("{:?}", link.kind),
        });
    }
    let ifindex = u64::from(link.index);
    let mac = link.mac.ok_or_else(|| missing(ifname, pod, "MAC"))?;
    let fd = open_macvtap(cluster, pod, ifname, ifindex, devices).await?;
    Ok(Bound {
        nic: Nic {
            backend: Backend::TapFd(fd),
            mac: mac.clone(),
        },
        addresses: Vec::new(),
        gateway: None,
        pod_mac: mac,
    })
}

/// Opens the macvtap's character device as KubeVirt does: `/dev/tap<ifindex>` in
/// the launcher's container, which exists there only because the device plugin's
/// Allocate listed it. The node opened must be the macvtap's own: devtmpfs is shared
/// by all namespaces and ifindexes are per namespace, so a plugin that lets the
/// kernel number its macvtaps may hand out another node's `/dev/tapN`. Its device
/// number is checked against the pod's own sysfs (mounted in a private mount
/// namespace inside the pod netns).
async fn open_macvtap(
    cluster: &impl Cluster,
    pod: &PodView,
    ifname: &str,
    ifindex: u64,
    devices: &[PodDevice],
) -> Result<OwnedFd, BindingError> {
    let wanted = format!("/dev/tap{ifindex}");
    let spec = devices
        .iter()
        .find(|d| d.container_path == wanted)
        .ok_or_else(|| BindingError::NoDeviceSpec {
            ifname: ifname.into(),
            ifindex,
            pod: pod.name.clone(),
            handed: devices
                .iter()
                .map(|d| format!("{} <- {}", d.container_path, d.host_path))
                .collect(),
        })?;
    let script = format!(
        "mount -t sysfs sysfs /sys && cat /sys/class/net/{ifname}/macvtap/tap{ifindex}/dev"
    );
    let out = pod_run(cluster, pod, &["unshare", "-m", "sh", "-c", &script]).await?;
    let own = out
        .trim()
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .ok_or_else(|| BindingError::DeviceNumber {
            output: out.clone(),
            ifname: ifname.into(),
            pod: pod.name.clone(),
        })?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&spec.host_path)
        .map_err(|source| BindingError::OpenTap {
            ifname: ifname.into(),
            host_path: spec.host_path.clone(),
            pod: pod.name.clone(),
            source,
        })?;
    let rdev = std::os::unix::fs::MetadataExt::rdev(&file.metadata().map_err(|source| {
        BindingError::OpenTap {
            ifname: ifname.into(),
            host_path: spec.host_path.clone(),
            pod: pod.name.clone(),
            source,
        }
    })?);
    let opened = (
        nix::sys::stat::major(rdev) as u64,
        nix::sys::stat::minor(rdev) as u64,
    );
    if opened != own {
        return Err(BindingError::ForeignTap {
            ifname: ifname.into(),
            host_path: spec.host_path.clone(),
            pod: pod.name.clone(),
            ifindex,
            opened: format!("{}:{}", opened.0, opened.1),
            own: format!("{}:{}", own.0, own.1),
        });
    }
    Ok(OwnedFd::from(file))
}

/// bridge binding on pod interface `ifname`.
pub async fn bridge(
    cluster: &impl Cluster,
    pod: &PodView,
    ifname: &str,
) -> Result<Bound, BindingError> {
    let link = pod_link(cluster, pod, ifname).await?;
    let mac = link.mac.ok_or_else(|| missing(ifname, pod, "MAC"))?;
    let kind = link.kind;
    let addresses = pod_addresses(cluster, pod, ifname).await?;
    let addresses: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    let br = format!("k6t-{ifname}");
    let tap = format!("tap-{ifname}");
    let br_mac = generated_mac(&format!("{}/{br}", pod.uid));
    let (br, tap, br_mac) = (br.as_str(), tap.as_str(), br_mac.as_str());
    for argv in [
        &["ip", "addr", "flush", "dev", ifname][..],
        &["ip", "link", "add", br, "type", "bridge"],
        // A fixed address, or the bridge takes its lowest port's (the guest's) MAC.
        &["ip", "link", "set", br, "address", br_mac],
        &["ip", "tuntap", "add", "dev", tap, "mode", "tap"],
        &["ip", "link", "set", ifname, "master", br],
        &["ip", "link", "set", tap, "master", br],
        &["ip", "link", "set", br, "up"],
        &["ip", "link", "set", tap, "up"],
    ] {
        pod_run(cluster, pod, argv).await?;
    }
    let pod_mac = if kind == "macvlan" {
        // Keep the MAC (macvlan filters on it); the bridge must not treat it as local.
        pod_run(
            cluster,
            pod,
            &["bridge", "fdb", "del", &mac, "dev", ifname, "master"],
        )
        .await?;
        mac.clone()
    } else {
        let new = generated_mac(&format!("{}/{ifname}", pod.uid));
        pod_run(cluster, pod, &["ip", "link", "set", ifname, "down"]).await?;
        pod_run(
            cluster,
            pod,
            &["ip", "link", "set", ifname, "address", &new],
        )
        .await?;
        pod_run(cluster, pod, &["ip", "link", "set", ifname, "up"]).await?;
        new
    };
    Ok(Bound {
        nic: Nic {
            backend: Backend::TapName(tap.to_string()),
            mac,
        },
        addresses,
        gateway: None,
        pod_mac,
    })
}

/// masquerade binding on the pod network (eth0).
pub async fn masquerade(
    cluster: &impl Cluster,
    pod: &PodView,
    work_dir: &Path,
) -> Result<Bound, BindingError> {
    let eth0 = pod_link(cluster, pod, "eth0").await?;
    let pod_mac = eth0.mac.unwrap_or_default();
    for argv in [
        &["ip", "link", "add", "k6t-eth0", "type", "bridge"][..],
        // One MAC for the guest's gateway in every launcher pod (KubeVirt's too):
        // after a migration the guest's neighbour entry for 10.0.2.1 still holds.
        &["ip", "link", "set", "k6t-eth0", "address", MASQ_GATEWAY_MAC],
        &[
            "ip",
            "addr",
            "add",
            &format!("{MASQ_GATEWAY}/24"),
            "dev",
            "k6t-eth0",
        ],
        &["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"],
        &["ip", "link", "set", "tap0", "master", "k6t-eth0"],
        &["ip", "link", "set", "k6t-eth0", "up"],
        &["ip", "link", "set", "tap0", "up"],
        &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
    ] {
        pod_run(cluster, pod, argv).await?;
    }
    // Everything arriving on eth0 goes to the guest (KubeVirt's rules without
    // `ports`), except a migration stream to the target QEMU: KubeVirt's comes in
    // through virt-handler's proxy over a unix socket, secnet's on eth0 itself.
    let migration = MIGRATION_PORT;
    let rules = format!(
        "table ip secnet_masquerade {{\n\
         \tchain prerouting {{ type nat hook prerouting priority dstnat; iifname \"eth0\" tcp dport {migration} return; iifname \"eth0\" dnat to {MASQ_GUEST}; }}\n\
         \tchain postrouting {{ type nat hook postrouting priority srcnat; ip saddr {MASQ_GUEST} oifname \"eth0\" masquerade; }}\n\
         }}\n"
    );
    std::fs::create_dir_all(work_dir).map_err(|e| BindingError::io("create", work_dir, e))?;
    let file = work_dir.join(format!("masquerade-{}.nft", pod.name));
    std::fs::write(&file, rules).map_err(|e| BindingError::io("write", &file, e))?;
    pod_run(cluster, pod, &["nft", "-f", &file.display().to_string()]).await?;
    Ok(Bound {
        nic: Nic {
            backend: Backend::TapName("tap0".into()),
            mac: generated_mac(&format!("{}/masquerade", pod.uid)),
        },
        addresses: vec![format!("{MASQ_GUEST}/24")],
        gateway: Some(MASQ_GATEWAY.into()),
        pod_mac,
    })
}

/// Lets a node route its pods' traffic to the fabric: forwarding on, and pod
/// addresses masqueraded out of the uplink (the node's cni0 subnet is not known to
/// the fabric).
pub async fn node_masquerade(
    ns_path: &Path,
    pod_subnet: &str,
    uplink: &str,
    work_dir: &Path,
) -> Result<(), BindingError> {
    let rules = format!(
        "table ip secnet_node_nat {{\n\
         \tchain postrouting {{ type nat hook postrouting priority srcnat; ip saddr {pod_subnet} oifname \"{uplink}\" masquerade; }}\n\
         }}\n"
    );
    let file = work_dir.join(format!(
        "node-nat-{}.nft",
        ns_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("node")
    ));
    std::fs::write(&file, rules).map_err(|e| BindingError::io("write", &file, e))?;
    ns_run(
        ns_path,
        &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
    )
    .await?;
    ns_run(ns_path, &["nft", "-f", &file.display().to_string()]).await?;
    Ok(())
}

pub async fn ns_run(ns_path: &Path, argv: &[&str]) -> Result<String, BindingError> {
    let enter = Enter::net(ns_path).map_err(|e| BindingError::io("open", ns_path, e))?;
    crate::lab::command::Cmd::new(argv[0])
        .args(&argv[1..])
        .enter(&enter)
        .timeout(Duration::from_secs(10))
        .run_async()
        .await
        .map_err(|source| BindingError::InNode {
            netns: ns_path.display().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_macs_are_local_unicast_and_stable() {
        let a = generated_mac("uid/net1");
        assert_eq!(a, generated_mac("uid/net1"));
        assert_ne!(a, generated_mac("uid/net2"));
        assert!(a.starts_with("02:") && a.len() == 17, "{a}");
    }
}
