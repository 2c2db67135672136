//! The seed document's scenarios, with the seed's YAML as
//! fixtures: the device plugin DaemonSet and node capacity, the macvtap pods (with
//! and without a requested MAC), capacity accounting, reachability over macvtap,
//! macvlan with host-local, and the manual macvlan + DHCP lab.
//!
//! All but the DHCP lab need only the `Cluster` contract: they run on kind and
//! existing clusters too. The checks that need the node itself (the macvtap's lower
//! ifindex, device IDs: `NodeAccess`) run where the cluster offers node access (on
//! real clusters through probe pods) and are left out, and said so in the report,
//! where it does not; the nodes' uplink addresses are checked where secnet made
//! the nodes and knows the LAN.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::kit::{
    MACVTAP_PODS, Table, add_addr, fixture_nad, fixture_pod, lan_host, named, network_status,
    pod_iface, pod_link, start_pods, status_of, with_net_admin,
};
use super::{Capability, Ctx, Failure, Outcome, Scenario, ensure, fail};
use crate::cluster::Cluster;
use crate::cluster::any::AnyCluster;
use crate::objects::{Object, Pod};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::on_cluster(
            "seed/device plugin DaemonSet: capacity 50 on every node",
            "macvtap",
            "node",
            &["capacity", "deviceplugin"],
            |ctx, c| Box::pin(daemonset_capacity(ctx, c)),
        )
        .deploy_macvtap_seed(),
        Scenario::on_cluster(
            "seed/macvtap-pod: net1 is a macvtap on ens33",
            "macvtap",
            "pod",
            &["mac", "mtu", "network-status"],
            |ctx, c| Box::pin(macvtap_pod(ctx, c)),
        )
        .deploy_macvtap_seed()
        .shares_nodes_but_not_within(MACVTAP_PODS),
        Scenario::on_cluster(
            "seed/macvtap-pod-with-mac: the requested MAC everywhere",
            "macvtap",
            "pod",
            &["mac", "network-status"],
            |ctx, c| Box::pin(macvtap_pod_with_mac(ctx, c)),
        )
        .deploy_macvtap_seed()
        .shares_nodes_but_not_within(MACVTAP_PODS),
        Scenario::on_cluster(
            "seed/capacity accounting: allocate, release, Insufficient",
            "macvtap",
            "pod",
            &["capacity"],
            |ctx, c| Box::pin(capacity_accounting(ctx, c)),
        )
        .deploy_macvtap_seed()
        .shares_nodes_but_not_within(MACVTAP_PODS),
        Scenario::on_cluster(
            "seed/macvtap reachability: same node, across nodes, not the own uplink",
            "macvtap",
            "pod",
            &["reachability"],
            |ctx, c| Box::pin(macvtap_reachability(ctx, c)),
        )
        .deploy_macvtap_seed()
        .shares_nodes_but_not_within(MACVTAP_PODS),
        Scenario::on_cluster(
            "seed/macvlan-test NAD with host-local: addresses and cross-node ping",
            "macvlan",
            "pod",
            &["reachability", "ipam"],
            |ctx, c| Box::pin(macvlan_host_local(ctx, c)),
        )
        .deploy_macvtap_seed()
        .shares_nodes_but_not_within(MACVTAP_PODS),
        Scenario::on_cluster(
            "seed/manual macvlan lab: DHCP from the LAN, gateway reachable",
            "macvlan",
            "node",
            &["reachability", "dhcp"],
            |ctx, c| Box::pin(macvlan_dhcp_lab(ctx, c)),
        )
        .needs(&[
            Capability::NodeAccess,
            Capability::Dhcp,
            Capability::Program("busybox"),
        ])
        .deploy_macvtap_seed(),
    ]
}

async fn daemonset_capacity(_ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    for node in cluster.nodes() {
        let r = cluster.node_resources(&node).await?;
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
        .await?;
    let net1 = pod_iface(cluster, &pod, "net1").await?;
    ensure(net1.mtu == 1500, || {
        format!("net1 MTU {}, the NAD says 1500", net1.mtu)
    })?;
    ensure(net1.up, || "net1 is down".into())?;
    let mac = net1.mac;
    ensure(!mac.is_empty() && mac != "00:00:00:00:00:00", || {
        "net1 has no MAC".into()
    })?;
    if cluster.offers(Capability::NodeAccess) {
        // What only the node shows: the link kind and which device it sits on.
        let link = pod_link(cluster, &pod, "net1").await?;
        ensure(link.kind == "macvtap", || {
            format!("net1 is {:?}", link.kind)
        })?;
        let lower = cluster.lower_device();
        let uplink = cluster.node_link(&pod.node, &lower).await?;
        ensure(link.lower_index == Some(uplink.index), || {
            format!(
                "net1's lower is ifindex {:?}, the node's {lower} is {}",
                link.lower_index, uplink.index
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
    let dp = status_of(&pod, "default/dataplane")?;
    ensure(
        dp.interface.as_deref() == Some("net1") && dp.mac.as_deref() == Some(mac.as_str()),
        || format!("network-status says {dp:?}, the kernel says net1 {mac}"),
    )
}

async fn macvtap_pod_with_mac(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let want = "02:23:45:67:89:01";
    let pod = cluster
        .create_pod(fixture_pod(ctx, "seed/macvtap-pod-with-mac.yaml")?)
        .await?;
    let net1 = pod_iface(cluster, &pod, "net1").await?;
    ensure(net1.mac == want, || {
        format!("net1 MAC {}, requested {want}", net1.mac)
    })?;
    let dp = status_of(&pod, "default/dataplane")?;
    ensure(dp.mac.as_deref() == Some(want), || {
        format!("network-status MAC {:?}, requested {want}", dp.mac)
    })
}

async fn capacity_accounting(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let started = start_pods(
        cluster,
        vec![
            named(
                fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
                "macvtap-pod",
                Some(&node),
            ),
            named(
                fixture_pod(ctx, "seed/macvtap-pod-with-mac.yaml")?,
                "macvtap-pod-with-mac",
                Some(&node),
            ),
        ],
    )
    .await?;
    let a = &started[0];
    let r = cluster.node_resources(&node).await?;
    // As the seed's `kubectl describe node`: Capacity 50, Allocatable 50, Allocated 2.
    ensure(
        (
            r.capacity.get(DATAPLANE).copied().unwrap_or(0),
            r.allocatable.get(DATAPLANE).copied().unwrap_or(0),
            r.allocated.get(DATAPLANE).copied().unwrap_or(0),
        ) == (50, 50, 2),
        || format!("after two pods: {r:?}"),
    )?;
    if cluster.offers(Capability::NodeAccess) {
        // Device IDs come from the kubelet's admission, which only node access shows.
        let devices = cluster.pod_devices(a).await?;
        ensure(devices.get(DATAPLANE).map(Vec::len) == Some(1), || {
            format!("pod devices {devices:?}")
        })?;
    }
    cluster.delete_pod(&a.namespace, &a.name).await?;
    let r = cluster.node_resources(&node).await?;
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
            return fail(format!(
                "a pod asking for 50 with 49 free must stay unscheduled, got {other:?}"
            ));
        }
    }
    cluster
        .delete_pod(&a.namespace, "macvtap-pod-with-mac")
        .await?;
    let r = cluster.node_resources(&node).await?;
    ensure(
        r.allocated.get(DATAPLANE).copied().unwrap_or(0) == 0,
        || format!("capacity must be all free again: {r:?}"),
    )
}

async fn macvtap_reachability(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let nodes = cluster.nodes();
    let base = with_net_admin(fixture_pod(ctx, "seed/macvtap-pod.yaml")?);
    let started = start_pods(
        cluster,
        vec![
            named(base.clone(), "mvt-a", Some(&nodes[0])),
            named(base.clone(), "mvt-b", Some(&nodes[0])),
            named(base, "mvt-c", Some(&nodes[1])),
        ],
    )
    .await?;
    let [a, b, c] = [&started[0], &started[1], &started[2]];
    // Addresses on the LAN's subnet, so that the nodes' own uplinks are in reach.
    let (ip_a, ip_b, ip_c) = (lan_host(ctx, 21), lan_host(ctx, 22), lan_host(ctx, 23));
    for (pod, ip) in [(&a, &ip_a), (&b, &ip_b), (&c, &ip_c)] {
        add_addr(cluster, pod, &format!("{ip}/24"), "net1").await?;
    }
    let table = Table::new(3)
        .pod(a, b, "mvt-b (same node)", &ip_b, true)
        .pod(a, c, "mvt-c (other node)", &ip_c, true)
        .pod(c, a, "mvt-a (other node)", &ip_a, true);
    // The LAN's addresses are known where secnet made the nodes.
    let Some(topology) = cluster.local_topology().map(|l| l.topology()) else {
        ctx.observed
            .note("the nodes' own uplink addresses: not on the pods' subnet on this provider");
        return table.check(ctx, cluster).await;
    };
    let own = topology.nodes[0].address.to_string();
    let other = topology.nodes[1].address.to_string();
    table
        .icmp(a, "node2 uplink", &other, true)
        // A bridge-mode macvtap cannot talk to its own lower device's address.
        .icmp(a, "node1 uplink (own lower)", &own, false)
        .check(ctx, cluster)
        .await
}

async fn macvlan_host_local(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let nodes = cluster.nodes();
    let mut nad = fixture_nad(ctx, "seed/macvlan-nad.yaml")?;
    // The seed's NAD names the uplink eth0 and has no cniVersion (multus then calls
    // the plugin as CNI 0.1.0); here the master is the cluster's lower device.
    let mut config: Value = serde_json::from_str(&nad.spec.config)?;
    config["master"] = Value::from(cluster.lower_device());
    config["cniVersion"] = Value::from("0.3.1");
    nad.spec.config = config.to_string();
    cluster.apply(vec![Object::Nad(nad)]).await?;
    let pod = Pod::plain;
    // host-local allocates per node: a pod on the other node asks for its address
    // (multus `ips`), or it would get the same first address as mvl-a.
    let started = start_pods(
        cluster,
        vec![
            pod("mvl-a", &nodes[0], "macvlan-test"),
            pod("mvl-b", &nodes[0], "macvlan-test"),
            pod(
                "mvl-c",
                &nodes[1],
                r#"[{"name": "macvlan-test", "ips": ["10.250.250.100/24"]}]"#,
            ),
        ],
    )
    .await?;
    let [a, b, c] = [&started[0], &started[1], &started[2]];
    let mut ips = Vec::new();
    for p in [&a, &b, &c] {
        let s = status_of(p, "default/macvlan-test")?;
        let ip = s
            .ips
            .first()
            .cloned()
            .ok_or_else(|| Failure::msg(format!("{}: no address from host-local", p.name)))?;
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
    Table::new(3)
        .pod(a, b, "mvl-b (same node)", &ips[1], true)
        .pod(a, c, "mvl-c (other node)", &ips[2], true)
        .pod(c, a, "mvl-a (other node)", &ips[0], true)
        .check(ctx, cluster)
        .await
}

/// The seed's manual lab: `ip link add link <uplink> dev macN type macvlan mode
/// bridge`, each moved into its own namespace, addresses by DHCP from the LAN.
async fn macvlan_dhcp_lab(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let uplink = cluster.lower_device();
    let dir = ctx.work_dir.join(&ctx.scope);
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n# udhcpc hook: apply the lease like dhclient does.\ncase \"$1\" in\n  bound|renew) ip addr flush dev \"$interface\"; ip addr add \"$ip/$mask\" dev \"$interface\"; [ -n \"$router\" ] && ip route replace default via \"${router%% *}\" dev \"$interface\";;\nesac\nexit 0\n",
    )
    .map_err(|e| Failure::caused(format!("failed to write {}", script.display()), e))?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let topology = cluster.topology()?;
    let gateway = topology.fabric.gateway.to_string();
    let range = topology.fabric.dhcp_range;
    let mut addrs = Vec::new();
    for n in ["ns1", "ns2"] {
        let ns = cluster.extra_namespace(n).await?;
        let dev = format!("mac{}", &n[2..]);
        cluster
            .node_ip(
                &node,
                &[
                    "link", "add", "link", &uplink, "dev", &dev, "type", "macvlan", "mode",
                    "bridge",
                ],
            )
            .await?;
        cluster
            .node_ip(&node, &["link", "set", "dev", &dev, "netns", &ns.name])
            .await?;
        cluster
            .ns_ip(&ns, &["link", "set", "dev", &dev, "up"])
            .await?;
        udhcpc(&ns, &dev, &script).await?;
        let out = cluster
            .ns_ip(&ns, &["-j", "-4", "addr", "show", &dev])
            .await?;
        let got = crate::probe::ip::if_addrs(&crate::probe::ip::addrs(&out)?)
            .into_iter()
            .next()
            .ok_or_else(|| {
                Failure::msg(format!(
                    "{dev} in {n} got no address by DHCP: {}",
                    out.trim()
                ))
            })?;
        let ip = got.local.to_string();
        let in_range = match (range, got.local) {
            (Some([lo, hi]), std::net::IpAddr::V4(got)) => lo <= got && got <= hi,
            (None, std::net::IpAddr::V4(_)) => true,
            (_, std::net::IpAddr::V6(_)) => false,
        };
        ensure(in_range, || {
            format!("{dev} got {ip}, outside the DHCP range {range:?}")
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
    let enter = crate::lab::enter::Enter::net(ns.path())?;
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
        .map_err(|e| Failure::caused("udhcpc (apt-get install busybox-static)", e))?;
    ensure(out.success(), || {
        format!("udhcpc on {dev} failed: {}", out.stderr_text().trim())
    })
}

/// One ping from namespace `ns`: the same verdict as a pod's (an error when the ping
/// did not run, never "no reply").
async fn ns_ping(ns: &crate::lab::Ns, ip: &str) -> Result<bool, Failure> {
    let enter = crate::lab::enter::Enter::net(ns.path())?;
    let out = crate::lab::command::Cmd::new("ping")
        .args(&crate::probe::ping::argv(ip, 1)[1..])
        .enter(&enter)
        .timeout(Duration::from_secs(10))
        .output_async()
        .await?;
    let printed = format!("{}{}", out.stdout_text(), out.stderr_text());
    Ok(crate::probe::ping::replied(out.success(), ip, &printed)?)
}

pub use super::kit::DATAPLANE;
