//! A node as the CNI plugins see it: a namespace with an uplink (the default
//! topology's, a veth into a fabric namespace), plus pod namespaces, and `ip -j`
//! views to cross-check what the plugins report against what the kernel says.

use std::sync::atomic::{AtomicU32, Ordering};

use cni_kit::netns::NetNs;

use super::{CommandError, Lab, Ns};
use crate::probe::ip;
pub use crate::probe::ip::{LinkFacts, tap_owner};

/// The uplink of a node made without a topology file (the single-node labs of the
/// plugin tests and benches): the seed's `ens33`, as the default topology
/// (clusters/netns-2node.yaml) names every node's; `cluster::topology` checks they
/// agree.
pub const DEFAULT_UPLINK: &str = "ens33";

pub struct NodeLab {
    pub lab: Lab,
    pub node: Ns,
    pub node_ns: NetNs,
    pub(crate) fabric: Ns,
    /// The node's uplink: the lower device of its macvtaps and macvlans.
    pub(crate) uplink: String,
    next_index: AtomicU32,
}

impl NodeLab {
    pub fn new() -> Result<NodeLab, CommandError> {
        NodeLab::in_lab(Lab::new())
    }

    pub fn in_lab(mut lab: Lab) -> Result<NodeLab, CommandError> {
        let node = lab.netns("node")?;
        let fabric = lab.netns("fabric")?;
        let uplink = DEFAULT_UPLINK.to_string();
        lab.veth(&node, &uplink, &fabric, "port0")?;
        let node_ns = node.open().map_err(|source| CommandError::Spawn {
            cmdline: format!("open {}", node.path_str()),
            source,
        })?;
        // `/dev/tap<ifindex>` lives on the one host devtmpfs while every namespace
        // numbers its links from 1, so two labs would share `/dev/tap3`. A unique
        // index range per lab (as on a real node, where all macvtaps start in one
        // namespace) keeps each lab's device nodes its own.
        let base = 100_000
            + (xxhash_rust::xxh64::xxh64(lab.prefix().as_bytes(), 0) % 0x7fff) as u32 * 1_000;
        Ok(NodeLab {
            lab,
            node,
            node_ns,
            fabric,
            uplink,
            next_index: AtomicU32::new(base),
        })
    }

    /// The node's uplink: the lower device of its macvtaps.
    pub fn uplink(&self) -> &str {
        &self.uplink
    }

    pub fn pod(&mut self, name: &str) -> Result<Ns, CommandError> {
        self.lab.netns(name)
    }

    /// What a device plugin does at Allocate: a macvtap named `name` on the uplink, up.
    pub fn device_link(&self, name: &str) -> Result<u32, CommandError> {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let idx = index.to_string();
        self.lab.ip(
            &self.node,
            &[
                "link",
                "add",
                name,
                "index",
                &idx,
                "link",
                &self.uplink,
                "type",
                "macvtap",
                "mode",
                "bridge",
            ],
        )?;
        self.lab.ip(&self.node, &["link", "set", name, "up"])?;
        Ok(index)
    }

    /// `ip -j -d link show <name>` in `ns`, or None when it does not exist.
    pub fn link(&self, ns: &Ns, name: &str) -> Option<LinkFacts> {
        let out = self.lab.ip(ns, &["-j", "-d", "link", "show", name]).ok()?;
        ip::links(&out).ok()?.into_iter().next()
    }

    /// Names of every link in `ns`.
    pub fn links(&self, ns: &Ns) -> Result<Vec<String>, CommandError> {
        let out = self.lab.ip(ns, &["-j", "link", "show"])?;
        Ok(ip::link_names(&ip::links(&out).unwrap_or_default()))
    }
}
