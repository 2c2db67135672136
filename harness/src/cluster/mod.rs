//! The providers of the `Cluster` contract (`crate::contract`, re-exported here
//! under its old paths). The netns provider is the built-in one; the kube
//! providers implement the same trait against a real API server.

pub mod any;
pub mod bare;
pub mod kube;
pub mod netns;
pub mod probe;
pub mod provider;

// The contract lives below the providers and the guests (`vm` uses it, the
// providers use `vm`): one module of its own, so no circle runs through here.
pub use crate::contract::{
    Blame, Cluster, ClusterError, DynCluster, ExecOutput, NodeResources, PodView, ability,
    api_text, capability, topology, wait, wait_allocatable,
};
