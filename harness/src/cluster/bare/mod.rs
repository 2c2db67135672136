//! The `bare` cluster: a real Kubernetes (etcd, kube-apiserver, controller-manager,
//! scheduler, a containerd and a kubelet per node) brought up from release binaries
//! on the netns provider's topology, offline, and removed without a trace.
//!
//! - [`oci`]: OCI image-layout archives (pause, busybox probe image, plugin image).
//! - [`containerd`]: one node's containerd + runc in the node's network namespace.
//! - [`cri`]: a CRI runtime.v1 client over the runtime's Unix socket.
//! - [`pki`], [`kubeconfig`], [`plan`]: certificates, client configs and the
//!   bring-up plan, computed before anything starts.
//! - [`control_plane`], [`node`], [`cluster`]: the processes, namespaces, mount
//!   views and cgroups of one run, and their sweep.

pub mod abilities;
pub mod cgroup;
pub mod cluster;
pub mod containerd;
pub mod control_plane;
pub mod cri;
pub mod dhcp;
pub mod kubeconfig;
pub mod multus;
pub mod node;
pub mod oci;
pub mod ovs;
pub mod pki;
pub mod plan;
pub mod process;
pub mod tar;
pub mod view;

pub use cluster::{BareCluster, BareError, BareOptions, Timings, leftovers, sweep};

#[cfg(test)]
mod tests;
