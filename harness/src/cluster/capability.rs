//! What a provider can do beyond the `Cluster` contract, and which providers there
//! are. A scenario names the capabilities it needs; the runner skips it, naming the
//! missing one, on a provider that does not offer it. No scenario names a provider.

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
            Capability::Vm => &["qemu-system-x86_64", "nft"],
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

/// Where the scenarios run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Provider {
    /// A fresh cluster of Linux network namespaces per scenario, made by secnet.
    #[default]
    Netns,
    /// A kind cluster made (or reused) for the run.
    Kind,
    /// The cluster a kubeconfig points at (never created or deleted by secnet).
    Existing,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Netns => "netns",
            Provider::Kind => "kind",
            Provider::Existing => "existing",
        }
    }

    /// Parses a `--cluster` value, naming the known ones when it is none of them.
    pub fn parse(s: &str) -> Result<Provider, UnknownProvider> {
        match s {
            "netns" => Ok(Provider::Netns),
            "kind" => Ok(Provider::Kind),
            "existing" => Ok(Provider::Existing),
            other => Err(UnknownProvider(other.to_string())),
        }
    }

    /// Whether secnet runs the nodes on this machine (and so the plugins, the
    /// kubelet double and every program a scenario uses).
    pub fn is_local(self) -> bool {
        self == Provider::Netns
    }

    /// What the provider offers, apart from programs (see `offers`).
    pub fn capabilities(self) -> BTreeSet<Capability> {
        use Capability::*;
        match self {
            Provider::Netns => [
                NodeAccess,
                NodeFaults,
                DevicePluginRestart,
                DevicePluginConfig,
                Ovs,
                FrameCapture,
                Dhcp,
                Vm,
                PluginExec,
            ]
            .into_iter()
            .collect(),
            // Node access through short-lived privileged probe pods (`kubectl debug
            // node`'s way); the device plugin's pod is deleted and the DaemonSet
            // makes a new one.
            Provider::Kind | Provider::Existing => {
                [NodeAccess, DevicePluginRestart].into_iter().collect()
            }
        }
    }

    /// Whether the provider offers `cap`. Programs are looked up on this machine's
    /// PATH for the local provider; a real cluster's nodes run nothing of ours.
    pub fn offers(self, cap: Capability) -> bool {
        Offer::new(self).offers(cap)
    }

    /// The first of `needs` this provider lacks (see `Offer::missing`).
    pub fn missing(self, needs: &[Capability]) -> Option<Capability> {
        Offer::new(self).missing(needs)
    }
}

/// What one run's cluster offers: its provider's own capabilities, plus those the run
/// brings (component sets it deploys, such as Open vSwitch or KubeVirt) or an
/// inventory declares preinstalled. Scenarios are selected against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    provider: Provider,
    extra: BTreeSet<Capability>,
    /// What the cluster's owner does not allow, although the provider could
    /// (an inventory's `nodeAccess: none`).
    withheld: BTreeSet<Capability>,
}

impl Offer {
    /// The provider's own capabilities, nothing more.
    pub fn new(provider: Provider) -> Offer {
        Offer {
            provider,
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

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Everything offered apart from programs.
    pub fn capabilities(&self) -> BTreeSet<Capability> {
        let mut all = self.provider.capabilities();
        all.extend(self.extra.iter().copied());
        all.retain(|c| !self.withheld.contains(c));
        all
    }

    pub fn offers(&self, cap: Capability) -> bool {
        self.missing(&[cap]).is_none()
    }

    /// The first of `needs` this cluster lacks; for the local provider a
    /// capability whose programs are not installed is reported as the program.
    pub fn missing(&self, needs: &[Capability]) -> Option<Capability> {
        let local = self.provider.is_local();
        let has_program = |p: &str| local && crate::prereq::find_program(p).is_some();
        let caps = self.capabilities();
        for cap in needs {
            match cap {
                Capability::Program(p) if !has_program(p) => return Some(*cap),
                Capability::Program(_) => {}
                other if !caps.contains(other) => return Some(*other),
                // A real cluster's nodes run their own programs.
                _ if !local => {}
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
        fmt::Display::fmt(&self.provider, f)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown cluster provider \"{0}\"; use --cluster netns, kind or existing")]
pub struct UnknownProvider(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_offers_everything_a_real_cluster_does() {
        for cap in Provider::Kind.capabilities() {
            assert!(Provider::Netns.offers(cap), "{cap}");
        }
        assert_eq!(
            Provider::Kind.capabilities(),
            Provider::Existing.capabilities()
        );
    }

    #[test]
    fn programs_are_looked_up_only_for_the_local_provider() {
        assert!(Provider::Netns.offers(Capability::Program("sh")));
        assert!(!Provider::Netns.offers(Capability::Program("secnet-no-such-program")));
        assert!(!Provider::Kind.offers(Capability::Program("sh")));
        assert_eq!(
            Provider::Kind.missing(&[Capability::DevicePluginRestart, Capability::Ovs]),
            Some(Capability::Ovs)
        );
    }

    #[test]
    fn a_run_adds_what_it_deploys_and_programs_stay_on_the_nodes() {
        let kind = Offer::new(Provider::Kind);
        assert_eq!(kind.missing(&[Capability::Ovs]), Some(Capability::Ovs));
        let with_ovs = kind.with([Capability::Ovs]);
        // The nodes run Open vSwitch; this machine need not have it.
        assert_eq!(with_ovs.missing(&[Capability::Ovs]), None);
        assert!(!with_ovs.offers(Capability::Program("sh")));
        assert_eq!(
            Offer::new(Provider::Netns).capabilities(),
            Provider::Netns.capabilities()
        );
    }

    #[test]
    fn real_clusters_have_node_access_unless_the_owner_withholds_it() {
        for p in [Provider::Kind, Provider::Existing] {
            assert!(p.offers(Capability::NodeAccess), "{p}");
            // Faults stay where secnet owns the nodes.
            assert!(!p.offers(Capability::NodeFaults), "{p}");
        }
        let none = Offer::new(Provider::Existing)
            .with([Capability::Ovs])
            .without([Capability::NodeAccess]);
        assert_eq!(
            none.missing(&[Capability::Ovs, Capability::NodeAccess]),
            Some(Capability::NodeAccess)
        );
        assert!(none.offers(Capability::DevicePluginRestart));
    }

    #[test]
    fn providers_parse_by_name() {
        for p in [Provider::Netns, Provider::Kind, Provider::Existing] {
            assert_eq!(Provider::parse(p.name()).unwrap(), p);
        }
        assert!(
            Provider::parse("minikube")
                .unwrap_err()
                .to_string()
                .contains("netns, kind or existing")
        );
    }
}
