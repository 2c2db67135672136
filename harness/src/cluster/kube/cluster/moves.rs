//! KubeVirt guests moved and changed through KubeVirt's own API (the netns cluster
//! does both itself, `vm::migrate` and `vm::hotplug`):
//!
//! - a live migration is a `VirtualMachineInstanceMigration` (`vm::kubevirt_api`),
//!   labelled for the run, waited for until its phase is Succeeded or Failed; the
//!   report's times are the ones KubeVirt writes into the VMI's `migrationState`;
//! - a NIC is hot-plugged by a JSON patch of the `VirtualMachine` and is there once
//!   the VMI's `status.interfaces` lists it (and the guest shows its MAC); it is
//!   unplugged by the patch that marks it `absent` and is gone once the VMI no
//!   longer lists it.
//!
//! KubeVirt may move the guest to apply a plug: the launcher pod, the NICs and the
//! console are read again after every change.

use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use serde_json::Value;

use super::vms::{KubevirtGuest, console, guest_nics, resource};
use super::{KubeCluster, SCOPE_LABEL, api_err};
use crate::cluster::kube::apply::Placement;
use crate::cluster::kube::{FIELD_MANAGER, RUN_LABEL};
use crate::lab::wait::{Pace, Seen, poll_until};
use crate::objects::NetworkAttachmentDefinition;
use crate::vm::agent::Agent;
use crate::vm::hotplug::{NicHotplug, PlugReport, UnplugReport};
use crate::vm::kubevirt::VmInterface;
use crate::vm::kubevirt_api;
use crate::vm::migrate::{LiveMigration, MigrationPlan, MigrationReport};
use crate::vm::{RunningVm, VmError, VmOptions};

const VMIM_KIND: &str = "VirtualMachineInstanceMigration";
const VMIM_PLURAL: &str = "virtualmachineinstancemigrations";
/// How long a guest may take to show a plugged NIC.
const GUEST_WAIT: Duration = Duration::from_secs(30);

fn mig_err(vm: &str, message: impl Into<String>) -> VmError {
    VmError::Migration {
        vm: vm.to_string(),
        message: message.into(),
    }
}

fn hp_err(vm: &str, message: impl Into<String>) -> VmError {
    VmError::Hotplug {
        vm: vm.to_string(),
        message: message.into(),
    }
}

/// The migration's name: one per source pod and target, as a VM moves once from
/// a pod.
pub fn migration_name(vm: &str, source_pod: &str, target: &str) -> String {
    let h = xxhash_rust::xxh64::xxh64(format!("{source_pod}/{target}").as_bytes(), 2);
    format!("{vm}-mig-{:05x}", h & 0xfffff)
}

/// The VMIM secnet creates for moving `vm` (in `namespace`) to `target`, with the
/// run's labels.
pub fn migration_object(
    vm: &crate::vm::kubevirt::VirtualMachine,
    name: &str,
    namespace: &str,
    target: &str,
    labels: &[(&str, &str)],
) -> Value {
    let mut obj = kubevirt_api::migration(vm, name, target);
    obj["metadata"]["namespace"] = Value::from(namespace);
    for (k, v) in labels {
        obj["metadata"]["labels"][*k] = Value::from(*v);
    }
    obj
}

/// A migration's phase as KubeVirt last wrote it, and why it failed if it did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseSeen {
    pub phase: String,
    pub reason: Option<String>,
}

/// The phase of a VMIM and KubeVirt's reason for a failure: the migration state's
/// `failureReason`, else its conditions.
pub fn phase_of(vmim: &Value) -> PhaseSeen {
    let status = &vmim["status"];
    let phase = status["phase"].as_str().unwrap_or("(none yet)").to_string();
    let reason = status["migrationState"]["failureReason"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            let conds: Vec<String> = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{}={} {} {}",
                        c["type"].as_str().unwrap_or("?"),
                        c["status"].as_str().unwrap_or("?"),
                        c["reason"].as_str().unwrap_or(""),
                        c["message"].as_str().unwrap_or("")
                    )
                    .trim_end()
                    .to_string()
                })
                .collect();
            (!conds.is_empty()).then(|| conds.join("; "))
        });
    PhaseSeen { phase, reason }
}

/// The JSON patch that plugs `iface` into `vm` living in `namespace`, its network
/// where the scenario's NADs are (`vms::network_in`).
pub fn plug_patch(
    vm: &crate::vm::kubevirt::VirtualMachine,
    iface: &VmInterface,
    namespace: &str,
) -> Result<Value, crate::vm::kubevirt::KubevirtError> {
    let mut iface = iface.clone();
    if let crate::vm::kubevirt::NetworkSource::Multus {
        namespace: ns,
        name,
    } = &mut iface.network
    {
        let full = super::vms::network_in(namespace, &vm.namespace, &format!("{ns}/{name}"));
        if let Some((n, _)) = full.split_once('/') {
            *ns = n.to_string();
        }
    }
    kubevirt_api::plug_patch(vm, &iface)
}

fn timestamp(v: &Value) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(SystemTime::from)
}

impl KubeCluster {
    fn vmims(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            namespace,
            &resource(VMIM_KIND, VMIM_PLURAL),
        )
    }

    fn run_labels(&self) -> Vec<(&str, &str)> {
        let mut labels = vec![(RUN_LABEL, self.run.as_str())];
        if let Some(scope) = &self.scope {
            labels.push((SCOPE_LABEL, scope.as_str()));
        }
        labels
    }

    /// The guest behind `vm` as KubeVirt runs it now: its VMI's UID, `pod` its pod.
    /// (Not an `async fn`: the future must not hold `vm`, which is not `Sync`.)
    fn guest_of(
        &self,
        vm: &RunningVm,
        pod: &str,
    ) -> impl Future<Output = Result<KubevirtGuest, String>> + Send + '_ {
        let (namespace, name, kind) = (
            vm.pod.namespace.clone(),
            vm.vm.name.clone(),
            vm.vm.kind.clone(),
        );
        self.guest_named(namespace, name, kind, pod.to_string())
    }

    async fn guest_named(
        &self,
        namespace: String,
        name: String,
        kind: String,
        pod: String,
    ) -> Result<KubevirtGuest, String> {
        let mut guest = KubevirtGuest {
            client: self.client.clone(),
            namespace,
            name,
            kind,
            vmi_uid: String::new(),
            pod,
            timeout: self.opts.pod_timeout,
        };
        let vmi = guest.vmis().get(&guest.name).await.map_err(api_err)?;
        guest.vmi_uid = vmi.metadata.uid.clone().unwrap_or_default();
        Ok(guest)
    }

    /// Reads the VMI and its running launcher pod again and points `vm` at them:
    /// pod, NICs, and (if the pod changed) a new console for the agent.
    async fn refresh(&self, vm: &mut RunningVm, node: Option<&str>) -> Result<(), String> {
        let mut guest = self.guest_of(vm, &vm.pod.name).await?;
        let vmi = guest.vmis().get(&guest.name).await.map_err(api_err)?;
        let pods = self.launcher_pods(&guest, Some(&guest.vmi_uid)).await;
        let running = pods.iter().find(|p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.metadata.deletion_timestamp.is_none()
                && node
                    .is_none_or(|n| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(n))
        });
        let Some(p) = running else {
            return Err(format!(
                "no Running virt-launcher pod of the VMI{} among {} labelled kubevirt.io/created-by={}",
                node.map(|n| format!(" on {n}")).unwrap_or_default(),
                pods.len(),
                guest.vmi_uid
            ));
        };
        let pod = super::pods::view_of(&guest.namespace, p);
        vm.nics = guest_nics(&vm.vm, &vmi, &pod)
            .map_err(|iface| format!("no pod interface for {iface}"))?;
        if pod.name != vm.pod.name {
            guest.pod = pod.name.clone();
            let stream = console(&self.client, &guest.namespace, &guest.name)
                .await
                .map_err(|e| format!("the serial console on the new pod: {e}"))?;
            vm.reattach(
                Agent::over(stream).poking(Duration::from_secs(2)),
                Box::new(guest),
            );
        }
        vm.pod = pod;
        Ok(())
    }

    /// Moves `vm` with a VMIM and waits for its end within `plan.timeout`.
    pub async fn migrate_vmi(
        &self,
        vm: &mut RunningVm,
        plan: &MigrationPlan,
    ) -> Result<MigrationReport, VmError> {
        let name = vm.vm.name.clone();
        let ns = vm.pod.namespace.clone();
        let mig = migration_name(&name, &vm.pod.name, &plan.target_node);
        let what = format!("{VMIM_KIND} {ns}/{mig}");
        let obj = migration_object(&vm.vm, &mig, &ns, &plan.target_node, &self.run_labels());
        let typed: DynamicObject = serde_json::from_value(obj)
            .map_err(|e| mig_err(&name, format!("build the {what}: {e}")))?;
        // The scenario's teardown deletes it by label.
        self.touch(
            &Placement {
                resource: resource(VMIM_KIND, VMIM_PLURAL),
                namespaced: true,
            },
            Some(&ns),
        );
        let api = self.vmims(&ns);
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let t0 = Instant::now();
        let asked_at = SystemTime::now();
        api.create(&pp, &typed)
            .await
            .map_err(|e| mig_err(&name, format!("create the {what}: {}", api_err(e))))?;
        let source_pod = vm.pod.clone();
        let end = self.wait_migration(&api, &mig, &name, &ns, plan).await?;
        let total = t0.elapsed();
        let vmi = self
            .guest_of(vm, &vm.pod.name)
            .await
            .map_err(|e| mig_err(&name, format!("after the {what}: the VMI: {e}")))?;
        let vmi =
            vmi.vmis().get(&name).await.map_err(|e| {
                mig_err(&name, format!("after the {what}: the VMI: {}", api_err(e)))
            })?;
        let state = &vmi.data["status"]["migrationState"];
        let completed = end.phase == "Succeeded";
        if !completed && !plan.kill_target {
            return Err(mig_err(
                &name,
                format!(
                    "{what} ended in phase {}: {}; the VMI stays on {}",
                    end.phase,
                    end.reason.as_deref().unwrap_or("KubeVirt gave no reason"),
                    vmi.data["status"]["nodeName"].as_str().unwrap_or("?")
                ),
            ));
        }
        let node = vmi.data["status"]["nodeName"].as_str().unwrap_or("");
        if completed && node != plan.target_node {
            return Err(mig_err(
                &name,
                format!(
                    "{what} Succeeded but the VMI runs on {node:?}, not {}",
                    plan.target_node
                ),
            ));
        }
        if completed {
            self.refresh(vm, Some(&plan.target_node))
                .await
                .map_err(|e| mig_err(&name, format!("after the {what}: {e}")))?;
        }
        Ok(MigrationReport {
            source_pod,
            target_pod: vm.pod.clone(),
            status: if completed { "completed" } else { "failed" }.into(),
            total,
            // KubeVirt reports no downtime or bytes of its own: the stream measures.
            qemu_downtime_ms: None,
            qemu_total_ms: None,
            bytes: 0,
            started_at: timestamp(&state["startTimestamp"]).unwrap_or(asked_at),
            source_stopped_at: None,
            ended_at: timestamp(&state["endTimestamp"]).unwrap_or_else(SystemTime::now),
        })
    }

    /// Polls the VMIM until Succeeded or Failed; at the deadline an error naming
    /// the last phase seen. With `plan.kill_target` the target pod is deleted as
    /// soon as KubeVirt names it.
    async fn wait_migration(
        &self,
        api: &Api<DynamicObject>,
        mig: &str,
        name: &str,
        ns: &str,
        plan: &MigrationPlan,
    ) -> Result<PhaseSeen, VmError> {
        let killed = std::sync::atomic::AtomicBool::new(false);
        let pace = Pace {
            first: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let waited = poll_until(plan.timeout, pace, || {
            let killed = &killed;
            async move {
                let obj = api.get(mig).await.map_err(|e| {
                    mig_err(name, format!("read {VMIM_KIND} {ns}/{mig}: {}", api_err(e)))
                })?;
                let seen = phase_of(&obj.data);
                if matches!(seen.phase.as_str(), "Succeeded" | "Failed") {
                    return Ok(Seen::Ready(seen));
                }
                let target = obj.data["status"]["migrationState"]["targetPod"].as_str();
                if plan.kill_target
                    && !killed.load(std::sync::atomic::Ordering::Relaxed)
                    && let Some(pod) = target
                {
                    tracing::info!(vm = %name, %pod, "deleting the migration target half-way");
                    let pods: Api<k8s_openapi::api::core::v1::Pod> =
                        Api::namespaced(self.client.clone(), ns);
                    let _ = pods
                        .delete(pod, &DeleteParams::default().grace_period(0))
                        .await;
                    killed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(Seen::NotYet(seen))
            }
        })
        .await?;
        waited.map_err(|last| {
            mig_err(
                name,
                format!(
                    "{VMIM_KIND} {ns}/{mig} did not finish within {:?}; last phase seen: {}{}",
                    plan.timeout,
                    last.phase,
                    last.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                ),
            )
        })
    }

    /// Sends `patch` (RFC 6902) to the VM `name` in `namespace`.
    async fn patch_vm(&self, namespace: &str, name: &str, patch: &Value) -> Result<(), String> {
        let uri = format!("/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}");
        let body = serde_json::to_vec(patch).map_err(|e| e.to_string())?;
        let req = http::Request::patch(&uri)
            .header(http::header::CONTENT_TYPE, "application/json-patch+json")
            .body(body)
            .map_err(|e| format!("PATCH {uri}: {e}"))?;
        self.client
            .request::<DynamicObject>(req)
            .await
            .map(|_| ())
            .map_err(|e| format!("PATCH {uri}: {}", api_err(e)))
    }

    /// Polls the VMI until `done` says yes of its `status.interfaces` (within
    /// `timeout`); at the deadline the interfaces last seen.
    async fn wait_interfaces(
        &self,
        guest: &KubevirtGuest,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Result<Result<(), String>, String> {
        let pace = Pace::every(Duration::from_millis(200));
        let waited = poll_until(timeout, pace, || async {
            let vmi = guest.vmis().get(&guest.name).await.map_err(api_err)?;
            let ifaces = vmi.data["status"]["interfaces"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if done(&ifaces) {
                return Ok(Seen::Ready(()));
            }
            let names: Vec<&str> = ifaces.iter().filter_map(|i| i["name"].as_str()).collect();
            Ok::<_, String>(Seen::NotYet(format!("{names:?}")))
        })
        .await?;
        Ok(waited.map_err(|last| format!("the VMI's status.interfaces last listed {last}")))
    }

    /// Hot-plugs `iface` into the VM by patching it; waits for the VMI to list it
    /// and the guest to show its MAC.
    pub async fn plug_vm(
        &self,
        vm: &mut RunningVm,
        iface: &VmInterface,
        opts: &VmOptions,
    ) -> Result<PlugReport, VmError> {
        let name = vm.vm.name.clone();
        let t0 = Instant::now();
        if vm.vm.interfaces.iter().any(|i| i.name == iface.name) {
            return Err(hp_err(
                &name,
                format!("the VM already has an interface {}", iface.name),
            ));
        }
        let patch = plug_patch(&vm.vm, iface, &vm.pod.namespace)
            .map_err(|e| hp_err(&name, e.to_string()))?;
        self.patch_vm(&vm.pod.namespace, &name, &patch)
            .await
            .map_err(|e| hp_err(&name, e))?;
        vm.vm.interfaces.push(iface.clone());
        let want = iface.name.clone();
        let timeout = opts.boot_timeout.max(self.opts.pod_timeout);
        let guest = self
            .guest_of(vm, &vm.pod.name)
            .await
            .map_err(|e| hp_err(&name, e))?;
        self.wait_interfaces(&guest, timeout, |ifaces| {
            ifaces
                .iter()
                .any(|i| i["name"].as_str() == Some(&want) && i["mac"].as_str().is_some())
        })
        .await
        .map_err(|e| hp_err(&name, e))?
        .map_err(|e| {
            hp_err(
                &name,
                format!("interface {want} not plugged within {timeout:?}: {e}"),
            )
        })?;
        let attach = t0.elapsed();
        self.refresh(vm, None)
            .await
            .map_err(|e| hp_err(&name, format!("after the plug: {e}")))?;
        let nic = vm
            .nics
            .iter()
            .find(|n| n.interface == iface.name)
            .cloned()
            .ok_or_else(|| hp_err(&name, format!("no NIC for {} after the plug", iface.name)))?;
        let seen_from = Instant::now();
        let mut last = String::new();
        while seen_from.elapsed() < GUEST_WAIT {
            match vm.guest_ifname(&nic.mac).await {
                Ok(_) => {
                    last.clear();
                    break;
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !last.is_empty() {
            return Err(hp_err(
                &name,
                format!(
                    "the guest shows no NIC with MAC {} within {GUEST_WAIT:?}: {last}",
                    nic.mac
                ),
            ));
        }
        Ok(PlugReport {
            pod_ifname: nic.pod_ifname,
            mac: nic.mac,
            attach,
            bind: Duration::ZERO,
            guest_sees: seen_from.elapsed(),
            total: t0.elapsed(),
        })
    }

    /// Unplugs interface `iface` by marking it absent; waits for the VMI to drop it.
    pub async fn unplug_vm(
        &self,
        vm: &mut RunningVm,
        iface: &str,
    ) -> Result<UnplugReport, VmError> {
        let name = vm.vm.name.clone();
        let t0 = Instant::now();
        let pod_ifname = vm
            .nic(iface)
            .map(|n| n.pod_ifname.clone())
            .ok_or_else(|| hp_err(&name, format!("the VM has no NIC {iface}")))?;
        let patch =
            kubevirt_api::unplug_patch(&vm.vm, iface).map_err(|e| hp_err(&name, e.to_string()))?;
        self.patch_vm(&vm.pod.namespace, &name, &patch)
            .await
            .map_err(|e| hp_err(&name, e))?;
        let timeout = self.opts.pod_timeout;
        let guest = self
            .guest_of(vm, &vm.pod.name)
            .await
            .map_err(|e| hp_err(&name, e))?;
        self.wait_interfaces(&guest, timeout, |ifaces| {
            !ifaces.iter().any(|i| i["name"].as_str() == Some(iface))
        })
        .await
        .map_err(|e| hp_err(&name, e))?
        .map_err(|e| {
            hp_err(
                &name,
                format!("interface {iface} still there after {timeout:?}: {e}"),
            )
        })?;
        let device_deleted = t0.elapsed();
        vm.vm.interfaces.retain(|i| i.name != iface);
        self.refresh(vm, None)
            .await
            .map_err(|e| hp_err(&name, format!("after the unplug: {e}")))?;
        Ok(UnplugReport {
            pod_ifname,
            device_deleted,
            detach: t0.elapsed() - device_deleted,
            total: t0.elapsed(),
        })
    }
}

impl LiveMigration for KubeCluster {
    /// Through a VirtualMachineInstanceMigration; KubeVirt makes the target pod.
    fn migrate<'a>(
        &'a self,
        vm: &'a mut RunningVm,
        _nads: &'a [NetworkAttachmentDefinition],
        _opts: &'a VmOptions,
        plan: &'a MigrationPlan,
    ) -> BoxFuture<'a, Result<MigrationReport, VmError>> {
        Box::pin(self.migrate_vmi(vm, plan))
    }
}

impl NicHotplug for KubeCluster {
    /// By patching the VirtualMachine (KubeVirt's dynamic networks).
    fn plug<'a>(
        &'a self,
        vm: &'a mut RunningVm,
        iface: &'a VmInterface,
        opts: &'a VmOptions,
    ) -> BoxFuture<'a, Result<PlugReport, VmError>> {
        Box::pin(self.plug_vm(vm, iface, opts))
    }

    fn unplug<'a>(
        &'a self,
        vm: &'a mut RunningVm,
        iface: &'a str,
    ) -> BoxFuture<'a, Result<UnplugReport, VmError>> {
        Box::pin(self.unplug_vm(vm, iface))
    }
}
