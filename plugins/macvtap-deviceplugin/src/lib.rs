//! secnet's macvtap device plugin: a drop-in replacement for kubevirt/macvtap-cni's
//! device plugin. Each configured resource `macvtap.network.kubevirt.io/<name>` is
//! served on its own socket in the kubelet's device-plugin directory; Allocate
//! creates the macvtap on the lower device and hands out its `/dev/tapN`.

pub mod allocate;
pub mod config;
pub mod links;
pub mod plugin;
pub mod service;
pub mod supervisor;
pub mod upstream_args;
