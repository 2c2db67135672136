//! Live migration with traffic running, for each binding (the bug class of kubevirt
//! 5912, 16696 and 17195): a guest on the first node moves to the second while a
//! peer sends it a steady stream (ICMP and UDP, [`crate::vm::stream`]). Asserted:
//! the guest keeps its MAC and addresses and the target pod's network-status says
//! so; the gap in the stream stays under the bound the scenario states (reported
//! with first and last lost packet); the LAN's switch learns the guest's MAC on the
//! target node's port only after the source paused the guest; afterwards the source
//! node has nothing left (links, OVS ports, leases) and its device is free again. A
//! migration whose target dies half-way leaves the guest running on the source with
//! its network, and nothing on the target node.
//!
//! The peer is a host on the LAN outside both nodes (the LAN's gateway), or for
//! OVS VLAN 100 a VLAN-100 pod on the target node: a macvtap or macvlan peer on
//! either node would talk to the guest's MAC through the node's own macvlan port,
//! never crossing the LAN, and measure that instead.

mod masquerade;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use super::kit::{DATAPLANE, add_addr, fixture_nad, lan_host, status_of};
use super::vm::{
    MACVTAP_NAD, OVS_VLAN_100_NAD, apply_macvlan_nad, boot_all, then_stop, vm_fixture, vm_options,
};
use super::{Capability, Ctx, Failure, Outcome, Scenario, ensure, fail};
use crate::cluster::Cluster;
use crate::cluster::PodView;
use crate::cluster::any::AnyCluster;
use crate::objects::{NetworkAttachmentDefinition, Pod};
use crate::vm::kubevirt::VirtualMachine;
use crate::vm::migrate::{LanWatch, LiveMigration, MigrationPlan, MigrationReport};
use crate::vm::stream::{GUEST_SETUP, Stream, StreamReport};
use crate::vm::{RunningVm, VmOptions};

/// How often the peer sends (one ICMP echo and one UDP datagram each time).
const INTERVAL: Duration = Duration::from_millis(10);

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::on_cluster(
            "migration/macvtap: MAC and address kept under traffic, the MAC moves on the LAN at handover, device freed",
            "macvtap",
            "vm",
            &["vm", "migration", "macvtap", "mac", "capacity"],
            |ctx, c| Box::pin(macvtap_migration(ctx, c)),
        )
        .needs(&[Capability::Vm, Capability::LiveMigration, Capability::LanWatch])
        .deploy_macvtap_seed(),
        Scenario::on_cluster(
            "migration/bridge on macvlan-test: Debian's macvlan announces the guest's MAC early, the LAN watch catches it",
            "macvlan",
            "vm",
            &["vm", "migration", "macvlan", "mac", "ipam", "fault"],
            |ctx, c| Box::pin(macvlan_bridge_migration(ctx, c)),
        )
        .needs(&[Capability::Vm, Capability::LiveMigration, Capability::LanWatch]),
        Scenario::on_cluster(
            "migration/bridge on ovs-vlan-100: a VLAN 100 peer streams throughout, no OVS port left on the source",
            "ovs",
            "vm",
            &["vm", "migration", "ovs", "mac"],
            |ctx, c| Box::pin(ovs_bridge_migration(ctx, c)),
        )
        .needs(&[Capability::Vm, Capability::LiveMigration, Capability::LanWatch, Capability::Ovs])
        .deploy(&[OVS_VLAN_100_NAD]),
        Scenario::on_cluster(
            "migration/masquerade: the guest keeps 10.0.2.2 and its MAC, is reached through the target pod's new address, the gap measured",
            "pod-network",
            "vm",
            &["vm", "migration", "masquerade", "mac"],
            |ctx, c| Box::pin(masquerade::masquerade_migration(ctx, c)),
        )
        .needs(&[Capability::Vm, Capability::LiveMigration, Capability::LanWatch]),
        Scenario::on_cluster(
            "migration/macvtap, target killed half-way: guest stays on the source with its network, target node clean",
            "macvtap",
            "vm",
            &["vm", "migration", "macvtap", "fault"],
            |ctx, c| Box::pin(failed_migration(ctx, c)),
        )
        .needs(&[Capability::Vm, Capability::LiveMigration, Capability::LanWatch])
        .deploy_macvtap_seed(),
    ]
}

/// Where the stream comes from.
enum Peer {
    /// A host on the LAN outside the nodes, holding this extra address (CIDR).
    Lan(Option<String>),
    /// A pod's network namespace.
    Pod(PodView),
}

/// One binding's migration.
struct Case {
    nads: Vec<NetworkAttachmentDefinition>,
    vm: VirtualMachine,
    /// The guest's address on its NIC beyond what the binding gives (CIDR).
    extra: Option<String>,
    /// The guest's address the stream is sent to.
    guest_ip: Ipv4Addr,
    peer: Peer,
    /// The network-status entry of the guest's network (`default/<nad>`).
    network: &'static str,
    /// The device plugin resource the launcher pod holds, if any.
    resource: Option<&'static str>,
    /// The longest gap in the stream the scenario accepts (TCG guests on a busy
    /// machine: the last copy, the target's start and its announcement).
    bound: Duration,
    /// The target's CNI is known to bring its interface up speaking for the guest
    /// (IPv6 DAD/MLD from the guest's MAC): the LAN watch must catch that, and the
    /// stream's gap is not judged.
    early_announce: Option<&'static str>,
}

pub(super) fn live_migration(cluster: &AnyCluster) -> Result<&dyn LiveMigration, Failure> {
    cluster
        .guests()?
        .live_migration()
        .ok_or_else(|| Failure::msg("the cluster runs guests but cannot migrate them"))
}

/// The LAN as this machine sees it (the stream's peer, the switch's table).
pub(super) fn lan_watch(mig: &dyn LiveMigration) -> Result<&dyn LanWatch, Failure> {
    mig.lan().ok_or_else(|| {
        Failure::msg("the cluster migrates guests but its LAN is not seen from here")
    })
}

pub(super) fn ipv4(text: &str) -> Result<Ipv4Addr, Failure> {
    let bare = text.split('/').next().unwrap_or(text);
    bare.parse()
        .map_err(|e| Failure::msg(format!("{text} is not an IPv4 address: {e}")))
}

async fn macvtap_migration(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let ip = lan_host(ctx, 31);
    let case = Case {
        nads: vec![fixture_nad(ctx, MACVTAP_NAD)?],
        vm: vm_fixture(ctx, "seed/vm-macvtap.yaml", "vm-mig")?,
        extra: Some(format!("{ip}/24")),
        guest_ip: ipv4(&ip)?,
        peer: Peer::Lan(None),
        network: "default/dataplane",
        resource: Some(DATAPLANE),
        bound: Duration::from_secs(2),
        early_announce: None,
    };
    migrate_with_stream(ctx, cluster, case).await
}

async fn macvlan_bridge_migration(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let nads = vec![apply_macvlan_nad(ctx, cluster).await?];
    let vm = vm_fixture(ctx, "seed/vm-macvlan-bridge.yaml", "vm-mig-macvlan")?;
    // host-local's first address of the seed's range: the guest's, as the binding
    // hands it over.
    let case = Case {
        nads,
        vm,
        extra: None,
        guest_ip: Ipv4Addr::UNSPECIFIED,
        peer: Peer::Lan(Some("10.250.250.200/24".into())),
        network: "default/macvlan-test",
        resource: None,
        bound: Duration::from_secs(2),
        // Debian's reference macvlan brings the link up with IPv6 on; a macvlan
        // keeps the guest's MAC (it filters on it), so its DAD and MLD frames carry it.
        early_announce: Some("Debian's macvlan plugin (reference, not under test)"),
    };
    migrate_with_stream(ctx, cluster, case).await
}

async fn ovs_bridge_migration(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let nodes = cluster.nodes();
    // The peer on the target node: before the handover its frames cross the LAN
    // to the source node, after it they stay on the target's OVS.
    let pod = cluster
        .create_pod(Pod::plain("ovs-peer", &nodes[1], "ovs-vlan-100"))
        .await?;
    add_addr(cluster, &pod, "10.100.0.20/24", "net1").await?;
    let case = Case {
        nads: vec![fixture_nad(ctx, OVS_VLAN_100_NAD)?],
        vm: vm_fixture(ctx, "seed/vm-ovs-vlan100.yaml", "vm-mig-ovs")?,
        extra: Some("10.100.0.10/24".into()),
        guest_ip: ipv4("10.100.0.10")?,
        peer: Peer::Pod(pod),
        network: "default/ovs-vlan-100",
        resource: None,
        bound: Duration::from_secs(2),
        early_announce: None,
    };
    migrate_with_stream(ctx, cluster, case).await
}

/// What is on a node that pods and guests could leave behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NodeState {
    pub(super) node: String,
    links: BTreeSet<String>,
    ovs_ports: BTreeSet<String>,
    leases: BTreeSet<String>,
    /// The node's nftables tables (where secnet made the node).
    nft_tables: BTreeSet<String>,
}

/// A VM booted on the first node, to move to the second, with both nodes' state
/// from before it booted: what each must come back to.
pub(super) struct OnSource {
    pub(crate) source: String,
    pub(crate) target: String,
    pub(crate) before_source: NodeState,
    pub(crate) before_target: NodeState,
    pub(crate) vms: Vec<RunningVm>,
}

pub(super) async fn boot_on_source(
    ctx: &Ctx,
    cluster: &AnyCluster,
    vm: &VirtualMachine,
    nads: &[NetworkAttachmentDefinition],
    opts: &VmOptions,
) -> Result<OnSource, Failure> {
    let nodes = cluster.nodes();
    let (source, target) = (nodes[0].clone(), nodes[1].clone());
    let before_source = node_state(cluster, &source).await?;
    let before_target = node_state(cluster, &target).await?;
    let vms = boot_all(
        ctx,
        cluster,
        vec![(vm.clone(), Some(source.clone()))],
        nads,
        opts,
    )
    .await?;
    Ok(OnSource {
        source,
        target,
        before_source,
        before_target,
        vms,
    })
}

pub(super) async fn node_state(cluster: &AnyCluster, node: &str) -> Result<NodeState, Failure> {
    let access = cluster.node_access()?;
    let out = access.node_ip(node, &["-j", "-d", "link", "show"]).await?;
    // Bridges are the node's own (the pod network's cni0 comes with the first pod).
    let links: Vec<String> = crate::probe::ip::links(&out)
        .map_err(|e| Failure::caused(format!("links of node {node}"), e))?
        .into_iter()
        .filter(|l| l.kind != "bridge")
        .map(|l| l.name)
        .collect();
    let ovs_ports = match cluster.ovs() {
        Ok(ovs) => ovs
            .ovs_ports(node, crate::cluster::netns::ovs::BRIDGE)
            .await?
            .into_iter()
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    Ok(NodeState {
        node: node.to_string(),
        links: links.into_iter().collect(),
        ovs_ports,
        leases: access.pod_network_leases(node).await?.into_iter().collect(),
        nft_tables: nft_tables(cluster, node).await?,
    })
}

/// `nft list tables` on `node`, one "family name" a line; empty where the nodes
/// are not secnet's.
async fn nft_tables(cluster: &AnyCluster, node: &str) -> Result<BTreeSet<String>, Failure> {
    let Some(local) = cluster.local_topology() else {
        return Ok(BTreeSet::new());
    };
    let ns = local.node_namespace(node).await?;
    let out = crate::vm::binding::ns_run(&ns.path(), &["nft", "list", "tables"])
        .await
        .map_err(|e| Failure::caused(format!("nftables of node {node}"), e))?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix("table "))
        .map(str::to_string)
        .collect())
}

/// What `after` has that `before` had not, named.
pub(super) fn stale(before: &NodeState, after: &NodeState) -> Vec<String> {
    let mut left = Vec::new();
    for (what, b, a) in [
        ("link", &before.links, &after.links),
        ("OVS port", &before.ovs_ports, &after.ovs_ports),
        ("pod-network lease", &before.leases, &after.leases),
        ("nftables table", &before.nft_tables, &after.nft_tables),
    ] {
        left.extend(a.difference(b).map(|x| format!("{what} {x}")));
    }
    left
}

/// `before`'s node has nothing the scenario made (`nothing_left`) and, for a device
/// plugin's `resource`, every device free again.
pub(super) async fn node_clean(
    cluster: &AnyCluster,
    before: &NodeState,
    resource: Option<&str>,
    when: &str,
) -> Outcome {
    nothing_left(cluster, before, when).await?;
    match resource {
        Some(r) => device_free(cluster, &before.node, r, when).await,
        None => Ok(()),
    }
}

async fn nothing_left(cluster: &AnyCluster, before: &NodeState, when: &str) -> Outcome {
    let now = node_state(cluster, &before.node).await?;
    let left = stale(before, &now);
    ensure(left.is_empty(), || {
        format!("{when}: node {} still has {}", before.node, left.join(", "))
    })
}

/// The device plugin's devices on `node` all free again: nothing allocated and
/// allocatable back at capacity.
pub(super) async fn device_free(
    cluster: &AnyCluster,
    node: &str,
    resource: &str,
    when: &str,
) -> Outcome {
    let r = cluster.node_resources(node).await?;
    let allocated = r.allocated.get(resource).copied().unwrap_or(0);
    let allocatable = r.allocatable.get(resource).copied();
    let capacity = r.capacity.get(resource).copied();
    ensure(allocated == 0 && allocatable == capacity, || {
        format!(
            "{when}: node {node} has {allocated} of {resource} allocated, allocatable {allocatable:?} of capacity {capacity:?}: the device plugin did not get the source's device back"
        )
    })
}

/// The guest's IPv4 addresses (CIDR), lo aside.
async fn guest_addrs(v: &mut RunningVm) -> Result<BTreeSet<String>, Failure> {
    let out = v.run("ip -o -4 addr show").await?;
    Ok(out
        .lines()
        .filter(|l| !l.contains(" lo "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next().map(str::to_string)
        })
        .collect())
}

/// A change in where the LAN's switch sends the guest's MAC.
#[derive(Debug, Clone)]
struct Sighting {
    at: SystemTime,
    /// (switch port, node behind it)
    ports: Vec<(String, String)>,
}

/// Polls the LAN's forwarding table for `mac` until `done`; the changes.
async fn watch_fdb(ctx: &Ctx, lan: &dyn LanWatch, mac: &str, done: &AtomicBool) -> Vec<Sighting> {
    // The switch's own announcements where it gives them; else a poll, which can
    // miss a short flip: the report says so.
    match lan.lan_fdb_changes(mac, done).await {
        Ok(changes) => {
            return changes
                .into_iter()
                .map(|(at, ports)| Sighting { at, ports })
                .collect();
        }
        Err(e) => ctx.observed.note(&format!(
            "the LAN's FDB polled every 20 ms (its change events could not be followed: {e}); a flip shorter than that can be missed"
        )),
    }
    let mut seen: Vec<Sighting> = Vec::new();
    while !done.load(Ordering::Relaxed) {
        if let Ok(ports) = lan.lan_fdb(mac).await
            && seen.last().is_none_or(|s| s.ports != ports)
        {
            seen.push(Sighting {
                at: SystemTime::now(),
                ports,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

fn ms_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

fn timeline(report: &MigrationReport, seen: &[Sighting]) -> String {
    let t0 = report.started_at;
    let mut parts: Vec<String> = seen
        .iter()
        .map(|s| {
            let ports: Vec<String> = s.ports.iter().map(|(p, n)| format!("{p} ({n})")).collect();
            format!(
                "{:+.0} ms: {}",
                ms_between(t0, s.at),
                if ports.is_empty() {
                    "unknown".into()
                } else {
                    ports.join(", ")
                }
            )
        })
        .collect();
    if let Some(stop) = report.source_stopped_at {
        parts.push(format!(
            "source paused the guest at {:+.0} ms",
            ms_between(t0, stop)
        ));
    }
    parts.push(format!(
        "migration {} at {:+.0} ms",
        report.status,
        ms_between(t0, report.ended_at)
    ));
    parts.join("; ")
}

/// Records the numbers in the report: phases (the scenario's time line) and a note.
fn record(
    ctx: &Ctx,
    vm: &str,
    binding: &str,
    report: &MigrationReport,
    stream: &StreamReport,
    downtime: Duration,
    fdb: &str,
) {
    ctx.observed
        .phase("migration (migrate to completed)", report.total);
    ctx.observed
        .phase("migration downtime (longest gap in the stream)", downtime);
    let note = format!(
        "migration [{binding}] {} → {}: {} in {:.0} ms, QEMU downtime {} ms, {} bytes moved; {stream}; LAN: {fdb}",
        report.source_pod.node,
        report.target_pod.node,
        report.status,
        report.total.as_secs_f64() * 1000.0,
        report
            .qemu_downtime_ms
            .map_or("-".to_string(), |d| d.to_string()),
        report.bytes,
    );
    tracing::info!("{note}");
    ctx.observed.note(&note);
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let first = [stream.icmp.first_lost, stream.udp.first_lost]
        .into_iter()
        .flatten()
        .min();
    let last = [stream.icmp.last_lost, stream.udp.last_lost]
        .into_iter()
        .flatten()
        .max();
    ctx.observed.migration(crate::observe::MigrationObs {
        vm: vm.to_string(),
        binding: binding.to_string(),
        source_node: report.source_pod.node.clone(),
        target_node: report.target_pod.node.clone(),
        status: report.status.clone(),
        total_s: report.total.as_secs_f64(),
        qemu_downtime_ms: report.qemu_downtime_ms,
        bytes: report.bytes,
        stream_downtime_s: downtime.as_secs_f64(),
        stream_interval_ms: stream.interval.as_millis() as u64,
        icmp_sent: stream.icmp.sent,
        icmp_lost: stream.icmp.lost,
        udp_sent: stream.udp.sent,
        udp_lost: stream.udp.lost,
        first_lost_s: secs(first),
        last_lost_s: secs(last),
        lan: fdb.to_string(),
    });
}

fn binding_of(vm: &RunningVm) -> String {
    vm.snap()
        .nics
        .first()
        .map_or("-".into(), |n| n.binding.clone())
}

async fn start_stream(
    cluster: &AnyCluster,
    mig: &dyn LiveMigration,
    peer: &Peer,
    to: Ipv4Addr,
) -> Result<Stream, Failure> {
    let netns = match peer {
        Peer::Lan(address) => lan_watch(mig)?.lan_host(address.as_deref()).await?,
        Peer::Pod(p) => cluster
            .local_topology()
            .ok_or_else(|| Failure::msg("a pod peer's stream needs the pod's namespace here"))?
            .pod_namespace(p)
            .await?
            .path(),
    };
    let stream = Stream::start(netns, to, INTERVAL)
        .map_err(|e| Failure::caused("the peer's stream".to_string(), e))?;
    // Warm: the guest answers (ARP learnt, bridges taught) before anything moves.
    let since = std::time::Instant::now();
    let mut warm = None;
    while since.elapsed() < Duration::from_secs(15) {
        if stream.answered_since(since) {
            warm = Some(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if warm.is_none() {
        let r = stream.stop().ok();
        return fail(format!(
            "the peer's stream to {to} got no answer in 15 s before the migration ({})",
            r.map_or("-".into(), |r| r.to_string())
        ));
    }
    Ok(stream)
}

async fn migrate_with_stream(ctx: &Ctx, cluster: &AnyCluster, mut case: Case) -> Outcome {
    let mig = live_migration(cluster)?;
    let opts = vm_options(ctx, cluster)?;
    let nads = case.nads.clone();
    let OnSource {
        source,
        target,
        before_source,
        before_target,
        mut vms,
    } = boot_on_source(ctx, cluster, &case.vm, &nads, &opts).await?;
    let checked = then_stop(cluster, &mut vms, async |vms: &mut [RunningVm]| {
        let v = &mut vms[0];
        let extra: Vec<(usize, &str)> = case.extra.iter().map(|a| (0, a.as_str())).collect();
        v.configure(&extra).await?;
        v.run(GUEST_SETUP).await?;
        if case.guest_ip.is_unspecified() {
            let first = v.nics[0]
                .addresses
                .first()
                .ok_or("the binding gave the guest no address")?
                .clone();
            case.guest_ip = ipv4(&first)?;
        }
        let mac = v.nics[0].mac.clone();
        let addrs_before = guest_addrs(v).await?;
        let stream = start_stream(cluster, mig, &case.peer, case.guest_ip).await?;
        let lan = lan_watch(mig)?;
        let done = AtomicBool::new(false);
        let plan = MigrationPlan::to(&target);
        let (migrated, seen) = tokio::join!(
            async {
                let r = mig.migrate(v, &nads, &opts, &plan).await;
                // A moment of the stream after the handover, then the watch ends.
                tokio::time::sleep(Duration::from_secs(1)).await;
                done.store(true, Ordering::Relaxed);
                r
            },
            watch_fdb(ctx, lan, &mac, &done)
        );
        let streamed = stream.stop();
        let report = migrated?;
        let streamed = streamed.map_err(|e| Failure::caused("the peer's stream".to_string(), e))?;
        let fdb = timeline(&report, &seen);
        record(
            ctx,
            &v.vm.name,
            &binding_of(v),
            &report,
            &streamed,
            streamed.downtime(),
            &fdb,
        );
        ensure(report.completed(), || {
            format!("the migration ended {}; LAN: {fdb}", report.status)
        })?;
        ensure(v.pod.node == target, || {
            format!("after the migration the guest's pod is on {}, not {target}", v.pod.node)
        })?;
        // The guest, through the target's agent: same MAC, same addresses.
        v.guest_ifname(&mac).await?;
        let addrs_after = guest_addrs(v).await?;
        ensure(addrs_after == addrs_before, || {
            format!("the guest had {addrs_before:?} before the migration and {addrs_after:?} after")
        })?;
        let st = status_of(&v.pod, case.network)?;
        ensure(st.mac.as_deref() == Some(mac.as_str()), || {
            format!(
                "the target pod's network-status gives {} MAC {:?}, the guest has {mac}",
                case.network, st.mac
            )
        })?;
        // The LAN: the MAC on the target node's port only once the source paused.
        let handover = report.source_stopped_at.unwrap_or(report.ended_at);
        let early = seen
            .iter()
            .find(|s| s.at < handover && s.ports.iter().any(|(_, n)| *n == target));
        if let Some(cni) = case.early_announce {
            let Some(early) = early else {
                return fail(format!(
                    "{cni} was expected to announce the guest's MAC {mac} from the target before the handover, and the LAN watch saw no such thing: either the plugin changed or the watch is blind; LAN: {fdb}"
                ));
            };
            ctx.observed.note(&format!(
                "caught: {cni} announced the guest's MAC {mac} on {:?} {:.0} ms before the source paused the guest",
                early.ports,
                -ms_between(handover, early.at)
            ));
        } else if let Some(early) = early {
            return fail(format!(
                "the target's interface took over the VM's MAC {mac} on the LAN before the handover: the switch sent it to {:?} {:.0} ms before the source paused the guest (binding or CNI brought the target's interface up speaking for the guest); LAN: {fdb}",
                early.ports,
                -ms_between(handover, early.at)
            ));
        }
        let now = lan.lan_fdb(&mac).await?;
        ensure(now.iter().any(|(_, n)| *n == target), || {
            format!("after the handover the LAN sends the VM's MAC {mac} to {now:?}, not to {target}; LAN: {fdb}")
        })?;
        ensure(case.early_announce.is_some() || streamed.downtime() <= case.bound, || {
            format!(
                "the stream's longest gap {:.0} ms is above the bound {:.0} ms: {streamed}",
                streamed.downtime().as_secs_f64() * 1000.0,
                case.bound.as_secs_f64() * 1000.0
            )
        })?;
        // The source node: the pod's attachments and its device are gone.
        nothing_left(cluster, &before_source, "after the migration").await?;
        if let Some(resource) = case.resource {
            device_free(cluster, &source, resource, "after the migration").await?;
        }
        Ok(())
    })
    .await;
    checked?;
    nothing_left(cluster, &before_target, "after stopping the migrated VM").await?;
    if let Some(resource) = case.resource {
        device_free(cluster, &target, resource, "after stopping the migrated VM").await?;
    }
    Ok(())
}

async fn failed_migration(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let mig = live_migration(cluster)?;
    let opts = vm_options(ctx, cluster)?;
    let nodes = cluster.nodes();
    let (source, target) = (nodes[0].clone(), nodes[1].clone());
    let before_target = node_state(cluster, &target).await?;
    let nads = vec![fixture_nad(ctx, MACVTAP_NAD)?];
    let vm = vm_fixture(ctx, "seed/vm-macvtap.yaml", "vm-mig-fail")?;
    let ip = lan_host(ctx, 32);
    let mut vms = boot_all(ctx, cluster, vec![(vm, Some(source.clone()))], &nads, &opts).await?;
    then_stop(cluster, &mut vms, async |vms: &mut [RunningVm]| {
        let v = &mut vms[0];
        v.configure(&[(0, format!("{ip}/24").as_str())]).await?;
        v.run(GUEST_SETUP).await?;
        let mac = v.nics[0].mac.clone();
        let source_pod = v.pod.clone();
        let stream = start_stream(cluster, mig, &Peer::Lan(None), ipv4(&ip)?).await?;
        let lan = lan_watch(mig)?;
        let done = AtomicBool::new(false);
        let mut plan = MigrationPlan::to(&target);
        // Slow enough that the target dies with the guest's memory on its way.
        plan.bandwidth = Some(1 << 20);
        plan.kill_target = true;
        let (migrated, seen) = tokio::join!(
            async {
                let r = mig.migrate(v, &nads, &opts, &plan).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                done.store(true, Ordering::Relaxed);
                r
            },
            watch_fdb(ctx, lan, &mac, &done)
        );
        let streamed = stream.stop();
        let report = migrated?;
        let streamed = streamed.map_err(|e| Failure::caused("the peer's stream".to_string(), e))?;
        let fdb = timeline(&report, &seen);
        record(
            ctx,
            &v.vm.name,
            "macvtap",
            &report,
            &streamed,
            streamed.downtime(),
            &fdb,
        );
        ensure(!report.completed(), || {
            "the migration completed although its target was killed".into()
        })?;
        ensure(v.pod.name == source_pod.name, || {
            format!(
                "after the failed migration the guest's pod is {}, not the source {}",
                v.pod.name, source_pod.name
            )
        })?;
        v.guest_ifname(&mac).await?;
        if let Some(s) = seen
            .iter()
            .find(|s| s.ports.iter().any(|(_, n)| *n == target))
        {
            return fail(format!(
                "the LAN sent the VM's MAC {mac} to the dead target's node: {:?}; LAN: {fdb}",
                s.ports
            ));
        }
        ensure(streamed.downtime() <= Duration::from_secs(1), || {
            format!("the guest stayed on the source yet its stream had a gap: {streamed}")
        })?;
        ensure(
            !cluster
                .node_access()?
                .pod_sandbox_exists(&report.target_pod.namespace, &report.target_pod.name)
                .await?,
            || format!("the target pod {} is still there", report.target_pod.name),
        )?;
        nothing_left(cluster, &before_target, "after the failed migration").await?;
        device_free(cluster, &target, DATAPLANE, "after the failed migration").await
    })
    .await
}
