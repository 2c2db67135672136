//! The `bare` cluster: a real Kubernetes (etcd, kube-apiserver, controller-manager,
//! scheduler, a containerd and a kubelet per node) brought up from release binaries
//! on the netns provider's topology, offline, and removed without a trace.

pub mod cgroup;
pub mod cluster;
pub mod control_plane;
pub mod kubeconfig;
pub mod multus;
pub mod node;
pub mod pki;
pub mod plan;
pub mod process;
pub mod view;

pub use cluster::{BareCluster, BareError, BareOptions, Timings, leftovers, sweep};

#[cfg(test)]
mod tests;
