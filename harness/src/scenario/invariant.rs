//! The invariant of silent degradation (multus-cni 1387 and 1527, CNAO 1810: a
//! pod Running without a secondary NIC it asked for), one check for every
//! degradation scenario: every network a live pod selects is in its
//! network-status and its sandbox has the link; no OVS port outlives its pod;
//! IPAM leases and device allocations are exactly the live pods'.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::kit;
use super::{Failure, Outcome, fail};
use crate::cluster::any::AnyCluster;
use crate::cluster::{Cluster, PodView};
use crate::multus::{NETWORKS_ANNOTATION, parse_networks};

/// What the cluster must look like: the pods that exist and where to look.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The pods that exist now (every other pod of the scenario is gone).
    pub(crate) live: Vec<PodView>,
    /// Networks (`ns/name`) whose attachments are ports of the nodes' OVS bridge.
    pub(crate) ovs_networks: Vec<String>,
    /// host-local networks (`ns/name`) and the dataDir of their leases on this
    /// machine (the NAD's `ipam.dataDir` + the network's name).
    pub(crate) host_local: Vec<(String, PathBuf)>,
    /// Device-plugin resources whose allocations on every node must be the live
    /// pods' devices.
    pub(crate) resources: Vec<String>,
    /// Also hold the pod network's (eth0) leases on every node to the live pods'
    /// eth0 addresses (the scenario's cluster runs no other pods).
    pub(crate) pod_network_leases: bool,
}

/// What a pod asked for and does not have: one line per missing attachment
/// (`net2 (default/x): not in network-status`, `… : no such link in the pod`).
pub async fn missing_networks(c: &AnyCluster, pod: &PodView) -> Result<Vec<String>, Failure> {
    let annotation = pod
        .annotations
        .get(NETWORKS_ANNOTATION)
        .map(String::as_str)
        .unwrap_or("");
    let selections = parse_networks(annotation, &pod.namespace)?;
    let status = kit::network_status(pod)?;
    let mut missing = Vec::new();
    for (i, sel) in selections.iter().enumerate() {
        let ifname = sel
            .interface
            .clone()
            .unwrap_or_else(|| format!("net{}", i + 1));
        let network = sel.network();
        let listed = status
            .iter()
            .any(|s| s.name == network && s.interface.as_deref() == Some(ifname.as_str()));
        if !listed {
            missing.push(format!("{ifname} ({network}): not in network-status"));
        } else if kit::pod_iface(c, pod, &ifname).await.is_err() {
            missing.push(format!("{ifname} ({network}): no such link in the pod"));
        }
    }
    if !status.iter().any(|s| s.default) {
        missing.push("the default network: no default entry in network-status".into());
    }
    Ok(missing)
}

/// Fails naming every broken part of the invariant at once.
pub async fn check(c: &AnyCluster, e: &Expect) -> Outcome {
    let mut problems = Vec::new();
    for p in &e.live {
        for m in missing_networks(c, p).await? {
            problems.push(format!("pod {} runs without {m}", p.name));
        }
    }
    problems.extend(ovs_ports(c, e).await?);
    problems.extend(host_local_leases(e)?);
    if e.pod_network_leases {
        problems.extend(pod_network_leases(c, e).await?);
    }
    problems.extend(devices(c, e).await?);
    if problems.is_empty() {
        Ok(())
    } else {
        fail(format!("degradation invariant: {}", problems.join("; ")))
    }
}

/// The live pods on `node`.
fn on<'a>(e: &'a Expect, node: &'a str) -> impl Iterator<Item = &'a PodView> + 'a {
    e.live.iter().filter(move |p| p.node == node)
}

/// Every node's OVS bridge has one port per live OVS attachment on it, besides its
/// own trunk into the LAN.
async fn ovs_ports(c: &AnyCluster, e: &Expect) -> Result<Vec<String>, Failure> {
    if c.ovs().is_err() {
        return Ok(Vec::new());
    }
    let mut problems = Vec::new();
    for facts in c.node_facts() {
        let Some(o) = facts.ovs else { continue };
        let ports = c.ovs_pod_ports(&facts.name, &o.bridge).await?;
        let mut attachments = 0;
        for p in on(e, &facts.name) {
            attachments += kit::network_status(p)?
                .iter()
                .filter(|s| e.ovs_networks.contains(&s.name))
                .count();
        }
        if ports.len() != attachments {
            problems.push(format!(
                "OVS bridge {} on {} has {} pod ports {ports:?} but the live pods there have {attachments} OVS attachments{}",
                o.bridge,
                facts.name,
                ports.len(),
                if ports.len() > attachments {
                    ": ports of vanished pods were not purged"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(problems)
}

/// Whether network-status entry `listed` of a pod in `pod_ns` is the scenario's
/// `network`: a fixture's `default/X` is the NAD `X` of the pod's own namespace
/// where a real cluster runs the scenario's pods and NADs in the run's namespace.
fn same_network(network: &str, listed: &str, pod_ns: &str) -> bool {
    listed == network
        || network
            .strip_prefix("default/")
            .is_some_and(|name| listed == format!("{pod_ns}/{name}"))
}

/// host-local's leases of each network are exactly the live pods' addresses on it.
fn host_local_leases(e: &Expect) -> Result<Vec<String>, Failure> {
    let mut problems = Vec::new();
    for (network, dir) in &e.host_local {
        let mut leased = lease_files(dir)?;
        let mut live = Vec::new();
        for p in &e.live {
            for s in kit::network_status(p)?
                .iter()
                .filter(|s| same_network(network, &s.name, &p.namespace))
            {
                live.extend(s.ips.iter().cloned());
            }
        }
        leased.sort();
        live.sort();
        if leased != live {
            problems.push(format!(
                "host-local leases {leased:?} of {network} are not the live pods' addresses {live:?}"
            ));
        }
    }
    Ok(problems)
}

/// The addresses leased in a host-local dataDir (one file per address).
fn lease_files(dir: &std::path::Path) -> Result<Vec<String>, Failure> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => fail(format!(
            "reading host-local leases in {}: {err}",
            dir.display()
        )),
    }
}

/// The pod network's leases on every node are the live pods' eth0 addresses.
async fn pod_network_leases(c: &AnyCluster, e: &Expect) -> Result<Vec<String>, Failure> {
    let access = c.node_access()?;
    let mut problems = Vec::new();
    for node in c.nodes() {
        let mut leased = access.pod_network_leases(&node).await?;
        let mut live = Vec::new();
        for p in on(e, &node) {
            for s in kit::network_status(p)?.iter().filter(|s| s.default) {
                live.extend(s.ips.iter().cloned());
            }
        }
        leased.sort();
        live.sort();
        if leased != live {
            problems.push(format!(
                "the pod network's leases on {node} {leased:?} are not the live pods' eth0 addresses {live:?}"
            ));
        }
    }
    Ok(problems)
}

/// Each node's allocated devices are the live pods' there, and no device is
/// held by two pods.
async fn devices(c: &AnyCluster, e: &Expect) -> Result<Vec<String>, Failure> {
    let mut problems = Vec::new();
    let mut owner: BTreeMap<(String, String), String> = BTreeMap::new();
    for node in c.nodes() {
        let allocated = c.node_resources(&node).await?.allocated;
        for resource in &e.resources {
            let mut held = 0;
            for p in on(e, &node) {
                let ids = c.pod_devices(p).await?.remove(resource).unwrap_or_default();
                held += ids.len();
                for id in ids {
                    if let Some(other) =
                        owner.insert((resource.clone(), id.clone()), p.name.clone())
                    {
                        problems.push(format!(
                            "device {id} of {resource} is held by both {other} and {}",
                            p.name
                        ));
                    }
                }
            }
            let counted = allocated.get(resource).copied().unwrap_or(0) as usize;
            if counted != held {
                problems.push(format!(
                    "{node} has {counted} devices of {resource} allocated but its live pods hold {held}{}",
                    if counted > held {
                        ": allocations of vanished pods were not released"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multus::NETWORK_STATUS_ANNOTATION;

    fn pod(name: &str, status: &str) -> PodView {
        PodView {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            node: "node1".into(),
            annotations: [(NETWORK_STATUS_ANNOTATION.to_string(), status.to_string())].into(),
            devices: Default::default(),
        }
    }

    #[test]
    fn a_fixture_default_network_is_the_pods_own_namespace_one() {
        assert!(same_network("default/n", "default/n", "default"));
        assert!(same_network("default/n", "secnet-sn1/n", "secnet-sn1"));
        assert!(!same_network("default/n", "other/n", "secnet-sn1"));
        assert!(!same_network("tenant/n", "secnet-sn1/n", "secnet-sn1"));
    }

    #[test]
    fn a_lease_no_live_pod_holds_is_named() {
        let dir = crate::lab::ScratchDir::new("secnet-invariant-leases").unwrap();
        for f in ["10.9.0.5", "10.9.0.6", "lock", "last_reserved_ip.0"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let live = pod(
            "a",
            r#"[{"name":"secnet-pod-network","interface":"eth0","ips":["10.244.0.2"],"default":true},
                {"name":"default/n","interface":"net1","ips":["10.9.0.5"]}]"#,
        );
        let mut expect = Expect {
            live: vec![live],
            host_local: vec![("default/n".into(), dir.path().to_path_buf())],
            ..Default::default()
        };
        let problems = host_local_leases(&expect).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(r#"["10.9.0.5", "10.9.0.6"] of default/n"#)
                && problems[0].contains(r#"addresses ["10.9.0.5"]"#),
            "{problems:?}"
        );
        std::fs::remove_file(dir.path().join("10.9.0.6")).unwrap();
        assert_eq!(host_local_leases(&expect).unwrap(), Vec::<String>::new());
        // The pod gone: its lease left over is named too.
        expect.live.clear();
        assert_eq!(host_local_leases(&expect).unwrap().len(), 1);
    }
}
