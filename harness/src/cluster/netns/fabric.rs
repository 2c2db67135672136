//! The fabric: a namespace with a bridge standing in for the LAN the node uplinks
//! are plugged into, with the gateway's address and a DHCP server.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::NetnsError;
use crate::cluster::topology::Topology;
use crate::lab::enter::Enter;
use crate::lab::{CommandError, Lab, Ns};

pub const BRIDGE: &str = "br0";

pub fn up(lab: &mut Lab, topo: &Topology) -> Result<Ns, NetnsError> {
    let fabric = lab.netns("fabric")?;
    let gw = format!("{}/24", topo.fabric.gateway);
    for args in [
        vec!["link", "add", BRIDGE, "type", "bridge"],
        vec!["link", "set", BRIDGE, "up"],
        vec!["addr", "add", gw.as_str(), "dev", BRIDGE],
    ] {
        lab.ip(&fabric, &args)?;
    }
    Ok(fabric)
}

/// Plugs a node in: `uplink` in the node, its peer `port` on the fabric bridge.
pub fn plug(
    lab: &Lab,
    fabric: &Ns,
    node: &Ns,
    uplink: &str,
    port: &str,
) -> Result<(), CommandError> {
    lab.veth(node, uplink, fabric, port)?;
    lab.ip(fabric, &["link", "set", port, "master", BRIDGE])?;
    Ok(())
}

/// Starts dnsmasq as the LAN's DHCP server (no DNS) inside the fabric namespace.
pub fn start_dhcp(fabric: &Ns, topo: &Topology, run_dir: &Path) -> Result<Child, NetnsError> {
    let Some([first, last]) = topo.fabric.dhcp_range else {
        return Err(NetnsError::NoDhcpRange);
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
    Enter::net(fabric.path())
        .and_then(|enter| enter.apply_std(&mut cmd))
        .map_err(|e| NetnsError::io("open", &fabric.path(), e))?;
    crate::lab::command::own_group(&mut cmd)
        .spawn()
        .map_err(|source| NetnsError::Daemon {
            program: "dnsmasq".into(),
            install: "apt-get install dnsmasq-base",
            source,
        })
}
