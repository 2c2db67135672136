//! The fabric: a namespace with a bridge standing in for the LAN the node uplinks
//! are plugged into, with the gateway's address and a DHCP server.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::topology::Topology;
use crate::lab::enter::Enter;
use crate::lab::{Lab, Ns};

pub const BRIDGE: &str = "br0";

pub fn up(lab: &mut Lab, topo: &Topology) -> Result<Ns, String> {
    let fabric = lab.netns("fabric").map_err(|e| e.to_string())?;
    let gw = format!("{}/24", topo.fabric.gateway);
    for args in [
        vec!["link", "add", BRIDGE, "type", "bridge"],
        vec!["link", "set", BRIDGE, "up"],
        vec!["addr", "add", gw.as_str(), "dev", BRIDGE],
    ] {
        lab.ip(&fabric, &args).map_err(|e| e.to_string())?;
    }
    Ok(fabric)
}

/// Plugs a node in: `uplink` in the node, its peer `port` on the fabric bridge.
pub fn plug(lab: &Lab, fabric: &Ns, node: &Ns, uplink: &str, port: &str) -> Result<(), String> {
    lab.veth(node, uplink, fabric, port)
        .map_err(|e| e.to_string())?;
    lab.ip(fabric, &["link", "set", port, "master", BRIDGE])
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Starts dnsmasq as the LAN's DHCP server (no DNS) inside the fabric namespace.
pub fn start_dhcp(fabric: &Ns, topo: &Topology, run_dir: &Path) -> Result<Child, String> {
    let Some([first, last]) = topo.fabric.dhcp_range else {
        return Err("the topology has no fabric.dhcpRange".into());
    };
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--port=0",
        "--bind-interfaces",
        &format!("--interface={BRIDGE}"),
        &format!("--dhcp-range={first},{last},255.255.255.0,10m"),
        &format!("--dhcp-option=3,{}", topo.fabric.gateway),
        &format!(
            "--dhcp-leasefile={}",
            run_dir.join("dnsmasq.leases").display()
        ),
        "--pid-file",
        "--log-dhcp",
        // dnsmasq pings an address before offering it (seconds); the LAN is ours.
        "--no-ping",
        &format!("--log-facility={}", run_dir.join("dnsmasq.log").display()),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let enter = Enter::net(fabric.path())
        .map_err(|e| format!("failed to open {}: {e}", fabric.path_str()))?;
    enter.apply_std(&mut cmd).map_err(|e| e.to_string())?;
    crate::lab::command::own_group(&mut cmd)
        .spawn()
        .map_err(|e| format!("failed to start dnsmasq (apt-get install dnsmasq-base): {e}"))
}
