//! After every scenario, on every provider: no two live attachments share a MAC
//! or an IP address within a network (duplicates are what users find only at
//! scale: ovs-cni 206, whereabouts 176 and 207). Read from the cluster's
//! snapshot (the pods' interfaces with their network, MAC and addresses), so a
//! provider needs nothing beyond what the report already draws.

use std::collections::BTreeMap;

use super::{Ctx, Outcome, fail};
use crate::cluster::any::AnyCluster;
use crate::observe::Topology;

/// Takes the cluster's snapshot, records it for the report and checks it.
pub async fn record_and_check(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let snapshot = cluster.snapshot().await;
    let verdict = check(&snapshot);
    ctx.observed.topology(snapshot);
    verdict
}

/// Every MAC and IP shared by two attachments of one network in `topology`.
pub fn duplicates(topology: &Topology) -> Vec<String> {
    // (network, "MAC"/"IP", value) → the attachments that have it.
    let mut seen: BTreeMap<(String, &str, String), Vec<String>> = BTreeMap::new();
    for w in topology.workloads.iter().filter(|w| w.kind == "pod") {
        for i in w.interfaces.iter().filter(|i| !i.network.is_empty()) {
            let who = format!("{}/{}", w.name, i.name);
            if let Some(mac) = i.mac.as_ref().filter(|m| !m.is_empty()) {
                seen.entry((i.network.clone(), "MAC", mac.to_ascii_lowercase()))
                    .or_default()
                    .push(who.clone());
            }
            for ip in &i.ips {
                let addr = ip.split('/').next().unwrap_or(ip);
                // Link-local addresses are per link by design.
                if addr.starts_with("fe80:") || addr.starts_with("169.254.") {
                    continue;
                }
                seen.entry((i.network.clone(), "IP", addr.to_string()))
                    .or_default()
                    .push(who.clone());
            }
        }
    }
    seen.into_iter()
        .filter(|(_, who)| who.len() > 1)
        .map(|((network, what, value), who)| {
            format!(
                "{what} {value} on network {network} is used by {}",
                who.join(" and ")
            )
        })
        .collect()
}

/// Fails when two live attachments of a network share a MAC or an IP.
pub fn check(topology: &Topology) -> Outcome {
    let dup = duplicates(topology);
    if dup.is_empty() {
        Ok(())
    } else {
        fail(format!(
            "uniqueness: {}; every attachment of a network needs its own MAC and addresses (check the IPAM ranges and requested MACs)",
            dup.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{InterfaceSnap, WorkloadSnap};

    fn pod(name: &str, ifaces: &[(&str, &str, &str, &[&str])]) -> WorkloadSnap {
        WorkloadSnap {
            name: name.into(),
            kind: "pod".into(),
            node: "node1".into(),
            interfaces: ifaces
                .iter()
                .map(|(ifname, network, mac, ips)| InterfaceSnap {
                    name: ifname.to_string(),
                    network: network.to_string(),
                    mac: Some(mac.to_string()),
                    ips: ips.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn duplicates_within_a_network_only() {
        let topo = Topology {
            workloads: vec![
                pod(
                    "a",
                    &[(
                        "net1",
                        "default/n",
                        "02:00:00:00:00:01",
                        &["10.1.1.5/24", "fe80::1/64"],
                    )],
                ),
                pod(
                    "b",
                    &[(
                        "net1",
                        "default/n",
                        "02:00:00:00:00:02",
                        &["10.1.1.6/24", "fe80::1/64"],
                    )],
                ),
                // The same address on another network is fine.
                pod(
                    "c",
                    &[("net1", "default/m", "02:00:00:00:00:03", &["10.1.1.5/24"])],
                ),
            ],
            ..Default::default()
        };
        assert!(check(&topo).is_ok());

        let mut bad = topo.clone();
        bad.workloads.push(pod(
            "d",
            &[("net2", "default/n", "02:00:00:00:00:01", &["10.1.1.6"])],
        ));
        let dup = duplicates(&bad);
        assert_eq!(dup.len(), 2, "{dup:?}");
        assert!(
            dup[0].contains("IP 10.1.1.6 on network default/n is used by b/net1 and d/net2"),
            "{dup:?}"
        );
        assert!(dup[1].contains("MAC 02:00:00:00:00:01"), "{dup:?}");
        // VMs' guest NICs repeat their pod's MAC by design: not counted.
        let mut vm = topo;
        let mut guest = pod("vm", &[("eth0", "default/n", "02:00:00:00:00:01", &[])]);
        guest.kind = "vm".into();
        vm.workloads.push(guest);
        assert!(check(&vm).is_ok());
    }
}
