//! Live migration of a QEMU guest between virt-launcher pods, as KubeVirt does it:
//! a target launcher pod on the other node gets its own attachments (its own
//! device-plugin allocation for a macvtap; the guest's MAC requested for every
//! multus network), QEMU waits there with `-incoming`, the source QEMU `migrate`s
//! over QMP across the pod network between the two pods, and after the handover the
//! source pod is deleted. A migration that fails leaves the guest on the source and
//! nothing of the target.
//!
//! What the LAN sees (which node's port the switch learnt the guest's MAC on, and
//! when) is the provider's to tell ([`LanWatch::lan_fdb`]); this module only
//! moves the guest.

use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::binding::MIGRATION_PORT;
use super::kubevirt::NetworkSource;
use super::qmp::Qmp;
use super::{Launcher, LauncherDevices, RunningVm, VmError, VmOptions, launcher_name};
use crate::contract::ability::LocalTopology;
use crate::contract::{Cluster, ClusterError, PodView};
use crate::objects::NetworkAttachmentDefinition;

/// How one migration is to go.
#[derive(Debug, Clone)]
pub struct MigrationPlan {
    pub(crate) target_node: String,
    /// QEMU's `max-bandwidth` (bytes/s); `None` is as fast as it goes.
    pub(crate) bandwidth: Option<u64>,
    /// Kill the target QEMU once the guest's memory is on its way (a migration that
    /// fails half-way).
    pub(crate) kill_target: bool,
    pub(crate) timeout: Duration,
    /// Told the target launcher pod once it exists (before QEMU moves anything):
    /// for a peer that talks to the target's own address (masquerade).
    pub(crate) on_target: Option<tokio::sync::mpsc::UnboundedSender<PodView>>,
}

impl MigrationPlan {
    pub fn to(node: &str) -> MigrationPlan {
        MigrationPlan {
            target_node: node.to_string(),
            bandwidth: None,
            kill_target: false,
            timeout: Duration::from_secs(60),
            on_target: None,
        }
    }
}

/// What a migration did.
#[derive(Debug, Clone)]
pub struct MigrationReport {
    pub(crate) source_pod: PodView,
    pub(crate) target_pod: PodView,
    /// QEMU's final status on the source: `completed` or `failed`.
    pub(crate) status: String,
    /// `migrate` sent to the final status seen.
    pub(crate) total: Duration,
    /// QEMU's own figures (source side): downtime and total time in ms, RAM bytes
    /// transferred.
    pub(crate) qemu_downtime_ms: Option<u64>,
    pub qemu_total_ms: Option<u64>,
    pub(crate) bytes: u64,
    /// When `migrate` was sent.
    pub(crate) started_at: SystemTime,
    /// When the source paused the guest for the last copy (QEMU's STOP event): the
    /// earliest moment the target may speak for the guest.
    pub(crate) source_stopped_at: Option<SystemTime>,
    /// When the final status was seen.
    pub(crate) ended_at: SystemTime,
}

impl MigrationReport {
    pub fn completed(&self) -> bool {
        self.status == "completed"
    }
}

/// Live migration of the cluster's guests (Capability::LiveMigration).
pub trait LiveMigration: Send + Sync {
    /// Migrates `vm` as `plan` says. After a completed migration `vm` runs in the
    /// target pod and the source pod is gone; after a failed one `vm` is unchanged
    /// and the target pod is gone.
    fn migrate<'a>(
        &'a self,
        vm: &'a mut RunningVm,
        nads: &'a [NetworkAttachmentDefinition],
        opts: &'a VmOptions,
        plan: &'a MigrationPlan,
    ) -> BoxFuture<'a, Result<MigrationReport, VmError>>;
    /// The LAN as this machine sees it, where it can (Capability::LanWatch).
    fn lan(&self) -> Option<&dyn LanWatch> {
        None
    }
}

/// The nodes' LAN seen from this machine (Capability::LanWatch): a host on it to
/// stream to a guest from, and its switch's forwarding table.
pub trait LanWatch: Send + Sync {
    /// A host on the nodes' LAN, outside every node (the LAN's gateway), holding
    /// `address` (CIDR) too: the network namespace a peer's stream starts from.
    fn lan_host<'a>(
        &'a self,
        address: Option<&'a str>,
    ) -> BoxFuture<'a, Result<std::path::PathBuf, ClusterError>>;
    /// Where the LAN's switch has learnt `mac`: (switch port, node behind it).
    fn lan_fdb<'a>(
        &'a self,
        mac: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, ClusterError>>;
    /// Every change of where the switch has learnt `mac`, as the switch announces it,
    /// until `done`: (when, ports). A frame from the wrong node is learnt and
    /// unlearnt again within one frame of the right node's: a poll sees it only by
    /// luck, an event stream always.
    fn lan_fdb_changes<'a>(
        &'a self,
        mac: &'a str,
        done: &'a std::sync::atomic::AtomicBool,
    ) -> BoxFuture<'a, Result<LanChanges, ClusterError>>;
}

/// What [`LanWatch::lan_fdb_changes`] saw: when, and (switch port, node) after it.
pub type LanChanges = Vec<(std::time::SystemTime, Vec<(String, String)>)>;

/// Routes every node's pod subnet through that node's LAN address on the other
/// nodes (the pod network's cross-node routes, as a host-gw overlay sets them), so
/// that two launcher pods on different nodes reach each other.
pub async fn route_pod_network(local: &dyn LocalTopology) -> Result<(), ClusterError> {
    let topo = local.topology().clone();
    for (i, node) in topo.nodes.iter().enumerate() {
        let ns = local.node_namespace(&node.name).await?;
        super::binding::ns_run(
            &ns.path(),
            &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
        )
        .await
        .map_err(|e| crate::contract::ability::node_error(&node.name, "forwarding", e))?;
        for (j, other) in topo.nodes.iter().enumerate() {
            if i == j {
                continue;
            }
            let subnet = topo.pod_subnet(j);
            let via = other.address.to_string();
            local
                .ns_ip(
                    &ns,
                    &[
                        "route",
                        "replace",
                        &subnet,
                        "via",
                        &via,
                        "dev",
                        &node.uplink,
                    ],
                )
                .await?;
        }
    }
    Ok(())
}

fn qmp_err(vm: &str) -> impl Fn(super::qmp::QmpError) -> VmError + '_ {
    move |source| VmError::Migration {
        vm: vm.to_string(),
        message: source.to_string(),
    }
}

fn mig_err(vm: &str, message: impl Into<String>) -> VmError {
    VmError::Migration {
        vm: vm.to_string(),
        message: message.into(),
    }
}

/// The pod-network address of a launcher pod (its network-status' default entry).
pub fn pod_ip(pod: &PodView) -> Option<String> {
    let text = pod
        .annotations
        .get(crate::multus::NETWORK_STATUS_ANNOTATION)?;
    crate::multus::status::parse_annotation(text)
        .ok()?
        .into_iter()
        .find(|s| s.default)?
        .ips
        .first()
        .cloned()
}

/// The target launcher pod's name: a fresh one per move, as KubeVirt's.
fn target_name(run_id: &str, vm: &RunningVm) -> String {
    let base = launcher_name(run_id, &vm.vm);
    let h = xxhash_rust::xxh64::xxh64(vm.pod.name.as_bytes(), 1);
    format!("{}-{:04x}", base, h & 0xffff)
}

/// Migrates `vm` to `plan.target_node` on a cluster of secnet's own nodes.
pub async fn migrate_qemu<C: Cluster + LocalTopology + LauncherDevices>(
    cluster: &C,
    run_id: &str,
    vm: &mut RunningVm,
    nads: &[NetworkAttachmentDefinition],
    opts: &VmOptions,
    plan: &MigrationPlan,
) -> Result<MigrationReport, VmError> {
    let name = vm.vm.name.clone();
    let source_qmp = vm
        .host
        .qmp_socket()
        .ok_or_else(|| mig_err(&name, "the source guest has no QMP socket"))?;
    route_pod_network(cluster).await.map_err(|e| {
        mig_err(
            &name,
            format!("routing the pod network between the nodes: {e}"),
        )
    })?;
    // The target asks for the guest's MACs on every multus network, so that its
    // attachments (a macvtap made by the device plugin, a veth of the OVS CNI)
    // carry them.
    let mut target_vm = vm.vm.clone();
    for iface in target_vm.interfaces.iter_mut() {
        if matches!(iface.network, NetworkSource::Multus { .. })
            && let Some(nic) = vm.nics.iter().find(|n| n.interface == iface.name)
        {
            iface.mac = Some(nic.mac.clone());
        }
    }
    let target_pod_name = target_name(run_id, vm);
    let mut launcher = Launcher::create(
        cluster,
        &target_vm,
        &target_pod_name,
        Some(&plan.target_node),
        nads,
        &opts.work_dir,
    )
    .await?;
    launcher.keep_guest_macs(&vm.nics);
    if let Some(tell) = &plan.on_target {
        let _ = tell.send(launcher.pod.clone());
    }
    let source_pod = vm.pod.clone();
    let result = hand_over(
        cluster,
        &vm.vm.clone(),
        &source_pod,
        &launcher,
        opts,
        plan,
        &source_qmp,
    )
    .await;
    match result {
        Ok((report, Some((qemu, agent)))) => {
            // The guest runs on the target: the source goes, as virt-handler deletes it.
            let mut source_host = std::mem::replace(&mut vm.host, Box::new(qemu));
            let source_pod = std::mem::replace(&mut vm.pod, launcher.pod.clone());
            vm.agent = agent;
            vm.nics = launcher.nics.clone();
            source_host
                .stop(&name, &source_pod, cluster)
                .await
                .map_err(|e| mig_err(&name, format!("removing the source: {e}")))?;
            Ok(report)
        }
        Ok((report, None)) => {
            delete_target(cluster, &launcher.pod).await;
            Ok(report)
        }
        Err(e) => {
            delete_target(cluster, &launcher.pod).await;
            Err(e)
        }
    }
}

async fn delete_target<C: Cluster>(cluster: &C, pod: &PodView) {
    match cluster.delete_pod(&pod.namespace, &pod.name).await {
        Ok(()) | Err(ClusterError::NoSuchPod(_)) => {}
        Err(e) => tracing::warn!(pod = %pod.name, "deleting the migration target: {e}"),
    }
}

/// Starts the target QEMU, migrates, and returns the report with the running
/// target (or `None` when the migration failed; the target QEMU is then dead).
async fn hand_over<C: Cluster + LocalTopology>(
    cluster: &C,
    vm: &super::kubevirt::VirtualMachine,
    source_pod: &PodView,
    launcher: &Launcher,
    opts: &VmOptions,
    plan: &MigrationPlan,
    source_qmp: &std::path::Path,
) -> Result<
    (
        MigrationReport,
        Option<(super::qemu::Qemu, super::agent::Agent)>,
    ),
    VmError,
> {
    let name = vm.name.clone();
    let target_ip = pod_ip(&launcher.pod).ok_or_else(|| {
        mig_err(
            &name,
            format!(
                "target pod {} has no pod-network address in its network-status",
                launcher.pod.name
            ),
        )
    })?;
    let uri = format!("tcp:{target_ip}:{MIGRATION_PORT}");
    let (mut target, target_agent) = launcher.spawn(cluster, vm, opts, Some(uri.clone())).await?;
    let target_qmp_path = target
        .qmp
        .clone()
        .ok_or_else(|| mig_err(&name, "the target has no QMP socket"))?;
    // Ready when QMP answers: QEMU listens on the incoming port by then.
    let mut target_qmp = Qmp::connect(&target_qmp_path)
        .await
        .map_err(qmp_err(&name))?;
    let mut source = Qmp::connect(source_qmp).await.map_err(qmp_err(&name))?;
    let mut params = json!({"downtime-limit": 300});
    params["max-bandwidth"] = Value::from(plan.bandwidth.unwrap_or(8 << 30));
    source
        .execute("migrate-set-parameters", params)
        .await
        .map_err(qmp_err(&name))?;
    let started_at = SystemTime::now();
    let t0 = Instant::now();
    source
        .execute("migrate", json!({"uri": uri}))
        .await
        .map_err(qmp_err(&name))?;
    let mut killed = false;
    let last = loop {
        let info = source
            .execute("query-migrate", json!({}))
            .await
            .map_err(qmp_err(&name))?;
        let status = info["status"].as_str().unwrap_or("").to_string();
        if plan.kill_target
            && !killed
            && status == "active"
            && info["ram"]["transferred"].as_u64().unwrap_or(0) > 0
        {
            tracing::info!(vm = %name, "killing the migration target half-way");
            target.kill();
            killed = true;
        }
        if matches!(status.as_str(), "completed" | "failed" | "cancelled") {
            break info;
        }
        if t0.elapsed() > plan.timeout {
            let _ = source.execute("migrate_cancel", json!({})).await;
            target.kill();
            return Err(mig_err(
                &name,
                format!("no end within {:?}; last status {info}", plan.timeout),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let total = t0.elapsed();
    let ended_at = SystemTime::now();
    let status = last["status"].as_str().unwrap_or("").to_string();
    let report = MigrationReport {
        source_pod: source_pod.clone(),
        target_pod: launcher.pod.clone(),
        status: status.clone(),
        total,
        qemu_downtime_ms: last["downtime"].as_u64(),
        qemu_total_ms: last["total-time"].as_u64(),
        bytes: last["ram"]["transferred"].as_u64().unwrap_or(0),
        started_at,
        source_stopped_at: source
            .events()
            .iter()
            .find(|e| e.name == "STOP")
            .map(|e| e.at),
        ended_at,
    };
    tracing::info!(vm = %name, %status, ?total, downtime_ms = ?report.qemu_downtime_ms, bytes = report.bytes, "migration ended");
    if status != "completed" {
        target.kill();
        // The source resumes the guest by itself; say so if it did not.
        let st = source
            .execute("query-status", json!({}))
            .await
            .map_err(qmp_err(&name))?;
        if st["status"].as_str() != Some("running") {
            return Err(mig_err(
                &name,
                format!(
                    "after the failed migration ({last}) the source guest is {st}, not running"
                ),
            ));
        }
        return Ok((report, None));
    }
    // The target runs the guest once the last page is in.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = target_qmp
            .execute("query-status", json!({}))
            .await
            .map_err(qmp_err(&name))?;
        if st["status"].as_str() == Some("running") {
            break;
        }
        if Instant::now() > deadline {
            target.kill();
            return Err(mig_err(
                &name,
                format!("the source says completed but the target guest is {st}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((report, Some((target, target_agent))))
}
