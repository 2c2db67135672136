//! The seed document's scenarios on the netns cluster, with the seed's YAML as
//! fixtures: the device plugin DaemonSet and node capacity, the macvtap pods (with
//! and without a requested MAC), capacity accounting, reachability over macvtap,
//! macvlan with host-local, and the manual macvlan + DHCP lab.
//!
//! All but the DHCP lab are portable (`with_any_cluster`): written against the
//! `Cluster` contract, they run on kind and existing clusters too, where the checks
//! that need the node itself (the macvtap's lower ifindex, the node's uplink
//! addresses, device IDs) are left out and said so in the report.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Ctx, Outcome, Scenario, Target, ensure};
use crate::cluster::any::AnyCluster;
use crate::cluster::netns::NetnsCluster;
use crate::cluster::netns::pod::network_status;
use crate::cluster::probe::{add_addr, pod_iface, pod_link};
use crate::cluster::{Cluster, PodView};
use crate::objects::{Object, Pod, load_file};

pub const DATAPLANE: &str = "macvtap.network.kubevirt.io/dataplane";

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::new(
            "seed/device plugin DaemonSet: capacity 50 on every node",
            "macvtap",
            "node",
            &["capacity", "deviceplugin"],
            |ctx| with_any_cluster(ctx, daemonset_capacity),
        )
        .portable(),
        Scenario::new(
            "seed/macvtap-pod: net1 is a macvtap on ens33",
            "macvtap",
            "pod",
            &["mac", "mtu", "network-status"],
            |ctx| with_any_cluster(ctx, macvtap_pod),
        )
        .portable(),
        Scenario::new(
            "seed/macvtap-pod-with-mac: the requested MAC everywhere",
            "macvtap",
            "pod",
            &["mac", "network-status"],
            |ctx| with_any_cluster(ctx, macvtap_pod_with_mac),
        )
        .portable(),
        Scenario::new(
            "seed/capacity accounting: allocate, release, Insufficient",
            "macvtap",
            "pod",
            &["capacity"],
            |ctx| with_any_cluster(ctx, capacity_accounting),
        )
        .portable(),
        Scenario::new(
            "seed/macvtap reachability: same node, across nodes, not the own uplink",
            "macvtap",
            "pod",
            &["reachability"],
            |ctx| with_any_cluster(ctx, macvtap_reachability),
        )
        .portable(),
        Scenario::new(
            "seed/macvlan-test NAD with host-local: addresses and cross-node ping",
            "macvlan",
            "pod",
            &["reachability", "ipam"],
            |ctx| with_any_cluster(ctx, macvlan_host_local),
        )
        .portable(),
        Scenario::new(
            "seed/manual macvlan lab: DHCP from the LAN, gateway reachable",
            "macvlan",
            "node",
            &["reachability", "dhcp"],
            |ctx| with_cluster(ctx, true, macvlan_dhcp_lab),
        ),
    ]
}

/// Setup (cluster up, seed's ConfigMap + DaemonSet + NAD applied), Assess (`body`),
/// Teardown (always, unless --keep and failed).
pub(super) async fn with_cluster<F>(ctx: Ctx, dhcp: bool, body: F) -> Outcome
where
    F: AsyncFnOnce(&Ctx, &NetnsCluster) -> Outcome,
{
    with_cluster_seeded(ctx, dhcp, true, body).await
}

/// As `with_cluster`, with the seed's ConfigMap, DaemonSet and NAD applied or not.
pub(super) async fn with_cluster_seeded<F>(ctx: Ctx, dhcp: bool, seeded: bool, body: F) -> Outcome
where
    F: AsyncFnOnce(&Ctx, &NetnsCluster) -> Outcome,
{
    let t = std::time::Instant::now();
    let cluster = ctx.netns_cluster(dhcp).await?;
    ctx.observed.phase("cluster up", t.elapsed());
    let outcome = async {
        if seeded {
            let t = std::time::Instant::now();
            apply_seed(&cluster, &ctx.fixtures_dir).await?;
            ctx.observed.phase("deploy", t.elapsed());
        }
        let t = std::time::Instant::now();
        let outcome = body(&ctx, &cluster).await;
        ctx.observed.phase("assess", t.elapsed());
        ctx.observed.topology(cluster.snapshot().await);
        outcome
    }
    .await;
    let outcome = match outcome {
        Err(msg) => Err(format!("{msg}\n{}", cluster.diagnostics().await.trim())),
        ok => ok,
    };
    let t = std::time::Instant::now();
    let outcome = ctx.finish_cluster(cluster, outcome).await;
    ctx.observed.phase("teardown", t.elapsed());
    outcome
}

/// Setup, Assess, Teardown of a portable scenario. On the netns target: a fresh
/// cluster with the seed applied. On a real cluster: the run's cluster (components
/// installed once) seen through this scenario's scope, with the seed's NAD applied;
/// teardown removes only what the scenario made.
pub(super) async fn with_any_cluster<F>(ctx: Ctx, body: F) -> Outcome
where
    F: AsyncFnOnce(&Ctx, &AnyCluster) -> Outcome,
{
    match ctx.target.clone() {
        Target::Netns => {
            let t = Instant::now();
            let cluster = AnyCluster::Netns(Box::new(ctx.netns_cluster(false).await?));
            ctx.observed.phase("cluster up", t.elapsed());
            let outcome = deploy_and_assess(&ctx, &cluster, body).await;
            let AnyCluster::Netns(cluster) = cluster else {
                unreachable!("made as a netns cluster above")
            };
            let t = Instant::now();
            let outcome = ctx.finish_cluster(*cluster, outcome).await;
            ctx.observed.phase("teardown", t.elapsed());
            outcome
        }
        Target::Kube(cluster) => {
            let scoped = Arc::new(cluster.scoped(&ctx.scope));
            let outcome = deploy_and_assess(&ctx, &AnyCluster::Kube(scoped.clone()), body).await;
            let t = Instant::now();
            let outcome = ctx.finish_kube(&scoped, outcome).await;
            ctx.observed.phase("teardown", t.elapsed());
            outcome
        }
    }
}

async fn deploy_and_assess<F>(ctx: &Ctx, cluster: &AnyCluster, body: F) -> Outcome
where
    F: AsyncFnOnce(&Ctx, &AnyCluster) -> Outcome,
{
    let outcome = async {
        let t = Instant::now();
        match cluster.netns() {
            Some(netns) => apply_seed(netns, &ctx.fixtures_dir).await?,
            // The device plugin and the CNI came with the run's components.
            None => cluster
                .apply(fixture(ctx, "seed/macvtap-nad.yaml")?)
                .await
                .map_err(|e| e.to_string())?,
        }
        ctx.observed.phase("deploy", t.elapsed());
        let t = Instant::now();
        let outcome = body(ctx, cluster).await;
        ctx.observed.phase("assess", t.elapsed());
        let topology = match cluster {
            AnyCluster::Netns(netns) => netns.snapshot().await,
            AnyCluster::Kube(kube) => kube.snapshot().await,
        };
        ctx.observed.topology(topology);
        outcome
    }
    .await;
    match outcome {
        Err(msg) => Err(format!("{msg}\n{}", cluster.diagnostics().await.trim())),
        ok => ok,
    }
}

/// Lets the pod's probes change its interfaces (`ip addr add`): a real container
/// runtime drops NET_ADMIN by default.
pub(super) fn with_net_admin(mut pod: Pod) -> Pod {
    for c in &mut pod.spec.containers {
        c.security_context = Some(serde_json::json!({"capabilities": {"add": ["NET_ADMIN"]}}));
    }
    pod
}

pub fn fixture(ctx: &Ctx, rel: &str) -> Result<Vec<Object>, String> {
    load_file(&ctx.fixtures_dir.join(rel)).map_err(|e| e.to_string())
}

pub(super) fn fixture_pod(ctx: &Ctx, rel: &str) -> Result<Pod, String> {
    match fixture(ctx, rel)?.into_iter().next() {
        Some(Object::Pod(p)) => Ok(p),
        other => Err(format!("{rel} holds no Pod: {other:?}")),
    }
}

/// The seed's device plugin ConfigMap, its DaemonSet and the `dataplane` NAD, read
/// from `fixtures_dir` and applied: what the seed does by hand before any pod.
pub async fn apply_seed(cluster: &NetnsCluster, fixtures_dir: &std::path::Path) -> Outcome {
    for rel in [
        "seed/macvtap-deviceplugin-config.yaml",
        "seed/macvtap-daemonset.yaml",
        "seed/macvtap-nad.yaml",
    ] {
        let objects = load_file(&fixtures_dir.join(rel)).map_err(|e| e.to_string())?;
        cluster.apply(objects).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Pings `ip` (named `target` in the report) from `pod`; the probe is recorded and
/// fails the step unless the outcome is `expected`.
pub(super) async fn expect_reach<C: Cluster>(
    ctx: &Ctx,
    cluster: &C,
    pod: &PodView,
    target: &str,
    ip: &str,
    expected: bool,
) -> Outcome {
    let observed = ping(cluster, pod, ip).await?;
    ctx.observed
        .probe(&pod.name, &format!("{target} ({ip})"), expected, observed);
    match (expected, observed) {
        (true, false) => Err(format!("{} cannot reach {target} ({ip})", pod.name)),
        (false, true) => Err(format!(
            "{} reaches {target} ({ip}) although it must not",
            pod.name
        )),
        _ => Ok(()),
    }
}

pub(super) async fn ping<C: Cluster>(cluster: &C, pod: &PodView, ip: &str) -> Result<bool, String> {
    let out = cluster
        .exec(
            &pod.namespace,
            &pod.name,
            &["ping", "-c", "1", "-W", "1", "-q", ip],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(out.success)
}

pub(super) fn named(mut pod: Pod, name: &str, node: Option<&str>) -> Pod {
    pod.metadata.name = name.to_string();
    pod.spec.node_name = node.map(str::to_string);
    pod
}

async fn daemonset_capacity(_ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    for node in cluster.nodes() {
        let r = cluster
            .node_resources(&node)
            .await
            .map_err(|e| e.to_string())?;
        ensure(r.capacity.get(DATAPLANE) == Some(&50), || {
            format!(
                "node {node} capacity {:?}, the seed shows {DATAPLANE}: 50",
                r.capacity
            )
        })?;
        ensure(r.allocatable.get(DATAPLANE) == Some(&50), || {
            format!("node {node} allocatable {:?}, expected 50", r.allocatable)
        })?;
        ensure(r.allocated.get(DATAPLANE) == Some(&0), || {
            format!("node {node} allocated {:?}, expected 0", r.allocated)
        })?;
    }
    Ok(())
}

async fn macvtap_pod(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let pod = cluster
        .create_pod(fixture_pod(ctx, "seed/macvtap-pod.yaml")?)
        .await
        .map_err(|e| e.to_string())?;
    let net1 = pod_iface(cluster, &pod, "net1").await?;
    ensure(net1.mtu == 1500, || {
        format!("net1 MTU {}, the NAD says 1500", net1.mtu)
    })?;
    ensure(net1.up, || "net1 is down".into())?;
    let mac = net1.mac;
    ensure(!mac.is_empty() && mac != "00:00:00:00:00:00", || {
        "net1 has no MAC".into()
    })?;
    if let Some(netns) = cluster.netns() {
        // What only the node shows: the link kind and which device it sits on.
        let link = pod_link(netns, &pod, "net1").await?;
        ensure(link["linkinfo"]["info_kind"] == "macvtap", || {
            format!("net1 is {}", link["linkinfo"]["info_kind"])
        })?;
        let node_ns = netns
            .node_netns(&pod.node)
            .await
            .ok_or("pod's node is gone")?;
        let uplink: Value =
            serde_json::from_str(&netns.ip(&node_ns, &["-j", "link", "show", "ens33"]).await?)
                .map_err(|e| e.to_string())?;
        ensure(link["link_index"] == uplink[0]["ifindex"], || {
            format!(
                "net1's lower is ifindex {}, the node's ens33 is {}",
                link["link_index"], uplink[0]["ifindex"]
            )
        })?;
    } else {
        ctx.observed
            .note("net1's link kind and lower device not checked: no node access on this provider");
    }
    let status = network_status(&pod)?;
    ensure(
        status
            .iter()
            .any(|s| s.default && s.interface.as_deref() == Some("eth0")),
        || format!("network-status lacks the default network: {status:?}"),
    )?;
    let dp = status
        .iter()
        .find(|s| s.name == "default/dataplane")
        .ok_or_else(|| format!("network-status lacks default/dataplane: {status:?}"))?;
    ensure(
        dp.interface.as_deref() == Some("net1") && dp.mac.as_deref() == Some(mac.as_str()),
        || format!("network-status says {dp:?}, the kernel says net1 {mac}"),
    )
}

async fn macvtap_pod_with_mac(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let want = "02:23:45:67:89:01";
    let pod = cluster
        .create_pod(fixture_pod(ctx, "seed/macvtap-pod-with-mac.yaml")?)
        .await
        .map_err(|e| e.to_string())?;
    let net1 = pod_iface(cluster, &pod, "net1").await?;
    ensure(net1.mac == want, || {
        format!("net1 MAC {}, requested {want}", net1.mac)
    })?;
    let status = network_status(&pod)?;
    let dp = status
        .iter()
        .find(|s| s.name == "default/dataplane")
        .ok_or("no default/dataplane in network-status")?;
    ensure(dp.mac.as_deref() == Some(want), || {
        format!("network-status MAC {:?}, requested {want}", dp.mac)
    })
}

async fn capacity_accounting(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let a = cluster
        .create_pod(named(
            fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
            "macvtap-pod",
            Some(&node),
        ))
        .await
        .map_err(|e| e.to_string())?;
    cluster
        .create_pod(named(
            fixture_pod(ctx, "seed/macvtap-pod-with-mac.yaml")?,
            "macvtap-pod-with-mac",
            Some(&node),
        ))
        .await
        .map_err(|e| e.to_string())?;
    let r = cluster
        .node_resources(&node)
        .await
        .map_err(|e| e.to_string())?;
    // As the seed's `kubectl describe node`: Capacity 50, Allocatable 50, Allocated 2.
    ensure(
        (
            r.capacity.get(DATAPLANE).copied().unwrap_or(0),
            r.allocatable.get(DATAPLANE).copied().unwrap_or(0),
            r.allocated.get(DATAPLANE).copied().unwrap_or(0),
        ) == (50, 50, 2),
        || format!("after two pods: {r:?}"),
    )?;
    if cluster.netns().is_some() {
        // Device IDs come from the kubelet's admission, which only the netns cluster shows.
        ensure(a.devices.get(DATAPLANE).map(Vec::len) == Some(1), || {
            format!("pod devices {:?}", a.devices)
        })?;
    }
    cluster
        .delete_pod(&a.namespace, &a.name)
        .await
        .map_err(|e| e.to_string())?;
    let r = cluster
        .node_resources(&node)
        .await
        .map_err(|e| e.to_string())?;
    ensure(
        r.allocated.get(DATAPLANE).copied().unwrap_or(0) == 1,
        || format!("deleting a pod must release its device: {r:?}"),
    )?;
    let mut greedy = named(
        fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
        "greedy",
        Some(&node),
    );
    greedy.spec.containers[0]
        .resources
        .limits
        .insert(DATAPLANE.into(), Value::from(50));
    match cluster.create_pod(greedy).await {
        Err(crate::cluster::ClusterError::Unschedulable { message, .. }) => ensure(
            message.contains(&format!("Insufficient {DATAPLANE}")),
            || format!("unschedulable for the wrong reason: {message}"),
        )?,
        other => {
            return Err(format!(
                "a pod asking for 50 with 49 free must stay unscheduled, got {other:?}"
            ));
        }
    }
    cluster
        .delete_pod("default", "macvtap-pod-with-mac")
        .await
        .map_err(|e| e.to_string())?;
    let r = cluster
        .node_resources(&node)
        .await
        .map_err(|e| e.to_string())?;
    ensure(
        r.allocated.get(DATAPLANE).copied().unwrap_or(0) == 0,
        || format!("capacity must be all free again: {r:?}"),
    )
}

async fn macvtap_reachability(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let nodes = cluster.nodes();
    let base = with_net_admin(fixture_pod(ctx, "seed/macvtap-pod.yaml")?);
    let a = cluster
        .create_pod(named(base.clone(), "mvt-a", Some(&nodes[0])))
        .await
        .map_err(|e| e.to_string())?;
    let b = cluster
        .create_pod(named(base.clone(), "mvt-b", Some(&nodes[0])))
        .await
        .map_err(|e| e.to_string())?;
    let c = cluster
        .create_pod(named(base, "mvt-c", Some(&nodes[1])))
        .await
        .map_err(|e| e.to_string())?;
    // Addresses on the LAN's subnet, so that the nodes' own uplinks are in reach.
    for (pod, ip) in [
        (&a, "192.168.159.21"),
        (&b, "192.168.159.22"),
        (&c, "192.168.159.23"),
    ] {
        add_addr(cluster, pod, &format!("{ip}/24"), "net1").await?;
    }
    expect_reach(
        ctx,
        cluster,
        &a,
        "mvt-b (same node)",
        "192.168.159.22",
        true,
    )
    .await?;
    expect_reach(
        ctx,
        cluster,
        &a,
        "mvt-c (other node)",
        "192.168.159.23",
        true,
    )
    .await?;
    expect_reach(
        ctx,
        cluster,
        &c,
        "mvt-a (other node)",
        "192.168.159.21",
        true,
    )
    .await?;
    let Some(netns) = cluster.netns() else {
        ctx.observed
            .note("the nodes' own uplink addresses: not on the pods' subnet on this provider");
        return Ok(());
    };
    let own = netns.topology().nodes[0].address.to_string();
    let other = netns.topology().nodes[1].address.to_string();
    expect_reach(ctx, cluster, &a, "node2 uplink", &other, true).await?;
    // A bridge-mode macvtap cannot talk to its own lower device's address.
    expect_reach(ctx, cluster, &a, "node1 uplink (own lower)", &own, false).await
}

async fn macvlan_host_local(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let nodes = cluster.nodes();
    let mut nad = match fixture(ctx, "seed/macvlan-nad.yaml")?.into_iter().next() {
        Some(Object::Nad(n)) => n,
        other => return Err(format!("seed/macvlan-nad.yaml holds no NAD: {other:?}")),
    };
    // The seed's NAD names the uplink eth0 and has no cniVersion (multus then calls
    // the plugin as CNI 0.1.0); on the netns cluster the uplink is ens33.
    let mut config: Value = serde_json::from_str(&nad.spec.config).map_err(|e| e.to_string())?;
    config["master"] = Value::from(cluster.lower_device());
    config["cniVersion"] = Value::from("0.3.1");
    nad.spec.config = config.to_string();
    cluster
        .apply(vec![Object::Nad(nad)])
        .await
        .map_err(|e| e.to_string())?;
    let pod = Pod::plain;
    let a = cluster
        .create_pod(pod("mvl-a", &nodes[0], "macvlan-test"))
        .await
        .map_err(|e| e.to_string())?;
    let b = cluster
        .create_pod(pod("mvl-b", &nodes[0], "macvlan-test"))
        .await
        .map_err(|e| e.to_string())?;
    // host-local allocates per node: a pod on the other node asks for its address
    // (multus `ips`), or it would get the same first address as mvl-a.
    let c = cluster
        .create_pod(pod(
            "mvl-c",
            &nodes[1],
            r#"[{"name": "macvlan-test", "ips": ["10.250.250.100/24"]}]"#,
        ))
        .await
        .map_err(|e| e.to_string())?;
    let mut ips = Vec::new();
    for p in [&a, &b, &c] {
        let status = network_status(p)?;
        let s = status
            .iter()
            .find(|s| s.name == "default/macvlan-test")
            .ok_or_else(|| format!("{}: no default/macvlan-test in {status:?}", p.name))?;
        let ip = s
            .ips
            .first()
            .cloned()
            .ok_or_else(|| format!("{}: no address from host-local", p.name))?;
        ensure(ip.starts_with("10.250.250."), || {
            format!("{}: {ip} is outside 10.250.250.0/24", p.name)
        })?;
        ips.push(ip);
    }
    ensure(ips[2] == "10.250.250.100", || {
        format!("mvl-c asked for 10.250.250.100, got {}", ips[2])
    })?;
    ensure(ips[0] != ips[1], || {
        format!("two pods on one node got the same address {}", ips[0])
    })?;
    expect_reach(ctx, cluster, &a, "mvl-b (same node)", &ips[1], true).await?;
    expect_reach(ctx, cluster, &a, "mvl-c (other node)", &ips[2], true).await?;
    expect_reach(ctx, cluster, &c, "mvl-a (other node)", &ips[0], true).await
}

/// The seed's manual lab: `ip link add link ens33 dev macN type macvlan mode bridge`,
/// each moved into its own namespace, addresses by DHCP from the LAN.
async fn macvlan_dhcp_lab(ctx: &Ctx, cluster: &NetnsCluster) -> Outcome {
    let node = cluster
        .node_netns(&cluster.nodes()[0])
        .await
        .ok_or("no node")?;
    let script = ctx.work_dir.join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n# udhcpc hook: apply the lease like dhclient does.\ncase \"$1\" in\n  bound|renew) ip addr flush dev \"$interface\"; ip addr add \"$ip/$mask\" dev \"$interface\"; [ -n \"$router\" ] && ip route replace default via \"${router%% *}\" dev \"$interface\";;\nesac\nexit 0\n",
    )
    .map_err(|e| format!("failed to write {}: {e}", script.display()))?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let gateway = cluster.topology().fabric.gateway.to_string();
    let mut addrs = Vec::new();
    for n in ["ns1", "ns2"] {
        let ns = cluster.extra_netns(n).await?;
        let dev = format!("mac{}", &n[2..]);
        cluster
            .ip(
                &node,
                &[
                    "link", "add", "link", "ens33", "dev", &dev, "type", "macvlan", "mode",
                    "bridge",
                ],
            )
            .await?;
        cluster
            .ip(&node, &["link", "set", "dev", &dev, "netns", &ns.name])
            .await?;
        cluster.ip(&ns, &["link", "set", "dev", &dev, "up"]).await?;
        udhcpc(&ns, &dev, &script).await?;
        let out: Value =
            serde_json::from_str(&cluster.ip(&ns, &["-j", "-4", "addr", "show", &dev]).await?)
                .map_err(|e| e.to_string())?;
        let ip = out[0]["addr_info"][0]["local"]
            .as_str()
            .ok_or_else(|| format!("{dev} in {n} got no address by DHCP: {out}"))?
            .to_string();
        ensure(ip.starts_with("192.168.159.1"), || {
            format!("{dev} got {ip}, outside the DHCP range")
        })?;
        ensure(ns_ping(&ns, &gateway).await?, || {
            format!("{n} cannot reach the gateway {gateway}")
        })?;
        addrs.push((ns, ip));
    }
    ensure(addrs[0].1 != addrs[1].1, || {
        "both sub-interfaces got the same lease".into()
    })?;
    ensure(ns_ping(&addrs[0].0, &addrs[1].1).await?, || {
        "ns1 cannot reach ns2".into()
    })
}

async fn udhcpc(ns: &crate::lab::Ns, dev: &str, script: &Path) -> Outcome {
    let enter = crate::lab::enter::Enter::net(ns.path()).map_err(|e| e.to_string())?;
    let out = crate::lab::command::Cmd::new("busybox")
        .args([
            "udhcpc",
            "-i",
            dev,
            "-s",
            &script.display().to_string(),
            "-n",
            "-q",
            "-t",
            "5",
            "-T",
            "1",
            "-f",
        ])
        .enter(&enter)
        .timeout(Duration::from_secs(20))
        .output_async()
        .await
        .map_err(|e| format!("{e} (apt-get install busybox-static)"))?;
    ensure(out.success(), || {
        format!("udhcpc on {dev} failed: {}", out.stderr_text().trim())
    })
}

async fn ns_ping(ns: &crate::lab::Ns, ip: &str) -> Result<bool, String> {
    let enter = crate::lab::enter::Enter::net(ns.path()).map_err(|e| e.to_string())?;
    Ok(crate::lab::command::Cmd::new("ping")
        .args(["-c", "1", "-W", "1", "-q", ip])
        .enter(&enter)
        .timeout(Duration::from_secs(10))
        .output_async()
        .await
        .map_err(|e| e.to_string())?
        .success())
}
