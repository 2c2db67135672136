//! A node as the CNI plugins see it: a namespace with an uplink `ens33` (a veth into
//! a fabric namespace), plus pod namespaces, and `ip -j` views to cross-check what
//! the plugins report against what the kernel says.

use std::sync::atomic::{AtomicU32, Ordering};

use cni_kit::netns::NetNs;
use serde_json::Value;

use super::{CommandError, Lab, Ns};

pub struct NodeLab {
    pub lab: Lab,
    pub node: Ns,
    pub node_ns: NetNs,
    pub fabric: Ns,
    next_index: AtomicU32,
}

impl NodeLab {
    pub fn new() -> Result<NodeLab, CommandError> {
        NodeLab::in_lab(Lab::new())
    }

    pub fn in_lab(mut lab: Lab) -> Result<NodeLab, CommandError> {
        let node = lab.netns("node")?;
        let fabric = lab.netns("fabric")?;
        lab.veth(&node, "ens33", &fabric, "port0")?;
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
            next_index: AtomicU32::new(base),
        })
    }

    /// The node's uplink: the lower device of its macvtaps.
    pub fn uplink(&self) -> &str {
        "ens33"
    }

    pub fn pod(&mut self, name: &str) -> Result<Ns, CommandError> {
        self.lab.netns(name)
    }

    /// What a device plugin does at Allocate: a macvtap named `name` on ens33, up.
    pub fn device_link(&self, name: &str) -> Result<u32, CommandError> {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let idx = index.to_string();
        self.lab.ip(
            &self.node,
            &[
                "link", "add", name, "index", &idx, "link", "ens33", "type", "macvtap", "mode",
                "bridge",
            ],
        )?;
        self.lab.ip(&self.node, &["link", "set", name, "up"])?;
        Ok(index)
    }

    /// `ip -j -d link show <name>` in `ns`, or None when it does not exist.
    pub fn link(&self, ns: &Ns, name: &str) -> Option<Value> {
        let out = self.lab.ip(ns, &["-j", "-d", "link", "show", name]).ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        v.as_array()?.first().cloned()
    }

    /// Names of every link in `ns`.
    pub fn links(&self, ns: &Ns) -> Result<Vec<String>, CommandError> {
        let out = self.lab.ip(ns, &["-j", "link", "show"])?;
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l["ifname"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// `linkinfo.info_kind` of an `ip -j -d` link.
pub fn link_kind(link: &Value) -> &str {
    link["linkinfo"]["info_kind"].as_str().unwrap_or("")
}

/// The flags of an `ip -j` link (`UP`, `PROMISC`, ...).
pub fn link_flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Owner of `/dev/tap<ifindex>` for an `ip -j` link.
pub fn tap_owner(link: &Value) -> std::io::Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(format!("/dev/tap{}", link["ifindex"]))?;
    Ok((meta.uid(), meta.gid()))
}
