//! The `bare` provider's building blocks: a real container runtime per node, fed
//! with images secnet writes itself (no registry), driven through CRI as a kubelet
//! drives it.
//!
//! - [`oci`]: OCI image-layout archives (pause, busybox probe image, plugin image).
//! - [`containerd`]: one node's containerd + runc in the node's network namespace.
//! - [`cri`]: a CRI runtime.v1 client over the runtime's Unix socket.

pub mod containerd;
pub mod cri;
pub mod oci;
pub mod tar;
