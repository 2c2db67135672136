//! The netns cluster's topology file (clusters/*.yaml).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Topology {
    pub(crate) name: String,
    pub fabric: Fabric,
    /// A /16 from which node i gets the /24 number i+1 for its pods' eth0.
    pub(crate) pod_network: String,
    pub nodes: Vec<NodeSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Fabric {
    /// IPv4 /24 of the LAN the uplinks are on.
    pub subnet: String,
    pub(crate) gateway: Ipv4Addr,
    #[serde(default)]
    pub(crate) dhcp_range: Option<[Ipv4Addr; 2]>,
    /// IPv6 /64 of the LAN (a unique local prefix): the gateway holds
    /// `gateway6` in it and, with the DHCP server, advertises it (SLAAC).
    #[serde(default)]
    pub(crate) subnet6: Option<String>,
    #[serde(default)]
    pub(crate) gateway6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeSpec {
    pub(crate) name: String,
    pub(crate) uplink: String,
    pub address: Ipv4Addr,
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("failed to read topology {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("topology {file}: {message}")]
    Invalid { file: String, message: String },
}

/// The built-in default (clusters/netns-2node.yaml), so the binary runs anywhere.
pub const DEFAULT: &str = include_str!("../../clusters/netns-2node.yaml");

/// The uplink of a node made without a topology file: the default topology's (the
/// lab's own constant, as the lab sits below the clusters).
pub use crate::lab::node::DEFAULT_UPLINK;

impl Topology {
    /// The built-in default topology ([`DEFAULT`]).
    pub fn builtin() -> Topology {
        Topology::parse(DEFAULT, "clusters/netns-2node.yaml (built in)")
            .expect("the built-in topology is valid (tested)")
    }

    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            file: file.clone(),
            source,
        })?;
        Topology::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<Topology, TopologyError> {
        let invalid = |message: String| TopologyError::Invalid {
            file: file.to_string(),
            message,
        };
        let value: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let topo: Topology = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            invalid(format!("field {path}: {}", e.into_inner()))
        })?;
        if topo.nodes.is_empty() {
            return Err(invalid("nodes is empty; list at least one node".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, n) in topo.nodes.iter().enumerate() {
            let ok_name = !n.name.is_empty()
                && n.name.len() <= 12
                && n.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok_name {
                return Err(invalid(format!(
                    "nodes[{i}].name \"{}\" must be 1-12 characters of a-z, 0-9 and '-'",
                    n.name
                )));
            }
            if !seen.insert(&n.name) {
                return Err(invalid(format!(
                    "nodes[{i}].name \"{}\" is used twice",
                    n.name
                )));
            }
            if n.uplink.is_empty() || n.uplink.len() > 15 || n.uplink.contains('/') {
                return Err(invalid(format!(
                    "nodes[{i}].uplink \"{}\" is not a valid interface name (1-15 characters)",
                    n.uplink
                )));
            }
        }
        topo.fabric_prefix().ok_or_else(|| {
            invalid(format!(
                "fabric.subnet \"{}\" must be an IPv4 /24 like 192.168.159.0/24",
                topo.fabric.subnet
            ))
        })?;
        if topo.fabric.subnet6.is_some() != topo.fabric.gateway6.is_some() {
            return Err(invalid(
                "fabric.subnet6 and fabric.gateway6 go together; give both or neither".into(),
            ));
        }
        if let (Some(_), Some(gw)) = (&topo.fabric.subnet6, topo.fabric.gateway6) {
            let Some(prefix) = topo.fabric_prefix6() else {
                return Err(invalid(format!(
                    "fabric.subnet6 \"{}\" must be an IPv6 /64 like fd00:159::/64",
                    topo.fabric.subnet6.as_deref().unwrap_or("")
                )));
            };
            if gw.segments()[..4] != prefix[..4] {
                return Err(invalid(format!(
                    "fabric.gateway6 {gw} is not in fabric.subnet6 {}",
                    topo.fabric.subnet6.as_deref().unwrap_or("")
                )));
            }
        }
        topo.pod_prefix().ok_or_else(|| {
            invalid(format!(
                "podNetwork \"{}\" must be an IPv4 /16 like 10.244.0.0/16",
                topo.pod_network
            ))
        })?;
        Ok(topo)
    }

    fn prefix(cidr: &str, len: &str) -> Option<[u8; 4]> {
        let (addr, l) = cidr.split_once('/')?;
        (l == len).then_some(())?;
        addr.parse::<Ipv4Addr>().ok().map(|a| a.octets())
    }

    fn fabric_prefix(&self) -> Option<[u8; 4]> {
        Topology::prefix(&self.fabric.subnet, "24")
    }

    /// The LAN's IPv6 /64, when the topology has one.
    fn fabric_prefix6(&self) -> Option<[u16; 8]> {
        let (addr, len) = self.fabric.subnet6.as_deref()?.split_once('/')?;
        (len == "64").then_some(())?;
        addr.parse::<Ipv6Addr>().ok().map(|a| a.segments())
    }

    /// Host `n` of the LAN's IPv6 /64, e.g. `fd00:159::21`, when it has one.
    pub fn lan_host6(&self, n: u16) -> Option<Ipv6Addr> {
        let p = self.fabric_prefix6()?;
        Some(Ipv6Addr::new(p[0], p[1], p[2], p[3], 0, 0, 0, n))
    }

    fn pod_prefix(&self) -> Option<[u8; 4]> {
        Topology::prefix(&self.pod_network, "16")
    }

    /// The uplink (lower device of macvtap/macvlan) of node `i`, or of the first node
    /// when there is no such node.
    pub fn uplink(&self, i: usize) -> &str {
        let node = self.nodes.get(i).or(self.nodes.first());
        &node.expect("validated: at least one node").uplink
    }

    /// Host `n` of the LAN's /24 (the fabric's subnet), e.g. `192.168.159.21`.
    pub fn lan_host(&self, n: u8) -> Ipv4Addr {
        let p = self.fabric_prefix().expect("validated");
        Ipv4Addr::new(p[0], p[1], p[2], n)
    }

    /// The /24 of node `i`'s pod network, e.g. `10.244.1.0/24`.
    pub fn pod_subnet(&self, i: usize) -> String {
        let p = self.pod_prefix().expect("validated");
        format!("{}.{}.{}.0/24", p[0], p[1], i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_topology_is_the_seeds_lan() {
        let t = Topology::parse(DEFAULT, "default").unwrap();
        assert_eq!(t.nodes.len(), 2);
        assert_eq!(t.nodes[0].uplink, "ens33");
        assert!(t.nodes.iter().all(|n| n.uplink == DEFAULT_UPLINK));
        assert_eq!(Topology::builtin().uplink(1), DEFAULT_UPLINK);
        assert_eq!(t.fabric.gateway, Ipv4Addr::new(192, 168, 159, 2));
        assert_eq!(t.pod_subnet(1), "10.244.2.0/24");
        assert_eq!(t.lan_host(21), Ipv4Addr::new(192, 168, 159, 21));
        assert_eq!(t.lan_host6(0x21), Some("fd00:159::21".parse().unwrap()));
        assert_eq!(t.fabric.gateway6, Some("fd00:159::2".parse().unwrap()));
    }

    #[test]
    fn ipv6_fabric_is_checked() {
        let bad = DEFAULT.replace("subnet6: fd00:159::/64", "subnet6: fd00:159::/48");
        let e = Topology::parse(&bad, "t").unwrap_err().to_string();
        assert!(e.contains("fabric.subnet6") && e.contains("/64"), "{e}");
        let bad = DEFAULT.replace("gateway6: fd00:159::2", "gateway6: fd00:160::2");
        let e = Topology::parse(&bad, "t").unwrap_err().to_string();
        assert!(e.contains("not in fabric.subnet6"), "{e}");
        let none = DEFAULT
            .replace("  subnet6: fd00:159::/64\n", "")
            .replace("  gateway6: fd00:159::2\n", "");
        assert_eq!(Topology::parse(&none, "t").unwrap().lan_host6(1), None);
    }

    #[test]
    fn typos_are_named() {
        let bad = DEFAULT.replace("uplink: ens33", "uplnk: ens33");
        let e = Topology::parse(&bad, "t.yaml").unwrap_err().to_string();
        assert!(e.contains("t.yaml") && e.contains("uplnk"), "{e}");
        let bad = DEFAULT.replace("podNetwork: 10.244.0.0/16", "podNetwork: 10.244.0.0/24");
        assert!(
            Topology::parse(&bad, "t")
                .unwrap_err()
                .to_string()
                .contains("/16")
        );
        let bad = DEFAULT.replace("name: node2", "name: node1");
        assert!(
            Topology::parse(&bad, "t")
                .unwrap_err()
                .to_string()
                .contains("used twice")
        );
        let bad = DEFAULT.replace("address: 192.168.159.138", "address: 192.168.159.300");
        assert!(
            Topology::parse(&bad, "t")
                .unwrap_err()
                .to_string()
                .contains("nodes[1].address")
        );
    }
}
