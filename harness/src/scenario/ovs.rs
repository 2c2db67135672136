//! The OVS VLAN backend: Open vSwitch on every node (the bridge the NADs name,
//! trunked into the LAN over each node's uplink), the seed's `ovs-vlan-100` NAD plus
//! a VLAN-200 and a trunk NAD from `fixtures/ovs/`.

use serde_json::Value;

use super::kit::{
    Table, delete_pods, fixture_nad, ping, pod_iface, pod_link, pod_run, record_topology,
    start_pods, status_of, with_net_admin,
};
use super::{Capability, Ctx, Failure, Outcome, Scenario, ensure, fail};
use crate::cluster::any::AnyCluster;
use crate::cluster::{Cluster, PodView};
use crate::objects::Pod;

/// The NADs every OVS scenario gets: VLAN 100 (the seed's), VLAN 200 and a trunk.
const NADS: [&str; 3] = [
    VLAN_100_NAD,
    "ovs/ovs-vlan-200-nad.yaml",
    "ovs/ovs-trunk-nad.yaml",
];
const VLAN_100_NAD: &str = "seed/ovs-vlan-100-nad.yaml";

/// The OVS scenarios' group on a shared cluster: they reuse the NADs, pod names and
/// VLAN addresses, and check that no pod port is left on the nodes' bridge; the
/// rest is theirs (nothing else uses br1).
const OVS_GROUP: &str = "ovs";

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::on_cluster(
            "ovs/VLAN 100 pods reach each other on one node and across nodes",
            "ovs",
            "pod",
            &["vlan", "reachability"],
            |ctx, c| Box::pin(vlan100_reachability(ctx, c)),
        )
        .needs(&[Capability::Ovs])
        .deploy(&NADS)
        .shares_nodes_but_not_within(OVS_GROUP),
        Scenario::on_cluster(
            "ovs/a VLAN 200 pod is isolated from VLAN 100",
            "ovs",
            "pod",
            &["vlan", "reachability"],
            |ctx, c| Box::pin(vlan200_isolated(ctx, c)),
        )
        .needs(&[Capability::Ovs])
        .deploy(&NADS)
        .shares_nodes_but_not_within(OVS_GROUP),
        Scenario::on_cluster(
            "ovs/trunk attachment receives tagged frames of its allowed VLANs only",
            "ovs",
            "pod",
            &["vlan", "trunk"],
            |ctx, c| Box::pin(trunk_allowed_vlans_only(ctx, c)),
        )
        // tcpdump runs in the trunk pod's namespace as the node sees it.
        .needs(&[Capability::Ovs, Capability::FrameCapture])
        .deploy(&NADS)
        .shares_nodes_but_not_within(OVS_GROUP),
        Scenario::on_cluster(
            "ovs/MTU and MAC as requested, no port left after delete",
            "ovs",
            "pod",
            &["vlan", "mac", "mtu", "network-status"],
            |ctx, c| Box::pin(mtu_mac_and_cleanup(ctx, c)),
        )
        .needs(&[Capability::Ovs])
        .deploy(&NADS)
        .shares_nodes_but_not_within(OVS_GROUP),
    ]
}

/// The OVS bridge the NADs attach to, as the seed's VLAN 100 NAD names it.
fn bridge(ctx: &Ctx) -> Result<String, Failure> {
    let nad = fixture_nad(ctx, VLAN_100_NAD)?;
    let config: Value = serde_json::from_str(&nad.spec.config)?;
    match config["bridge"].as_str() {
        Some(b) => Ok(b.to_string()),
        None => fail(format!(
            "{VLAN_100_NAD}: spec.config names no \"bridge\"; add the OVS bridge's name"
        )),
    }
}

/// A plain pod on `node` attached to `networks`, with NET_ADMIN: the probes add
/// addresses to net1 (a real runtime drops it).
fn on(name: &str, node: &str, networks: &str) -> Pod {
    with_net_admin(Pod::plain(name, node, networks))
}

/// `pods` started at once, in their order.
async fn started<const N: usize>(
    cluster: &AnyCluster,
    pods: [Pod; N],
) -> Result<[PodView; N], Failure> {
    let views = start_pods(cluster, pods.into()).await?;
    views
        .try_into()
        .map_err(|v: Vec<PodView>| Failure::msg(format!("{} pods started, {N} asked", v.len())))
}

async fn address(cluster: &AnyCluster, p: &PodView, cidr: &str) -> Outcome {
    pod_run(cluster, p, &["ip", "addr", "add", cidr, "dev", "net1"]).await?;
    Ok(())
}

fn node_names(cluster: &AnyCluster) -> Result<(String, String), Failure> {
    let nodes = cluster.nodes();
    match nodes.as_slice() {
        [a, b, ..] => Ok((a.clone(), b.clone())),
        _ => fail(format!(
            "the OVS scenarios need two nodes, the topology has {nodes:?}"
        )),
    }
}

/// Deletes `pods` and checks that no pod's port is left on any node's bridge.
async fn delete_and_check_ports(ctx: &Ctx, cluster: &AnyCluster, pods: &[PodView]) -> Outcome {
    record_topology(ctx, cluster).await;
    delete_pods(cluster, pods).await?;
    let bridge = bridge(ctx)?;
    for node in cluster.nodes() {
        let left = cluster.ovs_pod_ports(&node, &bridge).await?;
        ensure(left.is_empty(), || {
            format!("after deleting the pods, node {node}'s {bridge} still has ports {left:?}")
        })?;
    }
    Ok(())
}

async fn vlan100_reachability(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let (n1, n2) = node_names(cluster)?;
    let [a, b, c] = started(
        cluster,
        [
            on("ovs-a", &n1, "ovs-vlan-100"),
            on("ovs-b", &n1, "ovs-vlan-100"),
            on("ovs-c", &n2, "ovs-vlan-100"),
        ],
    )
    .await?;
    for (p, ip) in [
        (&a, "10.100.0.1/24"),
        (&b, "10.100.0.2/24"),
        (&c, "10.100.0.3/24"),
    ] {
        address(cluster, p, ip).await?;
    }
    // Up to 5 tries: ovs-vswitchd picks new ports up asynchronously and the first
    // frames across nodes teach the bridges where the MACs are.
    Table::new(5)
        .pod(&a, &b, "ovs-b (same node)", "10.100.0.2", true)
        // The bridge trunks over each node's uplink.
        .pod(&a, &c, "ovs-c (other node)", "10.100.0.3", true)
        .pod(&c, &b, "ovs-b (other node)", "10.100.0.2", true)
        .check(ctx, cluster)
        .await?;
    delete_and_check_ports(ctx, cluster, &[a, b, c]).await
}

async fn vlan200_isolated(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let (n1, n2) = node_names(cluster)?;
    let [a, b, x, y] = started(
        cluster,
        [
            on("ovs-a", &n1, "ovs-vlan-100"),
            on("ovs-b", &n2, "ovs-vlan-100"),
            on("ovs-x", &n1, "ovs-vlan-200"),
            on("ovs-y", &n2, "ovs-vlan-200"),
        ],
    )
    .await?;
    // One subnet for all: only the VLANs keep them apart.
    for (p, ip) in [
        (&a, "10.100.0.1/24"),
        (&b, "10.100.0.2/24"),
        (&x, "10.100.0.21/24"),
        (&y, "10.100.0.22/24"),
    ] {
        address(cluster, p, ip).await?;
    }
    // The positive cells are each source's control: a pod that reaches nothing at
    // all cannot pass for isolated.
    Table::new(5)
        .pod(&x, &y, "ovs-y (VLAN 200, other node)", "10.100.0.22", true)
        .pod(&a, &b, "ovs-b (VLAN 100, other node)", "10.100.0.2", true)
        .pod(&x, &a, "ovs-a (VLAN 100, same node)", "10.100.0.1", false)
        .pod(&x, &b, "ovs-b (VLAN 100, other node)", "10.100.0.2", false)
        .pod(&a, &x, "ovs-x (VLAN 200, same node)", "10.100.0.21", false)
        .check(ctx, cluster)
        .await?;
    delete_and_check_ports(ctx, cluster, &[a, b, x, y]).await
}

/// What the pod sees on `net1` (link-level headers, `tcpdump -e`) while `during`
/// runs, captured in the pod's namespace as the node sees it (FrameCapture).
async fn capture<F: Future<Output = Outcome>>(
    cluster: &AnyCluster,
    p: &PodView,
    during: F,
) -> Result<String, Failure> {
    let capture = cluster.start_capture(p, "net1", "arp or vlan").await?;
    let outcome = during.await;
    let seen = capture.stop().await;
    outcome?;
    Ok(seen?)
}

async fn trunk_allowed_vlans_only(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let (n1, n2) = node_names(cluster)?;
    // Senders on the other node: the tags must survive the fabric.
    let [trunk, s100, s200] = started(
        cluster,
        [
            on("ovs-trunk", &n1, "ovs-trunk"),
            on("ovs-s100", &n2, "ovs-vlan-100"),
            on("ovs-s200", &n2, "ovs-vlan-200"),
        ],
    )
    .await?;
    address(cluster, &s100, "10.100.0.2/24").await?;
    address(cluster, &s200, "10.200.0.2/24").await?;
    let seen = capture(cluster, &trunk, async {
        // Nobody answers: each sender's ARP requests are flooded in its VLAN.
        for _ in 0..2 {
            ping(cluster, &s100, "10.100.0.99").await?;
            ping(cluster, &s200, "10.200.0.99").await?;
        }
        Ok(())
    })
    .await?;
    ensure(
        seen.lines()
            .any(|l| l.contains("vlan 100,") && l.contains("10.100.0.99")),
        || {
            format!(
                "the trunk (VLAN 100, 150-199) did not receive VLAN 100's ARP tagged 100; tcpdump -e saw:\n{seen}"
            )
        },
    )?;
    ensure(!seen.contains("10.200.0.99"), || {
        format!("VLAN 200 is not allowed on the trunk but its frames arrived:\n{seen}")
    })?;
    ensure(
        !seen
            .lines()
            .any(|l| l.contains("10.100.0.99") && !l.contains("vlan 100,")),
        || format!("VLAN 100's frames must arrive tagged on a trunk:\n{seen}"),
    )?;
    delete_and_check_ports(ctx, cluster, &[trunk, s100, s200]).await
}

async fn mtu_mac_and_cleanup(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let (n1, n2) = node_names(cluster)?;
    let mac = "02:00:0a:0b:0c:01";
    let [m, t] = started(
        cluster,
        [
            on(
                "ovs-mac",
                &n1,
                &format!(r#"[{{"name": "ovs-vlan-100", "mac": "{mac}"}}]"#),
            ),
            on("ovs-mtu", &n2, "ovs-vlan-200"),
        ],
    )
    .await?;
    // `ip -o link`: busybox in a real cluster's pods reads it too.
    let net1 = pod_iface(cluster, &m, "net1").await?;
    ensure(net1.mac == mac, || {
        format!("net1 MAC {}, requested {mac}", net1.mac)
    })?;
    // The link kind needs iproute2's `ip -j -d`: the netns cluster's, as the node sees it.
    if cluster.offers(Capability::NodeAccess) {
        let link = pod_link(cluster, &m, "net1").await?;
        ensure(link.kind == "veth", || {
            format!("net1 is a {:?}, expected a veth", link.kind)
        })?;
    }
    let s = status_of(&m, &format!("{}/ovs-vlan-100", m.namespace))?;
    ensure(s.mac.as_deref() == Some(mac), || {
        format!(
            "network-status MAC {:?}, kernel and request say {mac}",
            s.mac
        )
    })?;
    let net1 = pod_iface(cluster, &t, "net1").await?;
    ensure(net1.mtu == 1400, || {
        format!("net1 MTU {}, the ovs-vlan-200 NAD says 1400", net1.mtu)
    })?;
    let st = status_of(&t, &format!("{}/ovs-vlan-200", t.namespace))?;
    ensure(st.mac.as_deref() == Some(net1.mac.as_str()), || {
        format!("network-status MAC != kernel MAC {}: {st:?}", net1.mac)
    })?;
    let bridge = bridge(ctx)?;
    let ports = cluster.ovs_pod_ports(&n1, &bridge).await?;
    ensure(ports.iter().any(|p| p.starts_with("veth")), || {
        format!("node {n1}'s {bridge} has no pod port: {ports:?}")
    })?;
    delete_and_check_ports(ctx, cluster, &[m, t]).await
}
