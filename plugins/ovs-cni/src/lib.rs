//! secnet's OVS CNI plugin: a drop-in replacement for k8snetworkplumbingwg/ovs-cni's
//! common configuration (`bridge`, `vlan`, `trunk`, `mtu`, `socket_file`, `ipam`).
//!
//! The pod gets one end of a veth pair; the host end (`veth<8 hex>`) becomes an
//! access or trunk port of the bridge. The plugin talks to ovsdb-server itself
//! (OVSDB JSON-RPC, RFC 7047) over its Unix socket: one `transact` inserts the
//! Interface and Port and adds the Port to the bridge.

pub mod bridge;
pub mod cache;
pub mod config;
pub mod ipam;
pub mod ovsdb;
pub mod plugin;
