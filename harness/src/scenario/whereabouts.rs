//! whereabouts, the cluster-wide IPAM, where a real API server holds its IPPools
//! (users find its duplicates only at scale: whereabouts 176 and 207). Each
//! scenario has a range of its own on a macvlan network, and holds whereabouts to
//! what its pools say against what the pods got: every live pod's address is
//! allocated to it, nothing else is (addresses of deleted or vanished pods are
//! released), and no address is handed out twice (the runner's uniqueness check
//! after every scenario too).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use super::kit::status_of;
use super::{Capability, Ctx, Failure, Outcome, Scenario, fail};
use crate::cluster::any::AnyCluster;
use crate::cluster::wait::{self, Pace, Seen};
use crate::cluster::{Cluster, ClusterError, PodView};
use crate::objects::{Meta, NadSpec, NetworkAttachmentDefinition, Object, Pod};

pub fn scenarios() -> Vec<Scenario> {
    let labels: &[&str] = &["whereabouts", "ipam", "network-status"];
    vec![
        Scenario::on_cluster(
            "whereabouts/one range, pods on both nodes at once: each its own address, allocated to it",
            "macvlan",
            "pod",
            labels,
            |ctx, c| Box::pin(unique_across_nodes(ctx, c)),
        )
        .needs(&[Capability::Whereabouts])
        // Its NAD, range, pool and pods are its own; no fault, nothing node-wide.
        .shares_nodes(),
        Scenario::on_cluster(
            "whereabouts/a deleted pod's address is released",
            "macvlan",
            "pod",
            labels,
            |ctx, c| Box::pin(released_on_delete(ctx, c)),
        )
        .needs(&[Capability::Whereabouts])
        // As above: it reads only its own range's pool.
        .shares_nodes(),
        Scenario::on_cluster(
            "whereabouts/a node's pods force-deleted: their addresses released, none handed out twice",
            "macvlan",
            "pod",
            &["whereabouts", "ipam", "network-status", "fault"],
            |ctx, c| Box::pin(node_pods_vanish(ctx, c)),
        )
        .needs(&[Capability::Whereabouts]),
        Scenario::on_cluster(
            "whereabouts/kubelet restarted while pods start: the pools hold exactly the live pods",
            "macvlan",
            "pod",
            &["whereabouts", "ipam", "network-status", "fault"],
            |ctx, c| Box::pin(kubelet_restart(ctx, c)),
        )
        .needs(&[Capability::Whereabouts, Capability::NodeFaults]),
    ]
}

/// How long whereabouts may take to release a vanished pod's address: the node's
/// DEL, ip-control-loop's pod watch, or its reconciler (every minute).
const RELEASE_WITHIN: Duration = Duration::from_secs(150);

/// Applies NAD `name`: macvlan on the nodes' lower device, whereabouts on `range`.
async fn apply_nad(c: &AnyCluster, name: &str, range: &str) -> Outcome {
    let config = json!({"cniVersion": "0.3.1", "type": "macvlan", "master": c.lower_device(),
                        "mode": "bridge", "ipam": {"type": "whereabouts", "range": range}});
    c.apply(vec![Object::Nad(NetworkAttachmentDefinition {
        metadata: Meta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        },
        spec: NadSpec {
            config: config.to_string(),
        },
    })])
    .await?;
    Ok(())
}

/// The address network `nad` gave `pod`, as its network-status says.
fn address_of(pod: &PodView, nad: &str) -> Result<IpAddr, Failure> {
    let s = status_of(pod, &format!("default/{nad}"))?;
    let ip = s
        .ips
        .first()
        .ok_or_else(|| Failure::msg(format!("{}: no address from whereabouts", pod.name)))?;
    ip.split('/')
        .next()
        .unwrap_or(ip)
        .parse()
        .map_err(|e| Failure::caused(format!("{}: address {ip}", pod.name), e))
}

/// `(namespace/pod, address)` of each pod on `nad`.
fn holders(pods: &[PodView], nad: &str) -> Result<BTreeSet<(String, IpAddr)>, Failure> {
    pods.iter()
        .map(|p| Ok((format!("{}/{}", p.namespace, p.name), address_of(p, nad)?)))
        .collect()
}

/// What the pool of `range` holds now: `(namespace/pod, address)`.
async fn pool(c: &AnyCluster, range: &str) -> Result<BTreeSet<(String, IpAddr)>, ClusterError> {
    Ok(c.whereabouts()?
        .allocations()
        .await?
        .into_iter()
        .filter(|a| a.pool == range)
        .map(|a| (a.pod, a.ip))
        .collect())
}

/// Waits until the pool of `range` holds exactly `expected`; how long it took.
async fn pool_holds(
    c: &AnyCluster,
    range: &str,
    expected: &BTreeSet<(String, IpAddr)>,
    within: Duration,
) -> Result<Duration, Failure> {
    let t = Instant::now();
    let what = format!("whereabouts' pool {range} to hold exactly {expected:?}");
    wait::until(
        what,
        within,
        Pace::every(Duration::from_millis(500)),
        || async {
            let held = pool(c, range).await?;
            Ok(if &held == expected {
                Seen::Ready(())
            } else {
                Seen::NotYet(format!("it holds {held:?}"))
            })
        },
    )
    .await?;
    Ok(t.elapsed())
}

/// Fails naming two pods that share an address.
fn distinct(held: &BTreeSet<(String, IpAddr)>) -> Outcome {
    let mut seen: Vec<&(String, IpAddr)> = Vec::new();
    for h in held {
        if let Some(other) = seen.iter().find(|o| o.1 == h.1) {
            return fail(format!(
                "whereabouts gave {} to both {} and {}",
                h.1, other.0, h.0
            ));
        }
        seen.push(h);
    }
    Ok(())
}

/// Whether `ip` is in IPv4 `range` (`a.b.c.d/len`).
fn in_range(ip: IpAddr, range: &str) -> bool {
    let Some((net, len)) = range.split_once('/') else {
        return false;
    };
    match (ip, net.parse::<std::net::Ipv4Addr>(), len.parse::<u32>()) {
        (IpAddr::V4(ip), Ok(net), Ok(len)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        _ => false,
    }
}

/// Creates each `(name, node)` at once; the pods, or the first failure.
async fn start_all(
    c: &AnyCluster,
    nad: &str,
    placed: &[(String, String)],
) -> Result<Vec<PodView>, Failure> {
    let starts = placed
        .iter()
        .map(|(name, node)| c.create_pod(Pod::plain(name, node, nad)));
    let mut pods = Vec::new();
    for started in futures::future::join_all(starts).await {
        pods.push(started?);
    }
    Ok(pods)
}

async fn unique_across_nodes(ctx: &Ctx, c: &AnyCluster) -> Outcome {
    let (nad, range) = ("wb-unique", "10.254.1.0/24");
    apply_nad(c, nad, range).await?;
    let placed: Vec<(String, String)> = c
        .nodes()
        .iter()
        .flat_map(|node| (0..3).map(move |i| (format!("wb-{node}-{i}"), node.clone())))
        .collect();
    let pods = start_all(c, nad, &placed).await?;
    let held = holders(&pods, nad)?;
    distinct(&held)?;
    for (pod, ip) in &held {
        if !in_range(*ip, range) {
            return fail(format!(
                "{pod} got {ip}, outside whereabouts' range {range}"
            ));
        }
    }
    pool_holds(c, range, &held, Duration::from_secs(10)).await?;
    ctx.observed.note(&format!(
        "{} pods on {} nodes started at once: {}",
        pods.len(),
        c.nodes().len(),
        held.iter()
            .map(|(p, ip)| format!("{p} {ip}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

async fn released_on_delete(ctx: &Ctx, c: &AnyCluster) -> Outcome {
    let (nad, range) = ("wb-release", "10.254.2.0/24");
    apply_nad(c, nad, range).await?;
    let nodes = c.nodes();
    let a = c.create_pod(Pod::plain("wb-a", &nodes[0], nad)).await?;
    let held = holders(std::slice::from_ref(&a), nad)?;
    pool_holds(c, range, &held, Duration::from_secs(10)).await?;
    c.delete_pod(&a.namespace, &a.name).await?;
    let took = pool_holds(c, range, &BTreeSet::new(), Duration::from_secs(30)).await?;
    // The address is free again: the next pod, on the other node, may take it.
    let b = c
        .create_pod(Pod::plain("wb-b", nodes.last().unwrap_or(&nodes[0]), nad))
        .await?;
    let now = holders(std::slice::from_ref(&b), nad)?;
    pool_holds(c, range, &now, Duration::from_secs(10)).await?;
    ctx.observed.note(&format!(
        "wb-a's {} released {:.1} s after its deletion; wb-b then got {}",
        address_of(&a, nad)?,
        took.as_secs_f64(),
        address_of(&b, nad)?
    ));
    Ok(())
}

async fn node_pods_vanish(ctx: &Ctx, c: &AnyCluster) -> Outcome {
    let (nad, range) = ("wb-vanish", "10.254.3.0/24");
    apply_nad(c, nad, range).await?;
    let nodes = c.nodes();
    let (stay, gone) = (&nodes[0], nodes.last().unwrap_or(&nodes[0]));
    let placed = [
        ("wb-stay".to_string(), stay.clone()),
        ("wb-gone-0".to_string(), gone.clone()),
        ("wb-gone-1".to_string(), gone.clone()),
    ];
    let pods = start_all(c, nad, &placed).await?;
    let keeper = holders(&pods[..1], nad)?;
    pool_holds(c, range, &holders(&pods, nad)?, Duration::from_secs(10)).await?;
    let wb = c.whereabouts()?;
    for p in &pods[1..] {
        wb.force_delete_pod(&p.namespace, &p.name).await?;
    }
    let took = pool_holds(c, range, &keeper, RELEASE_WITHIN).await?;
    // New pods on that node: none may get an address still in use.
    let again = [
        ("wb-new-0".to_string(), gone.clone()),
        ("wb-new-1".to_string(), gone.clone()),
    ];
    let mut live = pods[..1].to_vec();
    live.extend(start_all(c, nad, &again).await?);
    let held = holders(&live, nad)?;
    distinct(&held)?;
    pool_holds(c, range, &held, Duration::from_secs(10)).await?;
    ctx.observed.note(&format!(
        "the force-deleted pods' addresses were released {:.1} s after their deletion",
        took.as_secs_f64()
    ));
    Ok(())
}

async fn kubelet_restart(ctx: &Ctx, c: &AnyCluster) -> Outcome {
    let (nad, range) = ("wb-restart", "10.254.4.0/24");
    apply_nad(c, nad, range).await?;
    let nodes = c.nodes();
    let node = nodes.last().unwrap_or(&nodes[0]).clone();
    let first = [
        ("wb-r-0".to_string(), node.clone()),
        ("wb-r-1".to_string(), node.clone()),
    ];
    start_all(c, nad, &first).await?;
    // The kubelet restarts while two more pods start there: each starts with an
    // address of its own or not at all, and the pool keeps none for a pod that
    // is not there.
    let more = [
        ("wb-r-2".to_string(), node.clone()),
        ("wb-r-3".to_string(), node.clone()),
    ];
    let (restarted, started) = tokio::join!(c.restart_kubelet(&node), start_all(c, nad, &more));
    restarted?;
    if let Err(f) = started {
        ctx.observed.note(&format!(
            "a pod started during the kubelet restart was refused: {}",
            f.message()
        ));
    }
    // The live pods with their address, read again as the pool settles.
    let t = Instant::now();
    let what = format!("whereabouts' pool {range} to hold exactly the live pods' addresses");
    let held = wait::until(
        what,
        RELEASE_WITHIN,
        Pace::every(Duration::from_secs(1)),
        || async {
            let live: Vec<PodView> = c
                .live_pods()
                .await?
                .into_iter()
                .filter(|p| status_of(p, &format!("default/{nad}")).is_ok())
                .collect();
            let expected = holders(&live, nad).map_err(|f| ClusterError::Operation {
                provider: c.provider().to_string(),
                what: "reading the pods' network-status".into(),
                message: f.message().to_string(),
            })?;
            let held = pool(c, range).await?;
            Ok(if held == expected {
                Seen::Ready(expected)
            } else {
                Seen::NotYet(format!("pods {expected:?}, pool {held:?}"))
            })
        },
    )
    .await?;
    distinct(&held)?;
    ctx.observed.note(&format!(
        "pool and live pods agreed {:.1} s after the restart",
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_duplicates() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_range(ip("10.254.1.7"), "10.254.1.0/24"));
        assert!(!in_range(ip("10.254.2.7"), "10.254.1.0/24"));
        assert!(in_range(ip("10.254.2.7"), "0.0.0.0/0"));
        let held: BTreeSet<(String, IpAddr)> = [
            ("ns/a".to_string(), ip("10.254.1.1")),
            ("ns/b".to_string(), ip("10.254.1.1")),
        ]
        .into();
        let f = distinct(&held).unwrap_err();
        assert_eq!(
            f.message(),
            "whereabouts gave 10.254.1.1 to both ns/a and ns/b"
        );
    }
}
