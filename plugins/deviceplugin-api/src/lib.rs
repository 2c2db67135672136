//! The kubelet device plugin API v1beta1: generated messages and gRPC services
//! (from `proto/api.proto`), its constants, and gRPC over Unix sockets for both
//! sides (the plugin and the kubelet's device manager). Also the kubelet's
//! pod-resources API v1 ([`podresources`]).

pub mod authority;
pub mod hpack;
pub mod peers;
pub mod podresources;
pub mod uds;

/// Generated from `proto/api.proto` (package `v1beta1`).
#[allow(clippy::all, clippy::pedantic)]
pub mod v1beta1 {
    tonic::include_proto!("v1beta1");
}

/// The API version a plugin registers with.
pub const VERSION: &str = "v1beta1";
/// Where the kubelet and the plugins put their sockets.
pub const DEFAULT_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins";
/// The kubelet's Registration socket, inside the plugin directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";
pub const HEALTHY: &str = "Healthy";
pub const UNHEALTHY: &str = "Unhealthy";
