//! The OVS VLAN backend on the netns cluster: userspace Open vSwitch on every node
//! (bridge `br1`, uplink `ens34` as a trunk into the fabric), the seed's
//! `ovs-vlan-100` NAD plus a VLAN-200 and a trunk NAD from `fixtures/ovs/`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::legacy::fixture;
use super::{Ctx, Failure, Outcome, Scenario, ensure, fail};
use crate::cluster::netns::NetnsCluster;
use crate::cluster::netns::ovs::BRIDGE;
use crate::cluster::netns::pod::network_status;
use crate::cluster::probe::pod_link;
use crate::cluster::{Cluster, PodView};
use crate::lab::enter::Enter;
use crate::objects::{Container, Meta, Pod, PodSpec};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::new(
            "ovs/VLAN 100 pods reach each other on one node and across nodes",
            "ovs",
            "pod",
            &["vlan", "reachability"],
            |ctx| with_ovs_cluster(ctx, vlan100_reachability),
        ),
        Scenario::new(
            "ovs/a VLAN 200 pod is isolated from VLAN 100",
            "ovs",
            "pod",
            &["vlan", "reachability"],
            |ctx| with_ovs_cluster(ctx, vlan200_isolated),
        ),
        Scenario::new(
            "ovs/trunk attachment receives tagged frames of its allowed VLANs only",
            "ovs",
            "pod",
            &["vlan", "trunk"],
            |ctx| with_ovs_cluster(ctx, trunk_allowed_vlans_only),
        ),
        Scenario::new(
            "ovs/MTU and MAC as requested, no port left after delete",
            "ovs",
            "pod",
            &["vlan", "mac", "mtu", "network-status"],
            |ctx| with_ovs_cluster(ctx, mtu_mac_and_cleanup),
        ),
    ]
}

/// Setup (cluster with OVS, the three NADs), Assess (`body`), Teardown.
async fn with_ovs_cluster<F>(ctx: Ctx, body: F) -> Outcome
where
    F: AsyncFnOnce(&Ctx, &NetnsCluster) -> Outcome,
{
    let cluster = ctx.netns_cluster_with(false, true).await?;
    let outcome = async {
        for rel in [
            "seed/ovs-vlan-100-nad.yaml",
            "ovs/ovs-vlan-200-nad.yaml",
            "ovs/ovs-trunk-nad.yaml",
        ] {
            cluster
                .apply(fixture(&ctx, rel)?)
                .await
                .map_err(|e| e.to_string())?;
        }
        body(&ctx, &cluster).await
    }
    .await;
    let outcome = match outcome {
        Err(msg) => fail(format!("{msg}\n{}", cluster.diagnostics().await.trim())),
        ok => ok,
    };
    ctx.finish_cluster(cluster, outcome).await
}

/// A plain pod on `node` with `networks` as its network selection annotation.
fn pod(name: &str, node: &str, networks: &str) -> Pod {
    let mut metadata = Meta {
        name: name.into(),
        namespace: "default".into(),
        ..Default::default()
    };
    metadata
        .annotations
        .insert(crate::multus::NETWORKS_ANNOTATION.into(), networks.into());
    Pod {
        metadata,
        spec: PodSpec {
            node_name: Some(node.into()),
            containers: vec![Container {
                name: "c".into(),
                ..Default::default()
            }],
        },
    }
}

async fn start(
    cluster: &NetnsCluster,
    name: &str,
    node: &str,
    networks: &str,
) -> Result<PodView, Failure> {
    Ok(cluster.create_pod(pod(name, node, networks)).await?)
}

async fn exec_ok(cluster: &NetnsCluster, p: &PodView, argv: &[&str]) -> Outcome {
    let out = cluster
        .exec(&p.namespace, &p.name, argv)
        .await
        .map_err(|e| e.to_string())?;
    ensure(out.success, || {
        format!("{} in {}: {}", argv.join(" "), p.name, out.stderr.trim())
    })
}

async fn address(cluster: &NetnsCluster, p: &PodView, cidr: &str) -> Outcome {
    exec_ok(cluster, p, &["ip", "addr", "add", cidr, "dev", "net1"]).await
}

/// Ping with a few tries: ovs-vswitchd picks new ports up asynchronously and the
/// first frames across nodes also teach the bridges where the MACs are.
async fn reaches(
    cluster: &NetnsCluster,
    p: &PodView,
    ip: &str,
    tries: usize,
) -> Result<bool, Failure> {
    for _ in 0..tries {
        let out = cluster
            .exec(
                &p.namespace,
                &p.name,
                &["ping", "-c", "1", "-W", "1", "-q", ip],
            )
            .await
            .map_err(|e| e.to_string())?;
        if out.success {
            return Ok(true);
        }
    }
    Ok(false)
}

fn node_names(cluster: &NetnsCluster) -> Result<(String, String), Failure> {
    let nodes = cluster.nodes();
    match nodes.as_slice() {
        [a, b, ..] => Ok((a.clone(), b.clone())),
        _ => fail(format!(
            "the OVS scenarios need two nodes, the topology has {nodes:?}"
        )),
    }
}

/// Deletes `pods` and checks that no port is left on any node's bridge.
async fn delete_and_check_ports(cluster: &NetnsCluster, pods: &[PodView]) -> Outcome {
    for p in pods {
        cluster
            .delete_pod(&p.namespace, &p.name)
            .await
            .map_err(|e| e.to_string())?;
    }
    for node in cluster.nodes() {
        let ports = cluster.ovs_ports(&node, BRIDGE).await?;
        let left: Vec<&String> = ports
            .iter()
            .filter(|p| *p != crate::cluster::netns::ovs::UPLINK)
            .collect();
        ensure(left.is_empty(), || {
            format!("after deleting the pods, node {node}'s {BRIDGE} still has ports {left:?}")
        })?;
    }
    Ok(())
}

async fn vlan100_reachability(_ctx: &Ctx, cluster: &NetnsCluster) -> Outcome {
    let (n1, n2) = node_names(cluster)?;
    let a = start(cluster, "ovs-a", &n1, "ovs-vlan-100").await?;
    let b = start(cluster, "ovs-b", &n1, "ovs-vlan-100").await?;
    let c = start(cluster, "ovs-c", &n2, "ovs-vlan-100").await?;
    for (p, ip) in [
        (&a, "10.100.0.1/24"),
        (&b, "10.100.0.2/24"),
        (&c, "10.100.0.3/24"),
    ] {
        address(cluster, p, ip).await?;
    }
    ensure(reaches(cluster, &a, "10.100.0.2", 3).await?, || {
        format!("ovs-a cannot ping ovs-b on the same node {n1} over VLAN 100")
    })?;
    ensure(reaches(cluster, &a, "10.100.0.3", 5).await?, || {
        format!("ovs-a on {n1} cannot ping ovs-c on {n2} over VLAN 100 (br1 trunks over ens34)")
    })?;
    ensure(reaches(cluster, &c, "10.100.0.2", 3).await?, || {
        "ovs-c cannot ping ovs-b back across nodes".to_string()
    })?;
    delete_and_check_ports(cluster, &[a, b, c]).await
}

async fn vlan200_isolated(_ctx: &Ctx, cluster: &NetnsCluster) -> Outcome {
    let (n1, n2) = node_names(cluster)?;
    let a = start(cluster, "ovs-a", &n1, "ovs-vlan-100").await?;
    let b = start(cluster, "ovs-b", &n2, "ovs-vlan-100").await?;
    let x = start(cluster, "ovs-x", &n1, "ovs-vlan-200").await?;
    let y = start(cluster, "ovs-y", &n2, "ovs-vlan-200").await?;
    // One subnet for all: only the VLANs keep them apart.
    for (p, ip) in [
        (&a, "10.100.0.1/24"),
        (&b, "10.100.0.2/24"),
        (&x, "10.100.0.21/24"),
        (&y, "10.100.0.22/24"),
    ] {
        address(cluster, p, ip).await?;
    }
    ensure(reaches(cluster, &x, "10.100.0.22", 5).await?, || {
        "the VLAN 200 pods cannot reach each other across nodes".to_string()
    })?;
    ensure(reaches(cluster, &a, "10.100.0.2", 5).await?, || {
        "the VLAN 100 pods cannot reach each other across nodes".to_string()
    })?;
    for (from, ip, what) in [
        (
            &x,
            "10.100.0.1",
            "ovs-x (VLAN 200) reached ovs-a (VLAN 100) on its own node",
        ),
        (
            &x,
            "10.100.0.2",
            "ovs-x (VLAN 200) reached ovs-b (VLAN 100) on the other node",
        ),
        (
            &a,
            "10.100.0.21",
            "ovs-a (VLAN 100) reached ovs-x (VLAN 200)",
        ),
    ] {
        ensure(!reaches(cluster, from, ip, 1).await?, || what.to_string())?;
    }
    delete_and_check_ports(cluster, &[a, b, x, y]).await
}

/// What the pod sees on `net1` (link-level headers, `tcpdump -e`) while `during` runs.
async fn capture<F: Future<Output = Outcome>>(
    cluster: &NetnsCluster,
    p: &PodView,
    during: F,
) -> Result<String, Failure> {
    let ns = cluster
        .pod_netns(&p.namespace, &p.name)
        .await
        .ok_or("the trunk pod has no netns")?;
    let mut cmd = tokio::process::Command::new("tcpdump");
    cmd.args(["-nn", "-e", "-l", "-i", "net1", "arp or vlan"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Enter::net(ns.path())
        .and_then(|e| e.apply(&mut cmd))
        .map_err(|e| e.to_string())?;
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("failed to run tcpdump (apt-get install tcpdump): {e}"))?;
    let mut stderr = BufReader::new(child.stderr.take().ok_or("no stderr")?).lines();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = stderr.next_line().await {
            if line.contains("listening on") {
                return Ok(());
            }
        }
        Err("tcpdump exited before listening".to_string())
    })
    .await
    .map_err(|_| "tcpdump did not start listening within 10 s".to_string())??;
    let outcome = during.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGINT,
        );
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = tokio::time::timeout(Duration::from_secs(5), stdout.read_to_string(&mut out)).await;
    }
    let _ = child.kill().await;
    outcome.map(|()| out)
}

async fn trunk_allowed_vlans_only(_ctx: &Ctx, cluster: &NetnsCluster) -> Outcome {
    let (n1, n2) = node_names(cluster)?;
    let trunk = start(cluster, "ovs-trunk", &n1, "ovs-trunk").await?;
    // Senders on the other node: the tags must survive the fabric.
    let s100 = start(cluster, "ovs-s100", &n2, "ovs-vlan-100").await?;
    let s200 = start(cluster, "ovs-s200", &n2, "ovs-vlan-200").await?;
    address(cluster, &s100, "10.100.0.2/24").await?;
    address(cluster, &s200, "10.200.0.2/24").await?;
    let seen = capture(cluster, &trunk, async {
        // Nobody answers: each sender's ARP requests are flooded in its VLAN.
        for _ in 0..2 {
            reaches(cluster, &s100, "10.100.0.99", 1).await?;
            reaches(cluster, &s200, "10.200.0.99", 1).await?;
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
    delete_and_check_ports(cluster, &[trunk, s100, s200]).await
}

async fn mtu_mac_and_cleanup(_ctx: &Ctx, cluster: &NetnsCluster) -> Outcome {
    let (n1, n2) = node_names(cluster)?;
    let mac = "02:00:0a:0b:0c:01";
    let m = start(
        cluster,
        "ovs-mac",
        &n1,
        &format!(r#"[{{"name": "ovs-vlan-100", "mac": "{mac}"}}]"#),
    )
    .await?;
    let t = start(cluster, "ovs-mtu", &n2, "ovs-vlan-200").await?;
    let link = pod_link(cluster, &m, "net1").await?;
    ensure(link["address"] == mac, || {
        format!("net1 MAC {}, requested {mac}", link["address"])
    })?;
    ensure(link["linkinfo"]["info_kind"] == "veth", || {
        format!(
            "net1 is a {}, expected a veth",
            link["linkinfo"]["info_kind"]
        )
    })?;
    let status = network_status(&m)?;
    let s = status
        .iter()
        .find(|s| s.name == "default/ovs-vlan-100")
        .ok_or_else(|| format!("network-status has no default/ovs-vlan-100: {status:?}"))?;
    ensure(s.mac.as_deref() == Some(mac), || {
        format!(
            "network-status MAC {:?}, kernel and request say {mac}",
            s.mac
        )
    })?;
    let link = pod_link(cluster, &t, "net1").await?;
    ensure(link["mtu"] == 1400, || {
        format!("net1 MTU {}, the ovs-vlan-200 NAD says 1400", link["mtu"])
    })?;
    let st = network_status(&t)?;
    let kernel_mac = link["address"].as_str().unwrap_or_default();
    ensure(
        st.iter()
            .any(|s| s.name == "default/ovs-vlan-200" && s.mac.as_deref() == Some(kernel_mac)),
        || format!("network-status MAC != kernel MAC {kernel_mac}: {st:?}"),
    )?;
    let ports = cluster.ovs_ports(&n1, BRIDGE).await?;
    ensure(ports.iter().any(|p| p.starts_with("veth")), || {
        format!("node {n1}'s {BRIDGE} has no pod port: {ports:?}")
    })?;
    delete_and_check_ports(cluster, &[m, t]).await
}
