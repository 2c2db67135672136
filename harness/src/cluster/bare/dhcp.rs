//! The LAN's DHCP server on a bare run: the netns tier's dnsmasq (leases, IPv6
//! router advertisements) in the fabric namespace, in the run's cgroup so that the
//! sweep stops it with everything else; its files under the run's `bare/` directory.

use super::cluster::BareError;
use super::plan::{Plan, Process};
use super::process::{Daemon, Placement};
use crate::cluster::netns::fabric;
use crate::cluster::netns::topology::Topology;
use crate::lab::Ns;
use crate::lab::enter::Enter;

/// Starts dnsmasq on the fabric bridge of `fabric_ns`.
pub fn start(plan: &Plan, topology: &Topology, fabric_ns: &Ns) -> Result<Daemon, BareError> {
    let fail =
        |what: &str, e: String| BareError::Addon(format!("the LAN's DHCP server: {what}: {e}"));
    let program = crate::prereq::find_program("dnsmasq").ok_or_else(|| BareError::Missing {
        what: "program",
        path: "dnsmasq".into(),
        fix: "apt-get install dnsmasq-base",
    })?;
    let args =
        fabric::dhcp_args(topology, &plan.dir).map_err(|e| fail("arguments", e.to_string()))?;
    let cgroup = format!("{}/fabric", plan.cgroup);
    super::cgroup::create(&cgroup).map_err(|e| fail("its cgroup", e.to_string()))?;
    let enter =
        Enter::net(fabric_ns.path()).map_err(|e| fail("entering the fabric", e.to_string()))?;
    let process = Process {
        name: "dnsmasq".into(),
        program,
        args,
        log: plan.dir.join("dnsmasq.out"),
    };
    Daemon::spawn(
        &process,
        Placement {
            enter: Some(&enter),
            cgroup: Some(&cgroup),
        },
    )
    .map_err(|e| fail("starting it", e.to_string()))
}
