//! VMs on a real cluster, through KubeVirt: the seed's VirtualMachine fixture created
//! in the run's namespace (run and scope labels, pinned by a hostname nodeSelector),
//! booting secnet's own guest (kernel + initramfs with the agent) by `kernelBoot`
//! from a container image; Running with its interfaces; its virt-launcher pod for
//! capacity accounting and network-status; the agent reached over the VMI's serial
//! console websocket. Stop deletes the VM and waits until the VMI and the pod are gone.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod as KPod;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, LogParams,
    PostParams,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, Message, protocol::Role};

use super::diagnostics::describe;
use super::{HOSTNAME_LABEL, KubeCluster, SCOPE_LABEL, api_err, is_not_found};
use crate::cluster::kube::{FIELD_MANAGER, RUN_LABEL};
use crate::cluster::{ClusterError, PodView};
use crate::lab::wait::{Pace, Seen, poll_until};
use crate::multus::NETWORK_STATUS_ANNOTATION;
use crate::vm::agent::Agent;
use crate::vm::image::GuestImage;
use crate::vm::kubevirt::{BindingKind, VirtualMachine};
use crate::vm::{GuestNic, RunningVm, VmError, VmOptions};

/// The container image holding the guest's kernel and initramfs (the kind provider
/// builds and loads it; on another cluster push it and name it here).
pub const GUEST_IMAGE: &str = "localhost/secnet-guest:dev";
/// Where the guest image keeps them.
pub const KERNEL_PATH: &str = "/boot/kernel";
pub const INITRD_PATH: &str = "/boot/initrd.cpio";
/// The serial console is KubeVirt's only port: the agent shares it with the kernel,
/// which then prints emergencies only; a panic hangs (no reboot loop) so that the
/// console shows it.
pub const KUBEVIRT_CMDLINE: &str = "console=ttyS0 secnet.agent=ttyS0 panic=0 rdinit=/init \
     loglevel=1 cryptomgr.notests random.trust_cpu=on mitigations=off";
/// The console subprotocol virt-api speaks (raw serial bytes in binary frames).
pub const CONSOLE_PROTOCOL: &str = "plain.kubevirt.io";
/// Where the kubevirt component set puts KubeVirt (namespace and CR name alike).
pub const KUBEVIRT_NAMESPACE: &str = "kubevirt";
/// The container of virt-launcher that logs the serial console.
const CONSOLE_LOG_CONTAINER: &str = "guest-console-log";

/// `SECNET_GUEST_IMAGE`, else [`GUEST_IMAGE`].
pub fn guest_image() -> String {
    std::env::var("SECNET_GUEST_IMAGE").unwrap_or_else(|_| GUEST_IMAGE.into())
}

/// The guest image's build context: its Containerfile (the kernel and initramfs in
/// an otherwise empty image, as KubeVirt's kernelBoot containers are).
pub fn guest_containerfile() -> String {
    format!("FROM scratch\nCOPY kernel {KERNEL_PATH}\nCOPY initrd.cpio {INITRD_PATH}\n")
}

/// Writes the build context for `image` into `dir`.
pub fn write_guest_context(image: &GuestImage, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("Containerfile"), guest_containerfile())?;
    std::fs::copy(&image.kernel, dir.join("kernel"))?;
    std::fs::copy(&image.initrd, dir.join("initrd.cpio"))?;
    Ok(())
}

pub(super) fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kubevirt.io", "v1", kind), plural)
}

/// The object KubeVirt is given for `vm`: the fixture named and labelled for the
/// run, in `namespace`, pinned to `node`, booting the guest image by kernelBoot
/// with its serial console logged. Multus networks point where the scenario's NADs
/// are ([`network_in`]).
pub fn vm_object(
    vm: &VirtualMachine,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    node: Option<&str>,
    image: &str,
    cmdline: &str,
) -> Value {
    let mut obj = vm.raw.clone();
    obj["metadata"] = json!({"name": vm.name, "namespace": namespace, "labels": labels});
    if let Some(map) = obj.as_object_mut() {
        map.remove("status");
    }
    let spec = if vm.kind == "VirtualMachine" {
        let spec = &mut obj["spec"];
        if let Some(s) = spec.as_object_mut() {
            s.remove("running");
        }
        spec["runStrategy"] = json!("Always");
        let template = &mut spec["template"];
        for (k, v) in labels {
            template["metadata"]["labels"][k] = json!(v);
        }
        &mut template["spec"]
    } else {
        &mut obj["spec"]
    };
    if let Some(node) = node {
        spec["nodeSelector"][HOSTNAME_LABEL] = json!(node);
    }
    spec["domain"]["firmware"]["kernelBoot"] = json!({
        "kernelArgs": cmdline,
        "container": {
            "image": image,
            "kernelPath": KERNEL_PATH,
            "initrdPath": INITRD_PATH,
            "imagePullPolicy": "IfNotPresent",
        },
    });
    spec["domain"]["devices"]["autoattachSerialConsole"] = json!(true);
    spec["domain"]["devices"]["logSerialConsole"] = json!(true);
    for net in spec["networks"].as_array_mut().into_iter().flatten() {
        if let Some(name) = net["multus"]["networkName"].as_str() {
            net["multus"]["networkName"] = json!(network_in(namespace, &vm.namespace, name));
        }
    }
    obj
}

/// A multus network name as the VM in `namespace` must give it: the scenario's
/// NADs of the fixture's `default` namespace (or none) are applied in the run's
/// namespace, so a network there is looked up there.
pub fn network_in(namespace: &str, fixture_ns: &str, name: &str) -> String {
    let (ns, nad) = name.split_once('/').unwrap_or((fixture_ns, name));
    match ns {
        "" | "default" => format!("{namespace}/{nad}"),
        other => format!("{other}/{nad}"),
    }
}

/// A VMI's phase and its conditions, one line.
pub(super) fn vmi_summary(vmi: Option<&DynamicObject>) -> String {
    let Some(vmi) = vmi else {
        return "no VMI".into();
    };
    let status = &vmi.data["status"];
    let mut s = format!(
        "VMI phase {}",
        status["phase"].as_str().unwrap_or("(none yet)")
    );
    for c in status["conditions"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "; {}={} {} {}",
            c["type"].as_str().unwrap_or("?"),
            c["status"].as_str().unwrap_or("?"),
            c["reason"].as_str().unwrap_or(""),
            c["message"].as_str().unwrap_or("")
        ));
    }
    s
}

/// The guest MAC KubeVirt reports for interface `name`, else the fixture's.
fn status_mac(vmi: &DynamicObject, vm: &VirtualMachine, name: &str) -> Option<String> {
    vmi.data["status"]["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["name"].as_str() == Some(name))
        .and_then(|i| i["mac"].as_str())
        .map(str::to_string)
        .or_else(|| {
            vm.interfaces
                .iter()
                .find(|i| i.name == name)
                .and_then(|i| i.mac.clone())
        })
}

/// A KubeVirt guest: what stopping it and reporting on it need.
#[derive(Clone)]
pub struct KubevirtGuest {
    pub(super) client: Client,
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) vmi_uid: String,
    /// The launcher pod running the guest now (a new one after a migration).
    pub(super) pod: String,
    pub(super) timeout: Duration,
}

impl KubevirtGuest {
    pub(super) fn vmis(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &resource("VirtualMachineInstance", "virtualmachineinstances"),
        )
    }

    /// The VMI's state and the serial console as virt-launcher logged it.
    pub async fn failure_report(&self) -> (String, String) {
        let vmi = self.vmis().get_opt(&self.name).await.ok().flatten();
        let pods: Api<KPod> = Api::namespaced(self.client.clone(), &self.namespace);
        let lp = LogParams {
            container: Some(CONSOLE_LOG_CONTAINER.into()),
            tail_lines: Some(100),
            ..LogParams::default()
        };
        let logged = match pods.logs(&self.pod, &lp).await {
            Ok(t) => t,
            Err(e) => format!("(not available: {})", api_err(e)),
        };
        (vmi_summary(vmi.as_ref()), logged)
    }

    /// The launcher pod while it exists: by name once known, else any pod with the
    /// VM's name label (a VM that failed before its pod was found).
    async fn launcher_left(&self, pods: &Api<KPod>) -> Result<Option<KPod>, String> {
        if !self.pod.is_empty() {
            return pods.get_opt(&self.pod).await.map_err(api_err);
        }
        let lp = ListParams::default().labels(&format!("vm.kubevirt.io/name={}", self.name));
        pods.list(&lp)
            .await
            .map(|l| l.items.into_iter().next())
            .map_err(api_err)
    }

    /// Deletes the VM (or VMI) and waits until the VMI and its virt-launcher pod
    /// are gone.
    pub async fn stop(&mut self) -> Result<(), VmError> {
        let fail = |what: &str, state: String| VmError::Kubevirt {
            vm: self.name.clone(),
            what: what.to_string(),
            state,
        };
        let owner = if self.kind == "VirtualMachine" {
            resource("VirtualMachine", "virtualmachines")
        } else {
            resource("VirtualMachineInstance", "virtualmachineinstances")
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &owner);
        match api.delete(&self.name, &DeleteParams::foreground()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(fail(&format!("delete {}", self.kind), api_err(e))),
        }
        let pods: Api<KPod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pace = Pace::every(Duration::from_millis(500));
        let waited = poll_until(self.timeout, pace, || async {
            let vmi = self.vmis().get_opt(&self.name).await;
            let pod = self.launcher_left(&pods).await;
            let left: Vec<String> = [
                match &vmi {
                    Ok(Some(v)) if v.metadata.uid.as_deref() == Some(&self.vmi_uid) => {
                        Some(vmi_summary(Some(v)))
                    }
                    Ok(_) => None,
                    Err(_) => Some("the VMI (cannot tell)".into()),
                },
                match &pod {
                    Ok(Some(p)) => Some(format!(
                        "pod {}: {}",
                        p.metadata.name.as_deref().unwrap_or("?"),
                        describe(Some(p))
                    )),
                    Ok(None) => None,
                    Err(e) => Some(format!("its virt-launcher pod (cannot tell: {e})")),
                },
            ]
            .into_iter()
            .flatten()
            .collect();
            Ok::<_, std::convert::Infallible>(if left.is_empty() {
                Seen::Ready(())
            } else {
                Seen::NotYet(left)
            })
        })
        .await;
        let Ok(waited) = waited;
        waited.map_err(|left| VmError::Left {
            vm: self.name.clone(),
            what: format!("after {:?}: {}", self.timeout, left.join("; ")),
        })
    }
}

impl KubeCluster {
    /// Polls the KubeVirt CR (`kubevirt/kubevirt`, as the component set names it)
    /// until it is Available: virt-api serves the VM API and the console only then.
    pub async fn wait_kubevirt_available(&self, timeout: Duration) -> Result<(), ClusterError> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            KUBEVIRT_NAMESPACE,
            &resource("KubeVirt", "kubevirts"),
        );
        let pace = Pace::every(Duration::from_secs(2));
        let waited = poll_until(timeout, pace, || async {
            let state = match api.get_opt(KUBEVIRT_NAMESPACE).await {
                Ok(Some(kv)) => {
                    let conditions = kv.data["status"]["conditions"].as_array().cloned();
                    let available = conditions.iter().flatten().any(|c| {
                        c["type"].as_str() == Some("Available")
                            && c["status"].as_str() == Some("True")
                    });
                    if available {
                        return Ok(Seen::Ready(()));
                    }
                    format!(
                        "phase {}; conditions {}",
                        kv.data["status"]["phase"].as_str().unwrap_or("(none)"),
                        kv.data["status"]["conditions"]
                    )
                }
                Ok(None) => "no KubeVirt CR kubevirt/kubevirt".into(),
                Err(e) => api_err(e),
            };
            Ok::<_, std::convert::Infallible>(Seen::NotYet(state))
        })
        .await;
        let Ok(waited) = waited;
        match waited {
            Ok(()) => Ok(()),
            Err(state) => Err(ClusterError::Timeout {
                what: "KubeVirt to be Available".into(),
                seconds: timeout.as_secs(),
                state: format!("{state}\n{}", self.kubevirt_pods().await),
            }),
        }
    }

    /// The kubevirt namespace's pods and their state, one per line.
    async fn kubevirt_pods(&self) -> String {
        let api: Api<KPod> = Api::namespaced(self.client.clone(), KUBEVIRT_NAMESPACE);
        let mut out = Vec::new();
        for p in api
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let name = p.metadata.name.clone().unwrap_or_default();
            out.push(format!(
                "pod {KUBEVIRT_NAMESPACE}/{name}: {}",
                describe(Some(&p))
            ));
        }
        if out.is_empty() {
            out.push(format!("no pods in namespace {KUBEVIRT_NAMESPACE}"));
        }
        out.join("\n")
    }

    /// Runs `vm` with KubeVirt: created in the run's namespace, Running with its
    /// interfaces, its virt-launcher pod found, the agent on its serial console.
    pub async fn start_vm(
        &self,
        vm: &VirtualMachine,
        node: Option<&str>,
        opts: &VmOptions,
    ) -> Result<RunningVm, VmError> {
        let fail = |what: &str, state: String| VmError::Kubevirt {
            vm: vm.name.clone(),
            what: what.to_string(),
            state,
        };
        let ns = self.run_namespace();
        self.create_run_namespace()
            .await
            .map_err(|e| fail(&format!("create namespace {ns}"), e.to_string()))?;
        let mut labels = BTreeMap::from([(RUN_LABEL.to_string(), self.run.clone())]);
        if let Some(scope) = &self.scope {
            labels.insert(SCOPE_LABEL.into(), scope.clone());
        }
        let obj = vm_object(
            vm,
            &ns,
            &labels,
            node,
            &guest_image(),
            &opts.cmdline(KUBEVIRT_CMDLINE),
        );
        let (kind, plural) = if vm.kind == "VirtualMachine" {
            ("VirtualMachine", "virtualmachines")
        } else {
            ("VirtualMachineInstance", "virtualmachineinstances")
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &ns, &resource(kind, plural));
        // The scenario's teardown deletes it by label should the scenario not stop it.
        self.touch(
            &crate::cluster::kube::apply::Placement {
                resource: resource(kind, plural),
                namespaced: true,
            },
            Some(&ns),
        );
        let typed: DynamicObject = serde_json::from_value(obj)
            .map_err(|e| fail(&format!("build the {kind}"), e.to_string()))?;
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let started = Instant::now();
        api.create(&pp, &typed)
            .await
            .map_err(|e| fail(&format!("create {kind} {ns}/{}", vm.name), api_err(e)))?;
        let mut guest = KubevirtGuest {
            client: self.client.clone(),
            namespace: ns.clone(),
            name: vm.name.clone(),
            kind: kind.to_string(),
            vmi_uid: String::new(),
            pod: String::new(),
            timeout: self.opts.pod_timeout,
        };
        match self.attach(vm, &mut guest, started, opts).await {
            Ok(running) => Ok(running),
            Err(e) => {
                // Nothing may stay behind a VM that did not come up.
                let _ = guest.stop().await;
                Err(e)
            }
        }
    }

    async fn attach(
        &self,
        vm: &VirtualMachine,
        guest: &mut KubevirtGuest,
        started: Instant,
        opts: &VmOptions,
    ) -> Result<RunningVm, VmError> {
        let vmi = self.wait_vmi_running(vm, guest, opts.boot_timeout).await?;
        guest.vmi_uid = vmi.metadata.uid.clone().unwrap_or_default();
        let pod = self.launcher_pod(vm, guest).await?;
        guest.pod = pod.name.clone();
        let nics = guest_nics(vm, &vmi, &pod).map_err(|interface| VmError::NoPodInterface {
            vm: vm.name.clone(),
            interface,
        })?;
        let stream = console(&self.client, &guest.namespace, &guest.name)
            .await
            .map_err(|e| VmError::Kubevirt {
                vm: vm.name.clone(),
                what: "open the serial console".into(),
                state: e,
            })?;
        let agent = Agent::over(stream).poking(Duration::from_secs(2));
        tracing::debug!(vm = %vm.name, pod = %pod.name, nics = nics.len(), "KubeVirt VMI running");
        let host = Box::new(guest.clone());
        Ok(RunningVm::new(
            vm.clone(),
            pod,
            nics,
            host,
            agent,
            started,
            "kubevirt",
        ))
    }

    /// Polls the VMI until Running with a MAC for every interface; a failed VMI or
    /// the deadline is an error with its conditions, events and launcher pod.
    async fn wait_vmi_running(
        &self,
        vm: &VirtualMachine,
        guest: &KubevirtGuest,
        timeout: Duration,
    ) -> Result<DynamicObject, VmError> {
        let pace = Pace::every(Duration::from_millis(500));
        let waited = poll_until(timeout.max(self.opts.pod_timeout), pace, || async {
            let vmi = guest.vmis().get_opt(&guest.name).await.ok().flatten();
            if let Some(v) = &vmi {
                let phase = v.data["status"]["phase"].as_str().unwrap_or("");
                let macs = vm
                    .interfaces
                    .iter()
                    .all(|i| status_mac(v, vm, &i.name).is_some());
                if phase == "Running" && macs {
                    return Ok(Seen::Ready(v.clone()));
                }
                if matches!(phase, "Failed" | "Succeeded") {
                    return Err(self.vmi_error(vm, guest, vmi.as_ref(), "run").await);
                }
            }
            Ok(Seen::NotYet(vmi))
        })
        .await?;
        match waited {
            Ok(vmi) => Ok(vmi),
            Err(vmi) => Err(self
                .vmi_error(
                    vm,
                    guest,
                    vmi.as_ref(),
                    &format!("see the VMI Running within {:?}", timeout),
                )
                .await),
        }
    }

    /// The VMI's conditions, its events and its launcher pods' state and logs.
    async fn vmi_error(
        &self,
        vm: &VirtualMachine,
        guest: &KubevirtGuest,
        vmi: Option<&DynamicObject>,
        what: &str,
    ) -> VmError {
        let uid = vmi.and_then(|v| v.metadata.uid.clone());
        let mut state = vec![
            vmi_summary(vmi),
            format!(
                "events:\n{}",
                self.events_of(&guest.namespace, &guest.name, uid.as_deref())
                    .await
            ),
        ];
        for p in self.launcher_pods(guest, uid.as_deref()).await {
            let name = p.metadata.name.clone().unwrap_or_default();
            state.push(format!("virt-launcher pod {name}: {}", describe(Some(&p))));
            state.push(self.logs_of(&guest.namespace, &p).await);
        }
        VmError::Kubevirt {
            vm: vm.name.clone(),
            what: what.to_string(),
            state: state.join("\n"),
        }
    }

    /// The VMI's virt-launcher pods: by the VMI's UID, else by the VM's name.
    pub(super) async fn launcher_pods(
        &self,
        guest: &KubevirtGuest,
        uid: Option<&str>,
    ) -> Vec<KPod> {
        let api: Api<KPod> = Api::namespaced(self.client.clone(), &guest.namespace);
        let selector = match uid {
            Some(uid) => format!("kubevirt.io/created-by={uid}"),
            None => format!("vm.kubevirt.io/name={}", guest.name),
        };
        api.list(&ListParams::default().labels(&selector))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }

    /// The running virt-launcher pod of the VMI, as the scenarios see pods.
    pub(super) async fn launcher_pod(
        &self,
        vm: &VirtualMachine,
        guest: &KubevirtGuest,
    ) -> Result<PodView, VmError> {
        let pods = self.launcher_pods(guest, Some(&guest.vmi_uid)).await;
        let running = pods.iter().find(|p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.metadata.deletion_timestamp.is_none()
        });
        let Some(p) = running else {
            return Err(VmError::LauncherGone {
                vm: vm.name.clone(),
                pod: format!(
                    "(none Running among {} pod(s) labelled kubevirt.io/created-by={})",
                    pods.len(),
                    guest.vmi_uid
                ),
            });
        };
        Ok(super::pods::view_of(&guest.namespace, p))
    }
}

/// The guest NICs: KubeVirt's MAC per interface; for bridge bindings the pod
/// interface's addresses from multus' network-status (what KubeVirt's DHCP server
/// hands the guest).
/// An interface without a pod interface is named as the error.
pub(super) fn guest_nics(
    vm: &VirtualMachine,
    vmi: &DynamicObject,
    pod: &PodView,
) -> Result<Vec<GuestNic>, String> {
    let status: Vec<Value> = pod
        .annotations
        .get(NETWORK_STATUS_ANNOTATION)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let mut nics = Vec::new();
    for iface in &vm.interfaces {
        let pod_ifname = vm.pod_ifname(&iface.name).ok_or(iface.name.clone())?;
        let mac = status_mac(vmi, vm, &iface.name).unwrap_or_default();
        // KubeVirt's DHCP hands a masquerade guest its default NAT network.
        let gateway = (iface.binding == BindingKind::Masquerade)
            .then(|| crate::vm::binding::MASQ_GATEWAY.to_string());
        let addresses = match iface.binding {
            BindingKind::Masquerade => vec![format!("{}/24", crate::vm::binding::MASQ_GUEST)],
            BindingKind::Bridge => {
                let prefix = |ip: &str| if ip.contains(':') { 64 } else { 24 };
                status
                    .iter()
                    .find(|s| s["interface"].as_str() == Some(pod_ifname.as_str()))
                    .and_then(|s| s["ips"].as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|ip| format!("{ip}/{}", prefix(ip)))
                    .collect()
            }
            _ => Vec::new(),
        };
        nics.push(GuestNic {
            interface: iface.name.clone(),
            binding: iface.binding.clone(),
            pod_ifname,
            mac,
            pod_mac: None,
            addresses,
            gateway,
        });
    }
    Ok(nics)
}

/// The VMI's serial console as a byte stream: a websocket upgrade of the console
/// subresource with KubeVirt's plain subprotocol (kube's `Client::connect` only
/// speaks the exec ones), each binary frame raw serial bytes, pumped through an
/// in-memory pipe.
pub async fn console(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<tokio::io::DuplexStream, String> {
    use http::header;
    let uri = format!(
        "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/console"
    );
    let key = tungstenite::handshake::client::generate_key();
    let req = http::Request::get(&uri)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, &key)
        .header(header::SEC_WEBSOCKET_PROTOCOL, CONSOLE_PROTOCOL)
        .body(kube::client::Body::from(Vec::new()))
        .map_err(|e| format!("GET {uri}: {e}"))?;
    let res = client
        .send(req)
        .await
        .map_err(|e| format!("GET {uri}: {}", api_err(e)))?;
    if res.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!(
            "GET {uri}: {} instead of 101 Switching Protocols (is KubeVirt's virt-api up?)",
            res.status()
        ));
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if res
        .headers()
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .map(|v| v.as_bytes())
        != Some(accept.as_bytes())
    {
        return Err(format!(
            "GET {uri}: the server's Sec-WebSocket-Accept does not match"
        ));
    }
    let upgraded = hyper::upgrade::on(res)
        .await
        .map_err(|e| format!("GET {uri}: the upgrade failed: {e}"))?;
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        hyper_util::rt::TokioIo::new(upgraded),
        Role::Client,
        None,
    )
    .await;
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(pump(ws, theirs));
    Ok(ours)
}

/// Copies binary frames to `pipe` and what is written to `pipe` back as binary
/// frames, until either side ends.
async fn pump<S>(ws: tokio_tungstenite::WebSocketStream<S>, pipe: tokio::io::DuplexStream)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut frames) = ws.split();
    let (mut from_agent, mut to_agent) = tokio::io::split(pipe);
    let inbound = async {
        while let Some(Ok(msg)) = frames.next().await {
            let bytes = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            if to_agent.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to_agent.shutdown().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = from_agent.read(&mut buf).await {
            if n == 0 || sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    };
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
}

#[cfg(test)]
mod tests {
    //! KubeVirt against the fake API server on a real socket (`fake_http`: websocket
    //! upgrades need one, a mocked tower service cannot hand out an upgraded connection):
    //! VM create → VMI Running with its interfaces → the console websocket carrying
    //! the agent protocol to a fake guest → delete, VMI and pod gone.

    use std::sync::{Arc, Mutex};

    use crate::cluster::kube::fake_http::{FakeHttp, Socket};
    use crate::cluster::kube::mock::{MockApi, Recorded, Reply};

    use super::*;
    use crate::cluster::kube::KubeOptions;
    use crate::vm::agent::{BEGIN, END, READY};

    const NS: &str = "secnet-t1";
    const VMI_UID: &str = "vmi-uid-1";
    const POD: &str = "virt-launcher-vm-a-x7k2p";
    const GUEST_MAC: &str = "02:aa:bb:cc:dd:01";

    #[derive(Default)]
    struct Fake {
        vm: Option<Value>,
        /// The VMI's phase once the VM exists.
        phase: &'static str,
        /// (method, path?query, the Sec-WebSocket-Protocol asked for, body).
        requests: Vec<(String, String, String, Value)>,
        /// What the fake guest was asked over the console.
        commands: Vec<String>,
        /// The guest panics at boot: it prints the panic and answers nothing.
        panics: bool,
    }

    type Shared = Arc<Mutex<Fake>>;

    fn launcher_pod(phase: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": POD, "namespace": NS, "uid": "pod-uid-1",
                "labels": {"kubevirt.io/created-by": VMI_UID, "vm.kubevirt.io/name": "vm-a"},
                "annotations": {NETWORK_STATUS_ANNOTATION: serde_json::to_string(&json!([
                    {"name": "kindnet", "interface": "eth0", "ips": ["10.244.1.7"], "default": true},
                    {"name": "default/dataplane", "interface": "net1", "mac": GUEST_MAC}
                ])).unwrap()}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "compute", "image": "virt-launcher"}]},
            "status": {"phase": phase}})
    }

    /// The API server's answer to one plain request: (status, JSON).
    fn answer(fake: &mut Fake, req: &Recorded) -> (u16, Value) {
        let path = req.path.as_str();
        let vmis = format!("/apis/kubevirt.io/v1/namespaces/{NS}/virtualmachineinstances/vm-a");
        let vms = format!("/apis/kubevirt.io/v1/namespaces/{NS}/virtualmachines");
        let not_found = (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": "NotFound", "code": 404, "message": format!("{path} not found")}),
        );
        match (req.method.as_str(), path) {
            ("GET", "/api/v1/nodes") => (
                200,
                json!({"apiVersion": "v1", "kind": "NodeList",
                "metadata": {}, "items": [{"metadata": {"name": "node-a"}}, {"metadata": {"name": "node-b"}}]}),
            ),
            ("GET", p) if p == format!("/api/v1/namespaces/{NS}") => not_found,
            ("POST", "/api/v1/namespaces") => (201, req.body.clone()),
            ("POST", p) if p == vms => {
                let mut vm = req.body.clone();
                vm["metadata"]["uid"] = json!("vm-uid-1");
                fake.vm = Some(vm.clone());
                (201, vm)
            }
            ("DELETE", p) if p == format!("{vms}/vm-a") => {
                fake.vm = None;
                (
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                )
            }
            ("GET", p) if p == vmis => match &fake.vm {
                Some(vm) => (
                    200,
                    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                    "metadata": {"name": "vm-a", "namespace": NS, "uid": VMI_UID,
                        "labels": vm["spec"]["template"]["metadata"]["labels"]},
                    "status": {"phase": fake.phase,
                        "conditions": [{"type": "Ready", "status": "False", "reason": "GuestNotRunning", "message": "the guest is not running"}],
                        "interfaces": [{"name": "default", "mac": GUEST_MAC, "infoSource": "domain"}]}}),
                ),
                None => not_found,
            },
            ("GET", p) if p == format!("/api/v1/namespaces/{NS}/pods") => {
                let items = if fake.vm.is_some() {
                    vec![launcher_pod("Running")]
                } else {
                    vec![]
                };
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}),
                )
            }
            ("GET", p) if p == format!("/api/v1/namespaces/{NS}/pods/{POD}") => match &fake.vm {
                Some(_) => (200, launcher_pod("Running")),
                None => not_found,
            },
            ("GET", p) if p == format!("/api/v1/namespaces/{NS}/pods/{POD}/log") => (
                200,
                Value::from(
                    "[    0.0] Linux version 6.1.0-fake\nKernel panic - not syncing: No working init found.",
                ),
            ),
            ("GET", "/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/kubevirt") => {
                let available = if fake.phase == "Deployed" {
                    "True"
                } else {
                    "False"
                };
                (
                    200,
                    json!({"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
                    "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
                    "status": {"phase": fake.phase,
                        "conditions": [{"type": "Available", "status": available}]}}),
                )
            }
            ("GET", "/api/v1/namespaces/kubevirt/pods") => (
                200,
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
                    {"metadata": {"name": "virt-api-1"}, "status": {"phase": "Pending"}}]}),
            ),
            ("GET", p) if p == format!("/api/v1/namespaces/{NS}/events") => (
                200,
                json!({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": [
                    {"metadata": {"name": "e1"}, "involvedObject": {"name": "vm-a"}, "type": "Warning",
                     "reason": "SyncFailed", "message": "server error. command SyncVMI failed"}]}),
            ),
            _ => not_found,
        }
    }

    /// A guest on the console: kernel noise and the READY banner, then it answers
    /// the agent's requests as the busybox guest would.
    async fn fake_guest(fake: Shared, ws: Socket) {
        let (mut tx, mut rx) = ws.split();
        if fake.lock().unwrap().panics {
            let panic = "[    0.91] Kernel panic - not syncing: No working init found.\r\n";
            tx.send(Message::binary(panic.as_bytes().to_vec()))
                .await
                .unwrap();
            while rx.next().await.is_some() {}
            return;
        }
        let banner =
            format!("[    0.42] virtio_net virtio0 eth0: renamed\r\n{READY} 6.1.0-fake\r\n");
        tx.send(Message::binary(banner.into_bytes())).await.unwrap();
        let mut pending = String::new();
        while let Some(Ok(msg)) = rx.next().await {
            let Message::Binary(bytes) = msg else {
                continue;
            };
            pending.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(at) = pending.find('\n') {
                let line: String = pending.drain(..=at).collect();
                let (id, cmd) = line.trim_end().split_once(' ').unwrap();
                fake.lock().unwrap().commands.push(cmd.to_string());
                let out = if cmd == "uname -r" {
                    "6.1.0-fake\n".to_string()
                } else if cmd == "ip -o link" {
                    format!(
                        "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n2: eth0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop qlen 1000\\    link/ether {GUEST_MAC} brd ff:ff:ff:ff:ff:ff\n"
                    )
                } else if cmd.starts_with("ping ") {
                    "1 packets transmitted, 1 packets received, 0% packet loss\n".to_string()
                } else {
                    String::new()
                };
                let code = 0;
                // Split across frames as a serial line would be.
                let reply = format!("{BEGIN} {id}\r\n{out}{END} {id} {code}\r\n");
                let (a, b) = reply.split_at(reply.len() / 2);
                tx.send(Message::binary(a.as_bytes().to_vec()))
                    .await
                    .unwrap();
                tx.send(Message::binary(b.as_bytes().to_vec()))
                    .await
                    .unwrap();
            }
        }
    }

    /// The fake API server (`fake_http`): `answer` for plain requests, the fake
    /// guest on the VMI console; every request recorded in `Fake::requests`. It
    /// serves for the rest of the test (the task holding it ends with the runtime).
    async fn fake_cluster(fake: Shared) -> KubeCluster {
        let api = {
            let fake = fake.clone();
            MockApi::new(move |r| {
                let mut f = fake.lock().unwrap();
                f.requests.push((
                    r.method.clone(),
                    r.path.clone(),
                    String::new(),
                    r.body.clone(),
                ));
                match answer(&mut f, r) {
                    (status, Value::String(text)) => Reply::Text(status, text),
                    (status, json) => Reply::Json(status, json),
                }
            })
        };
        let server = FakeHttp::builder(api)
            .upgrade("/console", CONSOLE_PROTOCOL, move |call, socket| {
                let fake = fake.clone();
                async move {
                    let record = ("GET".into(), call.path, call.protocol, Value::Null);
                    fake.lock().unwrap().requests.push(record);
                    fake_guest(fake, socket).await
                }
            })
            .start()
            .await;
        let client = server.client();
        tokio::spawn(async move {
            let _serving = server;
            std::future::pending::<()>().await
        });
        let opts = KubeOptions {
            pod_timeout: Duration::from_secs(1),
            ..KubeOptions::default()
        };
        KubeCluster::connect(client, "kind", "t1", opts)
            .await
            .unwrap()
            .scoped("s3")
    }

    fn seed_vm() -> VirtualMachine {
        let path = crate::bins::fixtures_dir().join("seed/vm-macvtap.yaml");
        let raw = match crate::objects::load_file(&path).unwrap().remove(0) {
            crate::objects::Object::Other { raw, .. } => raw,
            other => panic!("{other:?}"),
        };
        let mut vm = VirtualMachine::from_value(&raw).unwrap();
        vm.name = "vm-a".into();
        vm
    }

    #[test]
    fn the_vm_object_boots_our_guest_pinned_and_labelled() {
        let labels = BTreeMap::from([(RUN_LABEL.to_string(), "r1".to_string())]);
        let obj = vm_object(
            &seed_vm(),
            NS,
            &labels,
            Some("node-b"),
            "img:1",
            "console=ttyS0",
        );
        assert_eq!(
            obj["metadata"],
            json!({"name": "vm-a", "namespace": NS, "labels": {RUN_LABEL: "r1"}})
        );
        let spec = &obj["spec"]["template"]["spec"];
        assert_eq!(obj["spec"]["runStrategy"], "Always");
        assert_eq!(
            obj["spec"]["template"]["metadata"]["labels"][RUN_LABEL],
            "r1"
        );
        assert_eq!(spec["nodeSelector"][HOSTNAME_LABEL], "node-b");
        assert_eq!(
            spec["domain"]["firmware"]["kernelBoot"],
            json!({"kernelArgs": "console=ttyS0", "container": {"image": "img:1",
                "kernelPath": KERNEL_PATH, "initrdPath": INITRD_PATH, "imagePullPolicy": "IfNotPresent"}})
        );
        // The NADs of the fixture's `default` are in the run's namespace.
        assert_eq!(
            spec["networks"][0]["multus"]["networkName"],
            format!("{NS}/dataplane")
        );
        assert_eq!(
            spec["domain"]["devices"]["interfaces"][0],
            json!({"name": "default", "macvtap": {}})
        );
        // Valid KubeVirt, where the schema is at hand.
        if let Some(p) = crate::vm::kubevirt::swagger_path() {
            let s = crate::vm::kubevirt::Swagger::load(&p).unwrap();
            assert_eq!(s.validate("v1.VirtualMachine", &obj), Vec::<String>::new());
        }
    }

    #[tokio::test]
    async fn a_vm_runs_answers_on_its_console_and_is_gone_after_stop() {
        let fake: Shared = Arc::default();
        fake.lock().unwrap().phase = "Running";
        let cluster = fake_cluster(fake.clone()).await;
        let mut opts = VmOptions::new(None, std::env::temp_dir());
        opts.boot_timeout = Duration::from_secs(5);
        let vm = seed_vm();
        let mut v = cluster.start_vm(&vm, Some("node-a"), &opts).await.unwrap();
        assert_eq!(v.pod.name, POD);
        assert_eq!(v.nics[0].mac, GUEST_MAC);
        assert_eq!(v.nics[0].pod_ifname, "net1");
        v.wait_ready(Duration::from_secs(5)).await.unwrap();
        assert_eq!(v.guest_ifname(GUEST_MAC).await.unwrap(), "eth0");
        v.configure(&[(0, "10.1.0.31/24")]).await.unwrap();
        assert!(v.ping("10.1.0.40").await.unwrap());
        assert!(
            v.console().contains("virtio_net virtio0 eth0: renamed"),
            "{}",
            v.console()
        );
        v.stop(&cluster).await.unwrap();

        let f = fake.lock().unwrap();
        assert!(f.vm.is_none(), "the VM was not deleted");
        assert_eq!(
            f.commands,
            [
                "uname -r",
                "ip -o link",
                "ip -o link",
                "ip link set dev eth0 up",
                "ip addr add 10.1.0.31/24 dev eth0",
                crate::probe::ping::command("10.1.0.40", 2).as_str()
            ]
        );
        let post = f
            .requests
            .iter()
            .find(|r| r.0 == "POST" && r.1.contains("virtualmachines"))
            .unwrap();
        let body = &post.3;
        assert_eq!(body["metadata"]["namespace"], NS);
        assert_eq!(
            body["spec"]["template"]["metadata"]["labels"]["secnet.scope"],
            "s3"
        );
        assert_eq!(
            body["spec"]["template"]["spec"]["nodeSelector"][HOSTNAME_LABEL],
            "node-a"
        );
        let args =
            body["spec"]["template"]["spec"]["domain"]["firmware"]["kernelBoot"]["kernelArgs"]
                .as_str()
                .unwrap();
        assert!(
            args.contains("secnet.agent=ttyS0") && args.contains("console=ttyS0"),
            "{args}"
        );
        let console = f
            .requests
            .iter()
            .find(|r| r.1.ends_with("/console"))
            .unwrap();
        assert_eq!(
            console.1,
            format!(
                "/apis/subresources.kubevirt.io/v1/namespaces/{NS}/virtualmachineinstances/vm-a/console"
            )
        );
        assert_eq!(console.2, CONSOLE_PROTOCOL);
        assert!(
            f.requests
                .iter()
                .any(|r| r.0 == "DELETE" && r.1.contains("/virtualmachines/vm-a"))
        );
    }

    #[tokio::test]
    async fn a_failed_vmi_reports_its_conditions_and_events_and_is_deleted() {
        let fake: Shared = Arc::default();
        fake.lock().unwrap().phase = "Failed";
        let cluster = fake_cluster(fake.clone()).await;
        let opts = VmOptions::new(None, std::env::temp_dir());
        let err = cluster
            .start_vm(&seed_vm(), None, &opts)
            .await
            .err()
            .expect("a Failed VMI must not start");
        let msg = err.to_string();
        for needle in [
            "VMI phase Failed",
            "Ready=False GuestNotRunning",
            "SyncFailed server error",
            &format!("virt-launcher pod {POD}: phase Running"),
        ] {
            assert!(msg.contains(needle), "{needle:?} not in {msg}");
        }
        assert!(fake.lock().unwrap().vm.is_none(), "the failed VM was left");
    }

    #[tokio::test]
    async fn kubevirt_is_waited_for_until_available() {
        let fake: Shared = Arc::default();
        fake.lock().unwrap().phase = "Deploying";
        let cluster = fake_cluster(fake.clone()).await;
        let err = cluster
            .wait_kubevirt_available(Duration::from_millis(100))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("phase Deploying")
                && err.contains("pod kubevirt/virt-api-1: phase Pending"),
            "{err}"
        );
        fake.lock().unwrap().phase = "Deployed";
        cluster
            .wait_kubevirt_available(Duration::from_millis(100))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_guest_that_cannot_boot_fails_with_its_console_and_is_deleted() {
        let fake: Shared = Arc::default();
        {
            let mut f = fake.lock().unwrap();
            f.phase = "Running";
            f.panics = true;
        }
        let cluster = fake_cluster(fake.clone()).await;
        let mut opts = VmOptions::new(None, std::env::temp_dir());
        opts.extra_cmdline = "rdinit=/secnet-no-such-init".into();
        let mut v = cluster.start_vm(&seed_vm(), None, &opts).await.unwrap();
        let err = v.wait_ready(Duration::from_millis(700)).await.unwrap_err();
        assert!(
            err.contains(&format!("--- console of {POD} ---"))
                && err.contains("[    0.91] Kernel panic - not syncing")
                && err.contains("VMI phase Running")
                && err.contains("the VM was deleted"),
            "{err}"
        );
        let f = fake.lock().unwrap();
        assert!(f.vm.is_none(), "the VM was left");
        let post = f
            .requests
            .iter()
            .find(|r| r.0 == "POST" && r.1.contains("virtualmachines"));
        let args = &post.unwrap().3["spec"]["template"]["spec"]["domain"]["firmware"]["kernelBoot"]
            ["kernelArgs"];
        assert!(
            args.as_str()
                .unwrap()
                .ends_with(" rdinit=/secnet-no-such-init"),
            "{args}"
        );
    }
}
