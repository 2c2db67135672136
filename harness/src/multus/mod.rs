//! Multus semantics as a pure library: no I/O, no Kubernetes client.
//!
//! The `netns` provider plays multus with these pieces, in order:
//! 1. [`selection::parse_networks`] reads the pod's network-selection annotation;
//! 2. [`delegate::plan`] looks up each NetworkAttachmentDefinition and builds one
//!    [`delegate::Delegate`] per network (interface name, the plugin chain's stdin
//!    configs with `deviceID`/`runtimeConfig`/`args.cni` injected, `CNI_ARGS`);
//! 3. the caller executes each delegate's plugin chain;
//! 4. [`status::from_result`] turns each result into its network-status entries
//!    (one per sandbox interface) and [`status::annotation`] writes them.
//!
//! Behaviour follows upstream multus (thick and thin plugin share it), libcni and
//! the network-attachment-definition client multus writes network-status with;
//! `upstream_cases` checks it against their own test cases. Where secnet is
//! deliberately different (a missing `cniVersion`, an empty `spec.config`, a
//! resource without devices, `null` list entries), the module says so and why.

pub mod delegate;
pub mod selection;
pub mod semantics;
pub mod status;
#[cfg(test)]
mod upstream_cases;

pub use delegate::{Delegate, DeviceIds, Nad, PodInfo, Runtime, plan, plan_with};
pub use selection::{Bandwidth, NetworkSelection, PortMapping, parse_networks};
pub use semantics::Semantics;
pub use status::NetworkStatus;

/// Pod annotation selecting the secondary networks.
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
/// Pod annotation multus writes after ADD.
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
/// NetworkAttachmentDefinition annotation naming the device-plugin resource.
pub const RESOURCE_NAME_ANNOTATION: &str = "k8s.v1.cni.cncf.io/resourceName";

/// Everything that can go wrong while playing multus. Messages name the
/// annotation/NAD/field at fault and say how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultusError {
    /// The network-selection annotation is malformed. `entry` is 1-based.
    #[error(
        "{}{NETWORKS_ANNOTATION}: {}{problem}; {fix}",
        pod_prefix(.pod),
        entry_prefix(.entry, .text)
    )]
    Selection {
        /// `ns/name` of the pod, when known.
        pod: Option<String>,
        entry: Option<usize>,
        /// The entry as written (truncated).
        text: String,
        problem: String,
        fix: String,
    },

    /// A selected network has no NetworkAttachmentDefinition.
    #[error(
        "pod {pod}: {NETWORKS_ANNOTATION} selects network {network}, but NetworkAttachmentDefinition {network} does not exist; create it or fix the name in the annotation"
    )]
    NadNotFound { pod: String, network: String },

    /// A NAD's `spec.config` cannot be used as a delegate config.
    #[error("NetworkAttachmentDefinition {nad}: spec.config: {problem}; {fix}")]
    NadConfig {
        nad: String,
        problem: String,
        fix: String,
    },

    /// A NAD names a device-plugin resource the pod has no (more) devices of.
    #[error(
        "pod {pod}: network {network} needs a device of {resource} (NetworkAttachmentDefinition annotation {RESOURCE_NAME_ANNOTATION}), but {}",
        no_device_detail(.resource, *.allocated, *.needed)
    )]
    NoDevice {
        pod: String,
        network: String,
        resource: String,
        /// How many devices of `resource` the pod was allocated.
        allocated: usize,
        /// How many networks of the pod use `resource` up to and including this one.
        needed: usize,
    },

    /// Two networks of one pod would get the same interface name.
    #[error(
        "pod {pod}: interface {ifname} is used by both network {first} and network {second}; give each network its own interface with \"ns/name@ifname\" or \"interface\""
    )]
    DuplicateInterface {
        pod: String,
        ifname: String,
        first: String,
        second: String,
    },

    /// A network would take the name of an interface already in the sandbox.
    #[error(
        "pod {pod}: network {network} asks for interface {ifname}, which already exists in the pod's sandbox; pick another name with \"ns/name@ifname\" or \"interface\""
    )]
    InterfaceExists {
        pod: String,
        ifname: String,
        network: String,
    },

    /// More than one `default-route` gateway of one IP family (multus: "multus
    /// does not support ECMP for default-route").
    #[error(
        "pod {pod}: {NETWORKS_ANNOTATION} asks for more than one {family} default-route gateway ({gateways}); multus supports one per family (no ECMP), keep \"default-route\" on one network"
    )]
    Ecmp {
        pod: String,
        family: String,
        gateways: String,
    },

    /// A CNI result cannot be turned into network-status (multus fails the ADD).
    #[error("network {network}: the CNI result {problem}; multus fails the pod's ADD with it")]
    Result {
        network: String,
        #[source]
        problem: status::ResultProblem,
    },

    /// Multi-Net spec semantics: a selection asks for a capability (`ips`, `mac`,
    /// `portMappings`, `bandwidth`, `infinibandGUID`) no plugin of the network's
    /// chain declares (§4.1.2.1.3.2 and the like: the attachment must fail).
    #[error(
        "pod {pod}: network {network} asks for \"{key}\", but no plugin of NetworkAttachmentDefinition {network} declares the \"{capability}\" capability; add \"capabilities\": {{\"{capability}\": true}} to the plugin that handles it, or drop \"{key}\" from the selection"
    )]
    MissingCapability {
        pod: String,
        network: String,
        key: String,
        capability: String,
    },

    /// Multi-Net spec semantics: the plugins did not assign what the selection
    /// asked for (`ips`, `mac`): the attachment fails.
    #[error(
        "pod {pod}: network {network} asked for {key} {wanted}, but the plugins' result has {got}; use a plugin that honours \"{key}\" (its capability or CNI_ARGS), or drop it from the selection"
    )]
    NotHonoured {
        pod: String,
        network: String,
        key: String,
        wanted: String,
        got: String,
    },

    /// Multi-Net spec semantics, namespace isolation (§7.4): the pod may not use
    /// a NetworkAttachmentDefinition of another namespace.
    #[error(
        "pod {pod}: network {network} is in another namespace, and pods may only use NetworkAttachmentDefinitions of their own namespace or of {allowed}; create the NetworkAttachmentDefinition in the pod's namespace"
    )]
    NotAllowed {
        pod: String,
        network: String,
        allowed: String,
    },

    /// Multi-Net spec semantics (§4.1.2.1.11): `ips` together with
    /// `ipam-claim-reference` in one selection is an error.
    #[error(
        "pod {pod}: {NETWORKS_ANNOTATION}: network {network} has both \"ips\" and \"ipam-claim-reference\" {claim}; keep one of them"
    )]
    IpsWithClaim {
        pod: String,
        network: String,
        claim: String,
    },

    /// The network-status annotation cannot be read.
    #[error("{NETWORK_STATUS_ANNOTATION}: {problem}; {fix}")]
    Status { problem: String, fix: String },
}

impl MultusError {
    /// Names the pod in a [`MultusError::Selection`] error (other variants
    /// already name it).
    pub fn with_pod(self, namespace: &str, name: &str) -> MultusError {
        match self {
            MultusError::Selection {
                entry,
                text,
                problem,
                fix,
                ..
            } => MultusError::Selection {
                pod: Some(format!("{namespace}/{name}")),
                entry,
                text,
                problem,
                fix,
            },
            other => other,
        }
    }
}

fn pod_prefix(pod: &Option<String>) -> String {
    pod.as_ref()
        .map(|p| format!("pod {p}: "))
        .unwrap_or_default()
}

fn entry_prefix(entry: &Option<usize>, text: &str) -> String {
    match entry {
        Some(n) if text.is_empty() => format!("entry {n}: "),
        Some(n) => format!("entry {n} {text}: "),
        None => String::new(),
    }
}

fn no_device_detail(resource: &str, allocated: usize, needed: usize) -> String {
    if allocated == 0 {
        format!(
            "the pod requests no {resource}; add \"{resource}: 1\" to the container's resources.limits"
        )
    } else {
        format!(
            "the pod was allocated {allocated} and {needed} of its networks use {resource}; raise {resource} in resources.limits to {needed}"
        )
    }
}
