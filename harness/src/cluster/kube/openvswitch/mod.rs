//! Open vSwitch on a real cluster's nodes: the `openvswitch` component's DaemonSet
//! (`fixtures/components/openvswitch/openvswitch.yaml`) runs ovsdb-server and
//! ovs-vswitchd in every node's network namespace with the userspace datapath, as the
//! netns nodes do (`cluster::netns::ovs`): bridge `br1`, the node's trunk `ens34`.
//! What the scenarios read from the nodes (a bridge's ports, frames on a pod's
//! interface) is exec'd in that DaemonSet's pod on the node.
//!
//! The trunk: kind's nodes are containers on one Linux bridge (the engine's network),
//! each with one veth, `eth0`, that carries the node's address. ovs-vswitchd cannot
//! take `eth0` as a port (it would read every frame of the node's own stack, see
//! `cluster::netns::ovs::UPLINK`), and a macvlan on it delivers only unicast frames
//! to its own MAC, never to the pods' MACs behind br1. So `ens34` is a VXLAN device on
//! `eth0` with a multicast group: every node joins the group, broadcast and unknown
//! unicast go to all nodes, learnt MACs go straight to their node, and the whole
//! Ethernet frame, 802.1Q tag included, crosses the LAN: the VLANs trunk between nodes
//! with no peer list, no 8021q module and nothing to configure on the engine's bridge.
//! (Checked on the netns fabric: VLAN 100 across nodes, VLAN 200 isolated, a trunk
//! port sees VLAN 100 tagged and not 200.)

use k8s_openapi::api::core::v1::Pod as KPod;
use kube::api::{Api, ListParams};

use super::KubeCluster;
use crate::cluster::wait::{Pace, Seen, until};
use crate::cluster::{Cluster, ClusterError};

mod capture;
#[cfg(test)]
mod tests;

pub use capture::{Capture, start_capture_argv, stop_capture_argv};

/// The bridge the OVS networks use: the DaemonSet's `${OVS_BRIDGE}`, named as the
/// seed's NADs name it (and as the netns nodes name theirs).
pub const BRIDGE: &str = "br1";
/// The node's trunk port into the LAN: the DaemonSet's `${OVS_UPLINK}`, left out of
/// the scenarios' port checks (the pods' ports are the others).
pub const UPLINK: &str = "ens34";

/// Open vSwitch for nodes that have none (the `openvswitch` set; Containerfile stage `ovs`).
pub const IMAGE: &str = "localhost/secnet-ovs:dev";

pub const NAMESPACE: &str = "kube-system";
/// The DaemonSet's pods.
pub const POD_SELECTOR: &str = "app=secnet-openvswitch";
/// The node's own interface the VXLAN trunk rides on (kind's node veth).
pub const UNDERLAY: &str = "eth0";
/// VXLAN network id, multicast group (link-local scope: it stays on the LAN) and UDP
/// port of the trunk; the port is not 4789 so that a CNI's own VXLAN is left alone.
pub const VXLAN_ID: &str = "4242";
pub const VXLAN_GROUP: &str = "239.0.42.42";
pub const VXLAN_PORT: &str = "4799";

/// `ovs-vsctl list-ports <bridge>`, run in the OVS pod (its default database socket
/// is the node's `/var/run/openvswitch/db.sock`).
pub fn list_ports_argv(bridge: &str) -> Vec<String> {
    ["ovs-vsctl", "--timeout=10", "list-ports", bridge]
        .map(String::from)
        .to_vec()
}

/// Port names, one a line (`ovs-vsctl list-ports`).
pub fn parse_ports(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The label and field selectors that find the OVS pod on `node`.
pub fn pod_list_params(node: &str) -> ListParams {
    ListParams::default()
        .labels(POD_SELECTOR)
        .fields(&format!("spec.nodeName={node}"))
}

fn node_error(node: &str, what: &str, message: String) -> ClusterError {
    ClusterError::Node {
        node: node.to_string(),
        what: what.to_string(),
        message,
    }
}

/// The Running OVS pod on `node`.
pub async fn pod_on(c: &KubeCluster, node: &str) -> Result<String, ClusterError> {
    let api: Api<KPod> = Api::namespaced(c.client().clone(), NAMESPACE);
    let what = "finding the Open vSwitch pod";
    let pods = api.list(&pod_list_params(node)).await.map_err(|e| {
        node_error(
            node,
            what,
            format!("listing {POD_SELECTOR} in {NAMESPACE}: {e}"),
        )
    })?;
    let running = |p: &&KPod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    pods.items
        .iter()
        .find(running)
        .and_then(|p| p.metadata.name.clone())
        .ok_or_else(|| {
            node_error(
                node,
                what,
                format!(
                    "no Running pod {POD_SELECTOR} in {NAMESPACE} ({} found): the bridge is read from the openvswitch component's pods (--components ...,openvswitch); Open vSwitch preinstalled on the hosts has none",
                    pods.items.len()
                ),
            )
        })
}

/// Whether the pod passed its readiness probe (ovs-vswitchd has the trunk open).
fn is_ready(pod: &KPod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Waits until every one of `nodes` has a Ready OVS pod: before that, ovs-cni's ADD
/// finds no database socket or no bridge. A timeout names the nodes without one.
pub async fn wait_ready(
    c: &KubeCluster,
    nodes: &[String],
    timeout: std::time::Duration,
) -> Result<(), ClusterError> {
    let api: Api<KPod> = Api::namespaced(c.client().clone(), NAMESPACE);
    let what = format!("a Ready Open vSwitch pod ({POD_SELECTOR} in {NAMESPACE}) on every node");
    let pace = Pace::every(std::time::Duration::from_millis(500));
    until(what, timeout, pace, || async {
        let pods = api
            .list(&ListParams::default().labels(POD_SELECTOR))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let has_ready = |node: &String| {
            pods.iter().any(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_ref()) == Some(node) && is_ready(p)
            })
        };
        let missing: Vec<&str> = nodes
            .iter()
            .filter(|n| !has_ready(n))
            .map(String::as_str)
            .collect();
        Ok(if missing.is_empty() {
            Seen::Ready(())
        } else {
            Seen::NotYet(format!(
                "none on {}: is {IMAGE} loaded into the nodes? (kubectl -n {NAMESPACE} logs -l {POD_SELECTOR})",
                missing.join(", ")
            ))
        })
    })
    .await
}

/// Whether `node` has no OVS pod at all (not even a starting one): Open vSwitch
/// is then the hosts' own (an inventory's `preinstalled: [openvswitch]`).
async fn has_no_ovs_pod(c: &KubeCluster, node: &str) -> bool {
    let api: Api<KPod> = Api::namespaced(c.client().clone(), NAMESPACE);
    api.list(&pod_list_params(node))
        .await
        .is_ok_and(|pods| pods.items.is_empty())
}

/// Runs `argv` in the OVS pod on `node`; its stdout, or an error with its stderr.
/// Without such a pod, Open vSwitch on the hosts is reached with the node's own
/// programs through its probe pod (NodeAccess).
async fn run_in_ovs_pod(
    c: &KubeCluster,
    node: &str,
    argv: &[String],
) -> Result<String, ClusterError> {
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let pod = match pod_on(c, node).await {
        Ok(pod) => pod,
        Err(e) => {
            let on_host = c
                .offer()
                .offers(crate::cluster::capability::Capability::NodeAccess);
            if !(on_host && has_no_ovs_pod(c, node).await) {
                return Err(e);
            }
            let out = c.node_exec(node, &argv).await?;
            if !out.success {
                return Err(node_error(
                    node,
                    argv.first().copied().unwrap_or("exec"),
                    format!(
                        "on the host (no {POD_SELECTOR} pod in {NAMESPACE}, so Open vSwitch is taken as preinstalled): {}",
                        out.stderr.trim()
                    ),
                ));
            }
            return Ok(out.stdout);
        }
    };
    let out = c.exec(NAMESPACE, &pod, &argv).await?;
    if !out.success {
        return Err(node_error(
            node,
            argv.first().copied().unwrap_or("exec"),
            format!("in {NAMESPACE}/{pod}: {}", out.stderr.trim()),
        ));
    }
    Ok(out.stdout)
}

/// The ports of `bridge` on `node`.
pub async fn ports(c: &KubeCluster, node: &str, bridge: &str) -> Result<Vec<String>, ClusterError> {
    Ok(parse_ports(
        &run_in_ovs_pod(c, node, &list_ports_argv(bridge)).await?,
    ))
}
