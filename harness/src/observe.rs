//! What a scenario saw, for the report: the topology of its cluster (nodes, pods,
//! their interfaces) and every reachability probe (expected vs observed).

pub mod record;

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) topology: Option<Topology>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) reachability: Vec<Probe>,
    /// Where the scenario's time went: cluster up, deploy, assess, teardown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) phases: Vec<Phase>,
    /// What was not checked and why (e.g. node-level checks on a real cluster).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) notes: Vec<String>,
    /// The VMs' guests as their bindings connected them, drawn inside their
    /// virt-launcher pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) guests: Vec<GuestSnap>,
    /// Live migrations: who moved where, how long, what the stream lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) migrations: Vec<MigrationObs>,
    /// The runner's check after the scenario: no two live attachments of a
    /// network share a MAC or an address, cluster-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) uniqueness: Option<Uniqueness>,
}

/// What the uniqueness check read and found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Uniqueness {
    /// Live attachments read (one per network-status entry of a live pod).
    pub(crate) attachments: usize,
    #[serde(default)]
    pub(crate) duplicates: Vec<Duplicate>,
}

/// A MAC or an address two (or more) live attachments of one network share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicate {
    /// The network as network-status names it (`namespace/nad`).
    pub(crate) network: String,
    /// `mac` or `ip`.
    pub(crate) kind: String,
    pub(crate) value: String,
    /// Who has it: `namespace/pod interface`.
    pub(crate) holders: Vec<String>,
}

impl std::fmt::Display for Duplicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.kind == "mac" { "MAC" } else { "IP" };
        write!(
            f,
            "{what} {} on network {} is used by {}",
            self.value,
            self.network,
            self.holders.join(" and ")
        )
    }
}

/// One live migration as the scenario measured it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationObs {
    pub(crate) vm: String,
    pub(crate) binding: String,
    pub(crate) source_node: String,
    pub(crate) target_node: String,
    /// `completed` or `failed` (QEMU's final status).
    pub(crate) status: String,
    /// `migrate` sent to the final status seen.
    pub(crate) total_s: f64,
    /// QEMU's own downtime figure, if it gave one.
    pub(crate) qemu_downtime_ms: Option<u64>,
    /// RAM bytes QEMU sent.
    pub(crate) bytes: u64,
    /// The longest run of lost packets in the peer's stream, as time.
    pub(crate) stream_downtime_s: f64,
    pub(crate) stream_interval_ms: u64,
    pub(crate) icmp_sent: usize,
    pub(crate) icmp_lost: usize,
    pub(crate) udp_sent: usize,
    pub(crate) udp_lost: usize,
    /// First and last lost packet (either protocol), since the stream began.
    pub(crate) first_lost_s: Option<f64>,
    pub(crate) last_lost_s: Option<f64>,
    /// Where the LAN's switch sent the guest's MAC, over time.
    pub(crate) lan: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub(crate) name: String,
    pub(crate) seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub fabric: String,
    pub nodes: Vec<NodeSnap>,
    pub(crate) workloads: Vec<WorkloadSnap>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeSnap {
    pub(crate) name: String,
    pub(crate) uplink: String,
    pub(crate) address: String,
    /// Linux bridges on the node (the pod network's cni0, ...).
    #[serde(default)]
    pub(crate) bridges: Vec<String>,
    /// Open vSwitch bridges on the node, with their ports into the fabric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) ovs_bridges: Vec<OvsBridgeSnap>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OvsBridgeSnap {
    pub(crate) name: String,
    /// Its uplink ports, trunks into the fabric (ens34 on the netns cluster).
    #[serde(default)]
    pub(crate) trunks: Vec<String>,
}

/// A VM's guest: which launcher pod runs it and how each NIC is bound.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestSnap {
    pub(crate) name: String,
    /// The virt-launcher pod it runs in.
    pub(crate) pod: String,
    pub(crate) node: String,
    pub(crate) nics: Vec<GuestNicSnap>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestNicSnap {
    /// The VM's interface name (spec.domain.devices.interfaces[].name).
    pub(crate) name: String,
    /// macvtap, bridge, masquerade, ...
    pub(crate) binding: String,
    /// The launcher pod's interface behind it (eth0, net1, ...).
    pub(crate) pod_interface: String,
    pub(crate) mac: String,
    #[serde(default)]
    pub(crate) addresses: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSnap {
    pub(crate) name: String,
    /// "pod" or "vm".
    pub(crate) kind: String,
    pub(crate) node: String,
    pub(crate) interfaces: Vec<InterfaceSnap>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InterfaceSnap {
    pub(crate) name: String,
    pub(crate) network: String,
    #[serde(default)]
    pub(crate) mac: Option<String>,
    #[serde(default)]
    pub(crate) ips: Vec<String>,
    /// What it hangs off: the lower device, a bridge, a VLAN.
    #[serde(default)]
    pub(crate) attachment: Option<String>,
    /// The node's device it hangs off (ens33, br1, cni0), when known: the report
    /// wires it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) via: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) expected: bool,
    pub(crate) observed: bool,
    /// `icmp`, `tcp` or `udp` (reports written before it existed: ICMP).
    #[serde(default = "icmp")]
    pub(crate) protocol: String,
}

fn icmp() -> String {
    "icmp".into()
}

/// Shared by a scenario's steps; the runner reads it when the scenario ends.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Observations>>);

impl Recorder {
    pub fn probe(&self, from: &str, to: &str, expected: bool, observed: bool) {
        self.probe_over(from, to, "icmp", expected, observed);
    }

    /// One cell of a reachability table, probed over `protocol`.
    pub fn probe_over(&self, from: &str, to: &str, protocol: &str, expected: bool, observed: bool) {
        self.0.lock().expect("recorder").reachability.push(Probe {
            from: from.into(),
            to: to.into(),
            expected,
            observed,
            protocol: protocol.into(),
        });
    }

    /// Records the cluster as seen now. A scenario that deletes its workloads to
    /// check what they leave records it before; the runner's snapshot after the
    /// assessment then keeps that richer picture unless it shows at least as much.
    pub fn topology(&self, topology: Topology) {
        let mut obs = self.0.lock().expect("recorder");
        let richer = obs
            .topology
            .as_ref()
            .is_none_or(|t| topology.workloads.len() >= t.workloads.len());
        if richer {
            obs.topology = Some(topology);
        }
    }

    pub fn phase(&self, name: &str, took: std::time::Duration) {
        self.0.lock().expect("recorder").phases.push(Phase {
            name: name.into(),
            seconds: took.as_secs_f64(),
        });
    }

    /// A VM's guest as booted (drawn inside its launcher pod).
    pub fn guest(&self, guest: GuestSnap) {
        let mut obs = self.0.lock().expect("recorder");
        obs.guests.retain(|g| g.name != guest.name);
        obs.guests.push(guest);
    }

    pub fn migration(&self, m: MigrationObs) {
        self.0.lock().expect("recorder").migrations.push(m);
    }

    pub fn uniqueness(&self, u: Uniqueness) {
        self.0.lock().expect("recorder").uniqueness = Some(u);
    }

    pub fn note(&self, text: &str) {
        self.0.lock().expect("recorder").notes.push(text.into());
    }

    pub fn take(&self) -> Observations {
        std::mem::take(&mut *self.0.lock().expect("recorder"))
    }
}
