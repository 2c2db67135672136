//! The fabric: a namespace with a bridge standing in for the LAN the node uplinks
//! are plugged into, with the gateway's address and a DHCP server.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::NetnsError;
use crate::cluster::topology::Topology;
use crate::lab::enter::Enter;
use crate::lab::{CommandError, Lab, Ns};

pub const BRIDGE: &str = "br0";
/// The LAN router's link-local address, the source of its advertisements.
const ROUTER_LINK_LOCAL: &str = "fe80::1/64";

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
    if let Some(gw6) = topo.fabric.gateway6 {
        // nodad: the gateway answers at once; the LAN is ours. Its link-local
        // address too, fixed: the kernel's own would be tentative for a second after
        // the first port's carrier, and dnsmasq's advertisements meanwhile come from
        // the global address, which hosts must drop (RFC 4861 §6.1.2).
        let gw6 = format!("{gw6}/64");
        lab.ip(&fabric, &["link", "set", BRIDGE, "addrgenmode", "none"])?;
        lab.ip(
            &fabric,
            &["addr", "add", ROUTER_LINK_LOCAL, "dev", BRIDGE, "nodad"],
        )?;
        lab.ip(&fabric, &["addr", "add", &gw6, "dev", BRIDGE, "nodad"])?;
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
    let mut cmd = Command::new("dnsmasq");
    cmd.args(dhcp_args(topo, run_dir)?)
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

/// dnsmasq's arguments as the LAN's DHCP server (and IPv6 router advertiser) on the
/// fabric bridge, in the foreground, its leases and log under `run_dir`.
pub fn dhcp_args(topo: &Topology, run_dir: &Path) -> Result<Vec<String>, NetnsError> {
    let Some([first, last]) = topo.fabric.dhcp_range else {
        return Err(NetnsError::NoDhcpRange);
    };
    let mut args: Vec<String> = vec![
        "--keep-in-foreground".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--port=0".into(),
        "--bind-interfaces".into(),
        format!("--interface={BRIDGE}"),
        format!("--dhcp-range={first},{last},255.255.255.0,10m"),
        format!("--dhcp-option=3,{}", topo.fabric.gateway),
    ];
    // IPv6: router advertisements of the LAN's /64 (SLAAC, no DHCPv6), sent
    // every few seconds and at once on a router solicitation.
    if let Some(prefix) = topo
        .fabric
        .subnet6
        .as_deref()
        .and_then(|s| s.split_once('/'))
    {
        args.extend([
            "--enable-ra".to_string(),
            format!("--dhcp-range={},ra-only,64,10m", prefix.0),
            format!("--ra-param={BRIDGE},4,600"),
        ]);
    }
    args.extend([
        format!(
            "--dhcp-leasefile={}",
            run_dir.join("dnsmasq.leases").display()
        ),
        "--pid-file".into(),
        "--log-dhcp".into(),
        // dnsmasq pings an address before offering it (seconds); the LAN is ours.
        "--no-ping".into(),
        format!("--log-facility={}", run_dir.join("dnsmasq.log").display()),
    ]);
    Ok(args)
}
