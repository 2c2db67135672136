//! Open vSwitch on a bare run's nodes, as the netns tier runs it (`netns::ovs`):
//! userspace ovsdb-server and ovs-vswitchd in each node's network namespace, bridge
//! `br1` with a second uplink into the LAN as its trunk. Their directory backs the
//! node's `/run/openvswitch`, so the ovs CNI (run by the node's containerd through
//! multus, in the node's mount view) finds `db.sock` at its default path. The
//! daemons join the run's cgroup: the sweep stops them with everything else.

use std::path::PathBuf;

use super::node::backing;
use super::plan::NodePlan;
use crate::cluster::netns::fabric;
use crate::cluster::netns::ovs::{BRIDGE, Ovs, UPLINK};
use crate::lab::enter::Enter;
use crate::lab::{Lab, Ns};

/// The node path the daemons' directory backs (`/var/run` is `/run` on Debian).
pub const RUN_DIR: &str = "/run/openvswitch";

/// ovsdb-server's socket of `node`, a path on this machine.
pub fn socket(node: &NodePlan) -> PathBuf {
    backing(node, RUN_DIR).join("db.sock")
}

/// OVS on every node: the trunk uplink plugged into the fabric, the daemons, `br1`.
pub fn up(
    lab: &Lab,
    fabric_ns: &Ns,
    run_cgroup: &str,
    nodes: &[(NodePlan, Ns)],
) -> Result<Vec<Ovs>, OvsUpError> {
    let cgroup = format!("{run_cgroup}/ovs");
    super::cgroup::create(&cgroup).map_err(|e| fail("", "its cgroup", e))?;
    let mut started = Vec::new();
    for (i, (node, ns)) in nodes.iter().enumerate() {
        let name = node.name.as_str();
        fabric::plug(lab, fabric_ns, ns, UPLINK, &format!("oport{i}"))
            .map_err(|e| fail(name, "plugging its trunk uplink", e))?;
        let enter = Enter::net(ns.path()).map_err(|e| fail(name, "entering the node", e))?;
        let ovs = Ovs::start(&enter, &backing(node, RUN_DIR))
            .map_err(|e| fail(name, "starting ovsdb-server and ovs-vswitchd", e))?;
        join(&cgroup, &ovs)
            .map_err(|e| fail(name, "moving the daemons into the run's cgroup", e))?;
        ovs.add_bridge(BRIDGE)
            .and_then(|()| ovs.add_trunk_port(BRIDGE, UPLINK))
            .map_err(|e| fail(name, "making br1", e))?;
        switch_ports_only(ns)
            .map_err(|e| fail(name, "turning IPv6 off on br1 and its trunk", e))?;
        started.push(ovs);
    }
    Ok(started)
}

/// No IPv6 on the bridge and its trunk: they switch the pods' frames and are no
/// interfaces of the node. Else the LAN's router advertisements (a DHCP scenario's
/// dnsmasq) give them addresses that outlive the scenario, and the ovs CNI's policy
/// then reads br1 as carrying the node's own traffic.
fn switch_ports_only(ns: &Ns) -> Result<(), crate::lab::CommandError> {
    let path = format!("--net={}", ns.path().display());
    let mut args = vec![path.as_str(), "--", "sysctl", "-qw"];
    let keys: Vec<String> = [UPLINK, BRIDGE]
        .iter()
        .map(|link| format!("net.ipv6.conf.{link}.disable_ipv6=1"))
        .collect();
    args.extend(keys.iter().map(String::as_str));
    crate::lab::run("nsenter", &args, std::time::Duration::from_secs(10)).map(|_| ())
}

/// Moves the running daemons into `cgroup` in every hierarchy.
fn join(cgroup: &str, ovs: &Ovs) -> std::io::Result<()> {
    for file in super::cgroup::procs_files(cgroup) {
        let path = PathBuf::from(file.to_string_lossy().into_owned());
        for pid in ovs.pids() {
            std::fs::write(&path, pid.to_string())?;
        }
    }
    Ok(())
}

/// What stopped Open vSwitch coming up on a node (the cluster reports it as an
/// add-on's failure).
#[derive(Debug, thiserror::Error)]
#[error("Open vSwitch on node {node}: {what}: {cause}")]
pub struct OvsUpError {
    node: String,
    what: &'static str,
    cause: String,
}

fn fail(node: &str, what: &'static str, e: impl std::fmt::Display) -> OvsUpError {
    OvsUpError {
        node: node.into(),
        what,
        cause: e.to_string(),
    }
}
