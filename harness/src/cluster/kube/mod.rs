//! Real-cluster providers: `KubeCluster` implements the `Cluster` contract against a
//! Kubernetes API server (`kube::Client`); `existing` connects to a kubeconfig's
//! cluster, `kind` brings one up with kind. `components` are the pinned component
//! sets (multus, macvtap, Open vSwitch, ovs-cni, KubeVirt, CNAO) applied onto them;
//! `openvswitch` reads the nodes' bridges through the Open vSwitch pods; `command` runs
//! the programs both need (kind, the container engine, curl); `sweep` is
//! `secnet clean` for real clusters.
//!
//! Built to the upstream APIs and tested against a mocked API server and snapshots
//! (no cluster on the development machines): see docs/real-clusters.md.

pub mod apply;
pub mod checksum;
pub mod cluster;
pub mod command;
pub mod components;
pub mod existing;
pub mod kind;
pub mod openvswitch;
pub mod sweep;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod fake_http_tests;
#[cfg(test)]
pub(crate) use secnet_testkit::{fake_http, mock};
#[cfg(test)]
mod tests;

pub use cluster::{KubeCluster, KubeOptions, KubevirtGuest, Teardown, base_offer};

/// The label every object of a run carries: teardown deletes by it, nothing else.
pub const RUN_LABEL: &str = "secnet.run";
/// The nodes' macvtap/macvlan lower device when neither `--lower-device` nor an
/// inventory names one: the seed lab's uplink. Every real-cluster option struct
/// (`RealOptions`, `KubeOptions`, `KindOptions`, `ComponentOptions`) defaults to it;
/// a run passes its own value down to all of them.
pub const DEFAULT_LOWER_DEVICE: &str = crate::cluster::topology::DEFAULT_UPLINK;
/// The server-side apply field manager.
pub const FIELD_MANAGER: &str = "secnet";
