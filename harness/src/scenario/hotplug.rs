//! NIC hot-plug and hot-unplug on a running VM (the bug class of kubevirt 14074: a
//! stale veth after an in-place unplug, and 13721: a failed unplug breaks the next
//! migration), as KubeVirt's dynamic networks do it ([`crate::vm::hotplug`]).
//! Asserted: the guest sees a new NIC with the requested MAC, the launcher pod has
//! the interface and its network-status entry, a macvtap takes a device of its
//! own, and the guest reaches a peer over it; after the unplug the guest has no
//! such NIC, the pod no such interface or entry, the node no link or OVS port
//! more than before the plug, the device is free again; and the VM then migrates.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::kit::{DATAPLANE, add_addr, fixture_nad, lan_host, network_status};
use super::migration::{
    NodeState, OnSource, boot_on_source, live_migration, node_clean, node_state, stale,
};
use super::vm::{MACVTAP_NAD, OVS_VLAN_100_NAD, then_stop, vm_fixture, vm_options};
use super::{Capability, Ctx, Failure, Outcome, Scenario, ensure, fail};
use crate::cluster::Cluster;
use crate::cluster::any::AnyCluster;
use crate::objects::{NetworkAttachmentDefinition, Pod};
use crate::vm::RunningVm;
use crate::vm::hotplug::{NicHotplug, PlugReport, UnplugReport, requested_mac};
use crate::vm::kubevirt::{BindingKind, NetworkSource, VirtualMachine, VmInterface};
use crate::vm::migrate::MigrationPlan;

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::on_cluster(
            "hotplug/macvtap: plugged NIC has the requested MAC and its own device, reaches the LAN; unplugged, nothing left",
            "macvtap",
            "vm",
            &["vm", "hotplug", "macvtap", "mac", "capacity"],
            |ctx, c| Box::pin(macvtap_hotplug(ctx, c)),
        )
        .needs(&[Capability::Vm, Capability::NicHotplug, Capability::LiveMigration, Capability::LanWatch])
        .deploy_macvtap_seed(),
        Scenario::on_cluster(
            "hotplug/bridge on ovs-vlan-100: plugged NIC reaches a VLAN 100 pod; unplugged, no veth or OVS port left",
            "ovs",
            "vm",
            &["vm", "hotplug", "ovs", "mac"],
            |ctx, c| Box::pin(ovs_hotplug(ctx, c)),
        )
        .needs(&[
            Capability::Vm,
            Capability::NicHotplug,
            Capability::LiveMigration,
            Capability::LanWatch,
            Capability::Ovs,
        ])
        .deploy(&[OVS_VLAN_100_NAD]),
        Scenario::on_cluster(
            "hotplug/migrated with a plugged macvtap NIC: the target gets a device and a macvtap for it, the guest keeps the NIC and reaches the LAN",
            "macvtap",
            "vm",
            &["vm", "hotplug", "migration", "macvtap", "mac", "capacity"],
            |ctx, c| Box::pin(macvtap_plug_migrate(ctx, c)),
        )
        .needs(&[Capability::Vm, Capability::NicHotplug, Capability::LiveMigration, Capability::LanWatch])
        .deploy_macvtap_seed(),
        Scenario::on_cluster(
            "hotplug/migrated with a plugged bridge NIC on ovs-vlan-100: the target gets a port for it, the guest keeps the NIC and reaches a VLAN 100 pod",
            "ovs",
            "vm",
            &["vm", "hotplug", "migration", "ovs", "mac"],
            |ctx, c| Box::pin(ovs_plug_migrate(ctx, c)),
        )
        .needs(&[
            Capability::Vm,
            Capability::NicHotplug,
            Capability::LiveMigration,
            Capability::LanWatch,
            Capability::Ovs,
        ])
        .deploy(&[OVS_VLAN_100_NAD]),
    ]
}

/// One binding's plug, unplug and migration.
struct Case {
    nads: Vec<NetworkAttachmentDefinition>,
    vm: VirtualMachine,
    /// The NIC plugged in.
    iface: VmInterface,
    /// The guest's address on it (CIDR) and the peer it pings over it.
    address: String,
    peer: Ipv4Addr,
    /// The network-status name of its network.
    network: &'static str,
    /// The device plugin resource it takes, if any.
    resource: Option<&'static str>,
    /// The pod interface kind the CNI makes for it.
    kind: &'static str,
}

fn hotplug(cluster: &AnyCluster) -> Result<&dyn NicHotplug, Failure> {
    cluster
        .guests()?
        .hotplug()
        .ok_or_else(|| Failure::msg("the cluster runs guests but cannot hot-plug their NICs"))
}

fn multus(nad: &str) -> NetworkSource {
    NetworkSource::Multus {
        namespace: "default".into(),
        name: nad.into(),
    }
}

async fn macvtap_hotplug(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let case = macvtap_case(ctx, "vm-hp")?;
    plug_unplug_migrate(ctx, cluster, case).await
}

async fn macvtap_plug_migrate(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let case = macvtap_case(ctx, "vm-hp-mig")?;
    plug_then_migrate(ctx, cluster, case).await
}

fn macvtap_case(ctx: &Ctx, name: &str) -> Result<Case, Failure> {
    let vm = vm_fixture(ctx, "seed/vm-macvtap.yaml", name)?;
    Ok(Case {
        nads: vec![fixture_nad(ctx, MACVTAP_NAD)?],
        iface: VmInterface {
            name: "hot".into(),
            binding: BindingKind::Macvtap,
            mac: Some(requested_mac(&format!("{}/{}", ctx.run_id, ctx.scope))),
            network: multus("dataplane"),
        },
        vm,
        address: format!("{}/24", lan_host(ctx, 34)),
        peer: ctx.topology.fabric.gateway,
        network: "default/dataplane",
        resource: Some(DATAPLANE),
        kind: "macvtap",
    })
}

async fn ovs_hotplug(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    with_ovs_peer(ctx, cluster, "vm-hp-ovs", plug_unplug_migrate).await
}

async fn ovs_plug_migrate(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    with_ovs_peer(ctx, cluster, "vm-hp-mig-ovs", plug_then_migrate).await
}

/// Runs `then` on the OVS case with a VLAN 100 peer pod on the second node.
async fn with_ovs_peer(
    ctx: &Ctx,
    cluster: &AnyCluster,
    name: &str,
    then: impl AsyncFnOnce(&Ctx, &AnyCluster, Case) -> Outcome,
) -> Outcome {
    let nodes = cluster.nodes();
    let peer = cluster
        .create_pod(Pod::plain("ovs-hp-peer", &nodes[1], "ovs-vlan-100"))
        .await?;
    add_addr(cluster, &peer, "10.100.0.20/24", "net1").await?;
    let vm = vm_fixture(ctx, "seed/vm-ovs-vlan100.yaml", name)?;
    let case = Case {
        nads: vec![fixture_nad(ctx, OVS_VLAN_100_NAD)?],
        iface: VmInterface {
            name: "hot".into(),
            binding: BindingKind::Bridge,
            mac: Some(requested_mac(&format!("{}/{}", ctx.run_id, ctx.scope))),
            network: multus("ovs-vlan-100"),
        },
        vm,
        address: "10.100.0.11/24".into(),
        peer: Ipv4Addr::new(10, 100, 0, 20),
        network: "default/ovs-vlan-100",
        resource: None,
        kind: "veth",
    };
    let outcome = then(ctx, cluster, case).await;
    let deleted = cluster.delete_pod(&peer.namespace, &peer.name).await;
    outcome?;
    Ok(deleted?)
}

/// (allocated, allocatable) of `resource` on `node`.
async fn devices(cluster: &AnyCluster, node: &str, resource: &str) -> Result<(u64, u64), Failure> {
    let r = cluster.node_resources(node).await?;
    Ok((
        r.allocated.get(resource).copied().unwrap_or(0),
        r.allocatable.get(resource).copied().unwrap_or(0),
    ))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn record(ctx: &Ctx, binding: &str, plug: &PlugReport, unplug: &UnplugReport) {
    ctx.observed
        .phase("hot-plug (asked to guest sees the NIC)", plug.total);
    ctx.observed.phase(
        "hot-plug (device_add to guest sees the NIC)",
        plug.guest_sees,
    );
    ctx.observed
        .phase("hot-unplug (asked to attachment gone)", unplug.total);
    let note = format!(
        "hot-plug [{binding}] {} {}: CNI ADD {:.0} ms, binding {:.0} ms, device_add to guest link {:.0} ms, total {:.0} ms; unplug: device_del to DEVICE_DELETED {:.0} ms, CNI DEL and allocation {:.0} ms, total {:.0} ms",
        plug.pod_ifname,
        plug.mac,
        ms(plug.attach),
        ms(plug.bind),
        ms(plug.guest_sees),
        ms(plug.total),
        ms(unplug.device_deleted),
        ms(unplug.detach),
        ms(unplug.total),
    );
    tracing::info!("{note}");
    ctx.observed.note(&note);
}

/// Asserts what a plugged NIC must be in the pod and the guest, and that the
/// guest reaches `case.peer` over it.
async fn assert_plugged(
    cluster: &AnyCluster,
    v: &mut RunningVm,
    case: &Case,
    plug: &PlugReport,
) -> Outcome {
    let want = case.iface.mac.clone().unwrap_or_default();
    ensure(plug.mac.eq_ignore_ascii_case(&want), || {
        format!(
            "the hot-plugged NIC has MAC {}, not the requested {want}",
            plug.mac
        )
    })?;
    let dev = assert_attached(cluster, v, case, &plug.pod_ifname).await?;
    v.run(&format!(
        "ip link set dev {dev} up && ip addr add {} dev {dev}",
        case.address
    ))
    .await?;
    v.first_ping(&case.peer.to_string(), Duration::from_secs(20))
        .await?;
    Ok(())
}

/// Asserts that the launcher pod has the plugged NIC's attachment on `pod_ifname`
/// (the CNI's kind of link, a network-status entry with the requested MAC) and
/// the guest a NIC with that MAC; its name in the guest.
async fn assert_attached(
    cluster: &AnyCluster,
    v: &mut RunningVm,
    case: &Case,
    pod_ifname: &str,
) -> Result<String, Failure> {
    let want = case.iface.mac.clone().unwrap_or_default();
    let dev = v.guest_ifname(&want).await?;
    let link = cluster.pod_link(&v.pod, pod_ifname).await?;
    let kind = link.kind.as_str();
    ensure(kind == case.kind, || {
        format!(
            "the launcher pod {}'s {pod_ifname} is a {kind}, not a {}",
            v.pod.name, case.kind
        )
    })?;
    let status = network_status(&v.pod)?;
    let entry = status
        .iter()
        .find(|s| s.interface.as_deref() == Some(pod_ifname))
        .ok_or_else(|| {
            Failure::msg(format!(
                "the launcher pod {}'s network-status has no entry for the hot-plugged {pod_ifname}: {status:?}",
                v.pod.name
            ))
        })?;
    ensure(
        entry
            .name
            .ends_with(case.network.trim_start_matches("default"))
            && entry
                .mac
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(&want)),
        || {
            format!(
                "network-status of the hot-plugged {pod_ifname}: {entry:?}, wanted {} with MAC {want}",
                case.network
            )
        },
    )?;
    Ok(dev)
}

/// Asserts that nothing of the unplugged NIC is left: in the guest, the pod, on the
/// node (against `booted`: the node with the VM running, before the plug), and
/// its device.
async fn assert_unplugged(
    cluster: &AnyCluster,
    v: &mut RunningVm,
    case: &Case,
    unplug: &UnplugReport,
    booted: &NodeState,
    devices_booted: Option<(u64, u64)>,
) -> Outcome {
    let mac = case.iface.mac.clone().unwrap_or_default();
    let links = v.guest_links().await?;
    if let Some((name, _)) = links.iter().find(|(_, m)| m.eq_ignore_ascii_case(&mac)) {
        return fail(format!(
            "after the unplug the guest still has {name} with MAC {mac}"
        ));
    }
    if let Ok(link) = cluster.pod_link(&v.pod, &unplug.pod_ifname).await {
        return fail(format!(
            "the unplug left the pod interface {} in {}: {:?}",
            unplug.pod_ifname, v.pod.name, link.kind
        ));
    }
    let status = network_status(&v.pod)?;
    if let Some(s) = status
        .iter()
        .find(|s| s.interface.as_deref() == Some(unplug.pod_ifname.as_str()))
    {
        return fail(format!(
            "after the unplug the launcher pod's network-status still has {s:?}"
        ));
    }
    let now = node_state(cluster, &booted.node).await?;
    let left = stale(booted, &now);
    ensure(left.is_empty(), || {
        format!(
            "the unplug left the host link: node {} still has {}",
            booted.node,
            left.join(", ")
        )
    })?;
    if let (Some(resource), Some(before)) = (case.resource, devices_booted) {
        let after = devices(cluster, &booted.node, resource).await?;
        ensure(after == before, || {
            format!(
                "the unplug did not free the device: node {} has (allocated, allocatable) {after:?} of {resource}, {before:?} before the plug",
                booted.node
            )
        })?;
    }
    Ok(())
}

async fn plug_unplug_migrate(ctx: &Ctx, cluster: &AnyCluster, case: Case) -> Outcome {
    let hp = hotplug(cluster)?;
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
    then_stop(cluster, &mut vms, async |vms: &mut [RunningVm]| {
        let v = &mut vms[0];
        let booted = node_state(cluster, &source).await?;
        let devices_booted = match case.resource {
            Some(r) => Some(devices(cluster, &source, r).await?),
            None => None,
        };
        let plug = hp.plug(v, &case.iface, &opts).await?;
        if let (Some(r), Some((allocated, _))) = (case.resource, devices_booted) {
            let (now, _) = devices(cluster, &source, r).await?;
            ensure(now == allocated + 1, || {
                format!(
                    "the hot-plugged {} took no device of its own: node {source} has {now} of {r} allocated, {allocated} before the plug",
                    plug.pod_ifname
                )
            })?;
        }
        let checked = assert_plugged(cluster, v, &case, &plug).await;
        // Unplugged also when an assertion failed, so that the failure is the one
        // reported and the VM's teardown finds what it started with.
        let unplug = hp.unplug(v, &case.iface.name).await;
        checked?;
        let unplug = unplug?;
        record(ctx, &case.iface.name, &plug, &unplug);
        assert_unplugged(cluster, v, &case, &unplug, &booted, devices_booted).await?;
        // The migration after the unplug (kubevirt 13721).
        let first_mac = v.nics[0].mac.clone();
        let report = mig
            .migrate(v, &nads, &opts, &MigrationPlan::to(&target))
            .await?;
        ctx.observed
            .phase("migration after the unplug (migrate to completed)", report.total);
        ensure(report.completed(), || {
            format!("the migration after the unplug ended {}", report.status)
        })?;
        ensure(v.pod.node == target, || {
            format!(
                "after the migration the guest's pod is on {}, not {target}",
                v.pod.node
            )
        })?;
        v.guest_ifname(&first_mac).await?;
        node_clean(cluster, &before_source, case.resource, "after the migration").await
    })
    .await?;
    node_clean(
        cluster,
        &before_target,
        case.resource,
        "after stopping the migrated VM",
    )
    .await
}

/// The kubevirt 13721 class the other way round: a NIC plugged and left in, then
/// the VM migrates. The target launcher pod must get an attachment for it too
/// (for a macvtap a device of its own on the target node), the guest keeps the
/// NIC with its MAC and reaches the peer over it from the target; the source node
/// ends as it began, and so does the target once the VM stops.
async fn plug_then_migrate(ctx: &Ctx, cluster: &AnyCluster, case: Case) -> Outcome {
    let hp = hotplug(cluster)?;
    let mig = live_migration(cluster)?;
    let opts = vm_options(ctx, cluster)?;
    let nads = case.nads.clone();
    let OnSource {
        source: _,
        target,
        before_source,
        before_target,
        mut vms,
    } = boot_on_source(ctx, cluster, &case.vm, &nads, &opts).await?;
    then_stop(cluster, &mut vms, async |vms: &mut [RunningVm]| {
        let v = &mut vms[0];
        let plug = hp.plug(v, &case.iface, &opts).await?;
        assert_plugged(cluster, v, &case, &plug).await?;
        let first_mac = v.nics[0].mac.clone();
        let source_pod = v.pod.clone();
        let report = mig
            .migrate(v, &nads, &opts, &MigrationPlan::to(&target))
            .await?;
        ctx.observed.phase(
            "migration with a hot-plugged NIC (migrate to completed)",
            report.total,
        );
        let note = format!(
            "migration with the hot-plugged {} ({}) attached: {} in {:.0} ms, QEMU downtime {} ms, {} bytes",
            plug.pod_ifname,
            plug.mac,
            report.status,
            ms(report.total),
            report
                .qemu_downtime_ms
                .map_or("-".to_string(), |d| d.to_string()),
            report.bytes
        );
        tracing::info!("{note}");
        ctx.observed.note(&note);
        ensure(report.completed(), || {
            format!(
                "the migration with the hot-plugged NIC attached ended {}",
                report.status
            )
        })?;
        ensure(v.pod.node == target, || {
            format!(
                "after the migration the guest's pod is on {}, not {target}",
                v.pod.node
            )
        })?;
        v.guest_ifname(&first_mac).await?;
        // The target pod has its own attachment for the plugged NIC, and the guest
        // still has the NIC and its address on it: it reaches the peer again.
        assert_attached(cluster, v, &case, &plug.pod_ifname).await?;
        v.first_ping(&case.peer.to_string(), Duration::from_secs(20))
            .await
            .map_err(|e| {
                Failure::msg(format!(
                    "after the migration the guest does not reach {} over the hot-plugged NIC {}: {e}",
                    case.peer, plug.mac
                ))
            })?;
        if let Some(r) = case.resource {
            let (allocated, _) = devices(cluster, &target, r).await?;
            ensure(allocated == 2, || {
                format!(
                    "the target node {target} has {allocated} of {r} allocated for the migrated VM, not 2 (its first NIC and the hot-plugged one)"
                )
            })?;
        }
        ensure(
            !cluster
                .node_access()?
                .pod_sandbox_exists(&source_pod.namespace, &source_pod.name)
                .await?,
            || format!("the source pod {} is still there", source_pod.name),
        )?;
        node_clean(cluster, &before_source, case.resource, "after the migration").await
    })
    .await?;
    node_clean(
        cluster,
        &before_target,
        case.resource,
        "after stopping the migrated VM",
    )
    .await
}
