//! What a provider can do beyond the `Cluster` contract, as the scenarios declare
//! it: a scenario names the capabilities it needs; the runner skips it, naming the
//! missing one, on a provider whose `Offer` lacks it. No scenario names a provider.
//! A running cluster has the matching abilities (`cluster::ability`).

use std::collections::BTreeSet;
use std::fmt;

/// An ability a scenario may need from the cluster it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Read the nodes themselves: their links, addresses and the pods' links as the
    /// node sees them (link kind, lower device, device IDs from admission).
    NodeAccess,
    /// Break a node on purpose: restart its kubelet, take its uplink down or away,
    /// delete a pod's network namespace behind the runtime's back.
    NodeFaults,
    /// Break a node's multus on purpose: restart its daemon while pods start,
    /// rewrite the node's primary CNI config (secnet's multus, on nodes secnet made).
    MultusFaults,
    /// Kill the device plugin on a node and have it started again.
    DevicePluginRestart,
    /// Apply a broken device plugin config and see the device plugin refuse it.
    DevicePluginConfig,
    /// Open vSwitch on every node, bridge `br1` trunked into the LAN.
    Ovs,
    /// Capture the frames on a pod's interface as the node sees them (tcpdump in the
    /// pod's network namespace: on this machine, or from a node's OVS pod).
    FrameCapture,
    /// A DHCP server on the nodes' LAN (the seed's manual macvlan lab).
    Dhcp,
    /// KubeVirt-style VMs: guests in virt-launcher pods on the cluster's networks.
    Vm,
    /// Live migration of those guests between nodes (on a real cluster KubeVirt's
    /// own, with two schedulable nodes at least).
    LiveMigration,
    /// The nodes' LAN seen from this machine: a host on it outside the nodes (or a
    /// pod's namespace) to stream to a guest from, and where its switch learnt a
    /// MAC (the netns cluster's fabric).
    LanWatch,
    /// Plugging a NIC into a running guest and out again (a network attached to
    /// and detached from its running launcher pod).
    NicHotplug,
    /// Whereabouts, the cluster-wide IPAM, with its pools in the cluster's API server
    /// (a real cluster that deploys it: `--cluster bare --component-bin
    /// whereabouts=DIR`).
    Whereabouts,
    /// Run the plugin binaries under test directly on a node secnet owns, with
    /// hand-written CNI calls (the CNI-level and security scenarios).
    PluginExec,
    /// A program the scenario runs on this machine (checked on PATH).
    Program(&'static str),
}

impl Capability {
    /// The programs the local provider needs on PATH for it.
    pub fn programs(&self) -> &'static [&'static str] {
        match self {
            Capability::Ovs => &["ovsdb-server", "ovs-vswitchd", "ovs-vsctl"],
            Capability::Dhcp => &["dnsmasq", "busybox"],
            Capability::Vm
            | Capability::LiveMigration
            | Capability::LanWatch
            | Capability::NicHotplug => &["qemu-system-x86_64", "nft"],
            Capability::FrameCapture => &["tcpdump"],
            _ => &[],
        }
    }

    /// What a user must provide to get it, for skip messages.
    pub fn hint(&self) -> String {
        match self {
            Capability::NodeAccess => {
                "node-level access (the nodes' own links, pod sandboxes and device allocations; on real clusters through privileged probe pods, unless the inventory says `nodeAccess: none`)".into()
            }
            Capability::NodeFaults => {
                "fault injection on nodes (kubelet restart, uplink down, pod netns deleted)".into()
            }
            Capability::MultusFaults => {
                "restarting multus on a node and rewriting its primary CNI config (secnet's multus daemon; real multus: not yet)".into()
            }
            Capability::DevicePluginRestart => "restarting the device plugin on a node".into(),
            Capability::DevicePluginConfig => {
                "deploying the device plugin with a config of the scenario's".into()
            }
            Capability::Ovs => "Open vSwitch on the nodes".into(),
            Capability::FrameCapture => {
                "capturing a pod's frames on the node (tcpdump; on kind/existing: the openvswitch component)".into()
            }
            Capability::Dhcp => "a DHCP server on the nodes' LAN".into(),
            Capability::Vm => "VMs on the cluster's networks".into(),
            Capability::LiveMigration => {
                "live migration of VMs between nodes (real clusters: KubeVirt deployed and two schedulable nodes)".into()
            }
            Capability::LanWatch => {
                "the nodes' LAN seen from this machine: a host on it to stream to a VM from, its switch's forwarding table (the netns cluster)".into()
            }
            Capability::NicHotplug => {
                "hot-plugging NICs into running VMs (a network added to the running launcher pod; real clusters: KubeVirt deployed and two schedulable nodes)".into()
            }
            Capability::Whereabouts => {
                "whereabouts (cluster-wide IPAM) and an API server holding its IPPools (--cluster bare --component-bin whereabouts=DIR; kind, existing: --components ...,whereabouts)".into()
            }
            Capability::PluginExec => {
                "running the plugin binaries directly on a node secnet owns".into()
            }
            Capability::Program(p) => format!(
                "the program `{p}` on PATH (apt-get install {})",
                package_of(p)
            ),
        }
    }
}

/// The Debian/Ubuntu package that installs `program` (as ci/bootstrap.sh installs it).
pub fn package_of(program: &str) -> &'static str {
    match program.rsplit('/').next().unwrap_or(program) {
        "ip" => "iproute2",
        "ping" => "iputils-ping",
        "nc" => "netcat-openbsd",
        "dnsmasq" => "dnsmasq-base",
        "busybox" => "busybox-static",
        "qemu-system-x86_64" => "qemu-system-x86",
        "nft" => "nftables",
        "ovsdb-server" | "ovs-vswitchd" | "ovs-vsctl" => "openvswitch-switch",
        "tcpdump" => "tcpdump",
        "bridge" | "host-local" | "macvlan" => "containernetworking-plugins",
        _ => "the package that provides it",
    }
}

impl fmt::Display for Capability {
    /// The variant's name, as scenarios declare it (`Ovs`, `Program(tcpdump)`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::Program(p) => write!(f, "Program({p})"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// What one run's cluster offers: the provider's own capabilities, plus those the run
/// brings (component sets it deploys, such as Open vSwitch or KubeVirt) or an
/// inventory declares preinstalled, less what the cluster's owner withholds.
/// Scenarios are selected against it before any cluster is up; once one is, its
/// abilities (`AnyCluster::offers`) answer the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The provider's `--cluster` name, for messages ("the kind cluster").
    name: String,
    /// Whether the nodes run on this machine: the programs a capability needs are
    /// then looked up on its PATH (a real cluster's nodes run their own).
    nodes_here: bool,
    own: BTreeSet<Capability>,
    extra: BTreeSet<Capability>,
    /// What the cluster's owner does not allow, although the provider could
    /// (an inventory's `nodeAccess: none`).
    withheld: BTreeSet<Capability>,
}

impl Offer {
    /// A provider's own capabilities, nothing more.
    pub fn new(
        name: impl Into<String>,
        nodes_here: bool,
        own: impl IntoIterator<Item = Capability>,
    ) -> Offer {
        Offer {
            name: name.into(),
            nodes_here,
            own: own.into_iter().collect(),
            extra: BTreeSet::new(),
            withheld: BTreeSet::new(),
        }
    }

    /// Adds capabilities the run brings.
    pub fn with(mut self, caps: impl IntoIterator<Item = Capability>) -> Offer {
        self.extra.extend(caps);
        self
    }

    /// Takes capabilities away, whatever the provider or the run brings.
    pub fn without(mut self, caps: impl IntoIterator<Item = Capability>) -> Offer {
        self.withheld.extend(caps);
        self
    }

    /// The provider's `--cluster` name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the nodes (and so the plugins and every program a scenario uses)
    /// run on this machine.
    pub fn nodes_here(&self) -> bool {
        self.nodes_here
    }

    /// Everything offered apart from programs.
    pub fn capabilities(&self) -> BTreeSet<Capability> {
        let mut all = self.own.clone();
        all.extend(self.extra.iter().copied());
        all.retain(|c| !self.withheld.contains(c));
        all
    }

    pub fn offers(&self, cap: Capability) -> bool {
        self.missing(&[cap]).is_none()
    }

    /// The first of `needs` this cluster lacks; where the nodes run here a
    /// capability whose programs are not installed is reported as the program.
    pub fn missing(&self, needs: &[Capability]) -> Option<Capability> {
        let here = self.nodes_here;
        let has_program = |p: &str| here && crate::prereq::find_program(p).is_some();
        let caps = self.capabilities();
        for cap in needs {
            match cap {
                Capability::Program(p) if !has_program(p) => return Some(*cap),
                Capability::Program(_) => {}
                other if !caps.contains(other) => return Some(*other),
                // A real cluster's nodes run their own programs.
                _ if !here => {}
                other => {
                    if let Some(p) = other.programs().iter().copied().find(|p| !has_program(p)) {
                        return Some(Capability::Program(p));
                    }
                }
            }
        }
        None
    }
}

impl fmt::Display for Offer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Offer {
        Offer::new("netns", true, [Capability::Ovs])
    }

    fn real() -> Offer {
        Offer::new("kind", false, [Capability::DevicePluginRestart])
    }

    #[test]
    fn programs_are_looked_up_only_where_the_nodes_run_here() {
        assert!(local().offers(Capability::Program("sh")));
        assert!(!local().offers(Capability::Program("secnet-no-such-program")));
        assert!(!real().offers(Capability::Program("sh")));
        assert_eq!(
            real().missing(&[Capability::DevicePluginRestart, Capability::Ovs]),
            Some(Capability::Ovs)
        );
    }

    #[test]
    fn a_run_adds_what_it_deploys_and_programs_stay_on_the_nodes() {
        assert_eq!(real().missing(&[Capability::Ovs]), Some(Capability::Ovs));
        let with_ovs = real().with([Capability::Ovs]);
        // The nodes run Open vSwitch; this machine need not have it.
        assert_eq!(with_ovs.missing(&[Capability::Ovs]), None);
        assert!(!with_ovs.offers(Capability::Program("sh")));
        let none = with_ovs.without([Capability::Ovs]);
        assert_eq!(none.missing(&[Capability::Ovs]), Some(Capability::Ovs));
        assert!(none.offers(Capability::DevicePluginRestart));
    }
}
