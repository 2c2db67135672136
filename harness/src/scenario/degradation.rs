//! Silent degradation: the failure users report most is a pod that is Running
//! without a secondary NIC it asked for (multus-cni 1387 and 1527, CNAO 1810).
//! The invariant checked here: every network a pod selects is in its
//! network-status and in its sandbox, host-local leases and device-plugin
//! allocations match the pods that exist. A scenario restarts kubelet while pods
//! are being created, checks the invariant, then drops one attachment on
//! purpose and requires the check to catch it.

use serde_json::json;
use std::collections::BTreeMap;

use super::kit::{self, DATAPLANE, fixture_pod, named};
use super::{Capability, Ctx, Failure, Outcome, Scenario, fail};
use crate::cluster::any::AnyCluster;
use crate::cluster::{Cluster, PodView};
use crate::multus::{NETWORKS_ANNOTATION, parse_networks};
use crate::objects::{Meta, NadSpec, NetworkAttachmentDefinition, Object};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::on_cluster(
            "fault/kubelet restart while pods start: no pod runs without its networks",
            "macvtap",
            "pod",
            &["fault", "network-status", "capacity", "ipam"],
            |ctx, c| Box::pin(kubelet_restart_keeps_every_network(ctx, c)),
        )
        .needs(&[Capability::NodeFaults, Capability::NodeAccess])
        .deploy_macvtap_seed(),
    ]
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
    Ok(missing)
}

/// Fails naming every live pod that lacks a network it asked for.
pub async fn every_network_present(c: &AnyCluster, pods: &[PodView]) -> Outcome {
    let mut problems = Vec::new();
    for p in pods {
        for m in missing_networks(c, p).await? {
            problems.push(format!("pod {} runs without {m}", p.name));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        fail(problems.join("; "))
    }
}

const MACVLAN_NAD: &str = "deg-macvlan";

async fn kubelet_restart_keeps_every_network(ctx: &Ctx, c: &AnyCluster) -> Outcome {
    let node = c
        .nodes()
        .into_iter()
        .next()
        .ok_or_else(|| Failure::msg("no node"))?;
    let lease_dir = c
        .local_topology()
        .map(|_| ctx.work_dir.join(format!("ipam-{}-deg", ctx.scope)));
    let mut ipam = json!({"type": "host-local", "ranges": [[{"subnet": "10.253.0.0/24"}]]});
    if let Some(dir) = &lease_dir {
        ipam["dataDir"] = json!(dir.display().to_string());
    }
    let config = json!({"cniVersion": "1.0.0", "type": "macvlan", "master": c.lower_device(),
                        "mode": "bridge", "ipam": ipam});
    c.apply(vec![Object::Nad(NetworkAttachmentDefinition {
        metadata: Meta {
            name: MACVLAN_NAD.into(),
            namespace: "default".into(),
            ..Default::default()
        },
        spec: NadSpec {
            config: config.to_string(),
        },
    })])
    .await?;
    let mut base = fixture_pod(ctx, "seed/macvtap-pod.yaml")?;
    base.metadata.annotations.insert(
        NETWORKS_ANNOTATION.into(),
        format!("dataplane,{MACVLAN_NAD}"),
    );
    let mut pods = Vec::new();
    for i in 0..2 {
        pods.push(
            c.create_pod(named(base.clone(), &format!("deg-{i}"), Some(&node)))
                .await?,
        );
    }
    // Kubelet restarts while two more pods start on that node: each either
    // starts with every network or not at all.
    let starting = async {
        let mut out = Vec::new();
        for i in 2..4 {
            out.push(
                c.create_pod(named(base.clone(), &format!("deg-{i}"), Some(&node)))
                    .await,
            );
        }
        out
    };
    let (restarted, started) = tokio::join!(c.restart_kubelet(&node), starting);
    restarted?;
    let refused: Vec<String> = started
        .into_iter()
        .filter_map(|r| match r {
            Ok(p) => {
                pods.push(p);
                None
            }
            Err(e) => Some(e.to_string()),
        })
        .collect();
    if !refused.is_empty() {
        ctx.observed.note(&format!(
            "started during the kubelet restart and refused (not running): {}",
            refused.join("; ")
        ));
    }
    every_network_present(c, &pods).await?;
    leases_match(lease_dir.as_deref(), &pods)?;
    devices_match(c, &pods).await?;

    // The deliberately broken variant: one attachment silently gone.
    let victim = &pods[0];
    // From the node where it can: a real cluster's pod (busybox, no NET_ADMIN)
    // may not delete its own links.
    if c.offers(Capability::NodeAccess) {
        c.pod_ip(victim, &["link", "del", "net2"]).await?;
    } else {
        kit::pod_run(c, victim, &["ip", "link", "del", "net2"]).await?;
    }
    let caught = missing_networks(c, victim).await?;
    if !caught.iter().any(|m| m.starts_with("net2 ")) {
        return fail(format!(
            "{}'s net2 was deleted but the check saw nothing missing ({caught:?}): it cannot catch a dropped attachment",
            victim.name
        ));
    }
    ctx.observed
        .note(&format!("dropped attachment caught: {}", caught.join("; ")));
    Ok(())
}

/// host-local's leases of the macvlan network are exactly the pods' addresses.
fn leases_match(dir: Option<&std::path::Path>, pods: &[PodView]) -> Outcome {
    let Some(dir) = dir else {
        return Ok(());
    };
    let mut leased: Vec<String> = std::fs::read_dir(dir.join(MACVLAN_NAD))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    let mut live = Vec::new();
    for p in pods {
        live.extend(kit::status_of(p, &format!("default/{MACVLAN_NAD}"))?.ips);
    }
    leased.sort();
    live.sort();
    if leased == live {
        Ok(())
    } else {
        fail(format!(
            "host-local leases {leased:?} of {MACVLAN_NAD} do not match the live pods' addresses {live:?}"
        ))
    }
}

/// Every pod holds one device of the seed's resource, none shared.
async fn devices_match(c: &AnyCluster, pods: &[PodView]) -> Outcome {
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for p in pods {
        let devices = c.pod_devices(p).await?;
        let ids = devices.get(DATAPLANE).cloned().unwrap_or_default();
        if ids.len() != 1 {
            return fail(format!(
                "pod {} holds {ids:?} of {DATAPLANE}, not one device",
                p.name
            ));
        }
        if let Some(other) = owner.insert(ids[0].clone(), p.name.clone()) {
            return fail(format!(
                "device {} is allocated to both {other} and {}",
                ids[0], p.name
            ));
        }
    }
    Ok(())
}
