//! secnet's macvtap CNI plugin: a drop-in replacement for kubevirt/macvtap-cni's CNI.
//!
//! With a `deviceID` the host-side macvtap was created by the device plugin at
//! Allocate time and this plugin moves it into the pod. With `master` and no deviceID
//! (standalone mode) the plugin creates the macvtap itself. In device mode it first
//! asks the kubelet whether the deviceID belongs to the pod ([`allocation`]).
//!
//! The package also has `install-cni` ([`install`]), the image's shell-less install
//! step.

pub mod allocation;
pub mod config;
pub mod install;
pub mod plugin;
