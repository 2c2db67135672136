//! Pods on the netns cluster, the kubelet + multus way: schedule on resources,
//! Allocate devices at admission (checkpointed), create the sandbox netns, attach
//! eth0 (bridge + host-local), then every selected network through its NAD, and
//! write network-status. Delete runs every DEL even when one fails.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::{Inner, NetnsCluster};
use crate::cluster::{ClusterError, ExecOutput, PodView};
use crate::cni::chain::{self, Target};
use crate::lab::Ns;
use crate::lab::command::Cmd;
use crate::lab::enter::Enter;
use crate::multus::{self, DeviceIds, Nad, NetworkStatus, PodInfo};
use crate::objects::Pod;

/// The cluster network every pod's eth0 is on (named as on the bare cluster, so
/// both tiers' network-status agree byte for byte).
pub const POD_NETWORK: &str = "secnet-pods";

pub struct PodState {
    pub(crate) view: PodView,
    pub(crate) netns: Ns,
    pub(crate) node_index: usize,
    pub(crate) sandbox_id: String,
    eth0: Attachment,
    /// Secondary networks, in attach order.
    attachments: Vec<Attachment>,
}

struct Attachment {
    plugins: Vec<Value>,
    target: Target,
    result: Value,
}

fn start_err(pod: &str, node: &str, message: impl std::fmt::Display) -> ClusterError {
    ClusterError::PodStart {
        pod: pod.into(),
        node: node.into(),
        message: message.to_string(),
    }
}

/// `0/2 nodes are available: 2 Insufficient <resource>.` as the scheduler says it.
fn insufficient(total: usize, short: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = short
        .iter()
        .map(|(r, n)| format!("{n} Insufficient {r}"))
        .collect();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

/// Starts `pod` as a kubelet with multus would: schedule → admit → sandbox →
/// attach → annotate. A step that fails undoes what the steps before it did, newest
/// first (one undo stack), and the pod is not started.
pub async fn create(cluster: &NetnsCluster, pod: Pod) -> Result<PodView, ClusterError> {
    let ns = pod.metadata.namespace.clone();
    let name = pod.metadata.name.clone();
    let pod_ref = format!("{ns}/{name}");
    let mut inner = cluster.inner.lock().await;
    if inner.pods.contains_key(&(ns.clone(), name.clone())) {
        return Err(start_err(
            &pod_ref,
            "-",
            "a pod with this name already exists; delete it first or pick another name",
        ));
    }
    let node_index = schedule(&inner, &pod, &pod_ref)?;
    inner.uid_counter += 1;
    let uid = pod_uid(&cluster.opts.run_id, inner.uid_counter);
    let start = Start {
        sandbox_id: format!("{}-{}", cluster.opts.run_id, &uid[..8]),
        node: inner.nodes[node_index].name.clone(),
        node_index,
        uid,
    };
    let mut undo = Vec::new();
    match start_pod(cluster, &mut inner, &pod, &start, &mut undo).await {
        Ok(state) => {
            let view = state.view.clone();
            inner.pods.insert((ns, name), state);
            Ok(view)
        }
        Err(message) => {
            undo_all(cluster, &mut inner, &start, undo).await;
            Err(start_err(&pod_ref, &start.node, message))
        }
    }
}

/// Who the pod being started is and where.
struct Start {
    uid: String,
    sandbox_id: String,
    node: String,
    node_index: usize,
}

/// What a failed start must undo.
enum Undo {
    /// The devices admission allocated to the pod.
    Release,
    /// The sandbox's network namespace.
    DeleteSandbox(Ns),
    /// A network attached to the sandbox (eth0's DEL follows even a failed ADD).
    Detach {
        plugins: Vec<Value>,
        target: Target,
        result: Option<Value>,
    },
}

/// Runs `undo`, newest first; errors are ignored (the start's error is the one
/// reported, and the leak check names what is left).
async fn undo_all(cluster: &NetnsCluster, inner: &mut Inner, start: &Start, undo: Vec<Undo>) {
    let dirs = cluster.bin_dirs();
    let enter = inner.nodes[start.node_index].enter().ok();
    for step in undo.into_iter().rev() {
        match step {
            Undo::Detach {
                plugins,
                target,
                result,
            } => {
                if let Some(enter) = &enter {
                    let _ = chain::del(&dirs, enter, &plugins, &target, result.as_ref()).await;
                }
            }
            Undo::DeleteSandbox(netns) => {
                let _ = inner.lab.delete_netns(&netns);
            }
            Undo::Release => {
                let _ = inner.nodes[start.node_index].release(&start.uid);
            }
        }
    }
}

/// The steps after scheduling; what each did is pushed on `undo` as it is done.
async fn start_pod(
    cluster: &NetnsCluster,
    inner: &mut Inner,
    pod: &Pod,
    start: &Start,
    undo: &mut Vec<Undo>,
) -> Result<PodState, String> {
    let devices = admit(inner, pod, start, undo).await?;
    let netns = sandbox(inner, pod, undo)?;
    let attached = attach(cluster, inner, pod, start, &devices, &netns, undo).await?;
    let view = annotate(pod, start, &attached.statuses, devices);
    Ok(PodState {
        view,
        netns,
        node_index: start.node_index,
        sandbox_id: start.sandbox_id.clone(),
        eth0: attached.eth0,
        attachments: attached.networks,
    })
}

/// The scheduler: the node with the most free devices of what the pod asks for.
fn schedule(inner: &Inner, pod: &Pod, pod_ref: &str) -> Result<usize, ClusterError> {
    let requests = pod.extended_resources();
    let mut short: BTreeMap<String, usize> = BTreeMap::new();
    let mut best: Option<(usize, usize)> = None;
    for (i, node) in inner.nodes.iter().enumerate() {
        if pod
            .spec
            .node_name
            .as_deref()
            .is_some_and(|n| n != node.name)
        {
            continue;
        }
        let mut fits = true;
        let mut free_total = 0;
        for (resource, want) in &requests {
            let free = node.free_count(resource);
            if (free as u64) < *want {
                fits = false;
                *short.entry(resource.clone()).or_default() += 1;
            }
            free_total += free;
        }
        if fits && best.is_none_or(|(_, f)| free_total > f) {
            best = Some((i, free_total));
        }
    }
    if let Some((node_index, _)) = best {
        return Ok(node_index);
    }
    let total = if pod.spec.node_name.is_some() {
        1
    } else {
        inner.nodes.len()
    };
    let message = match &pod.spec.node_name {
        Some(n) if !inner.nodes.iter().any(|x| &x.name == n) => {
            format!("spec.nodeName {n} is not a node of this cluster")
        }
        _ => match &inner.device_plugin_failure {
            Some(why) => format!(
                "{} {}: {}: {why}",
                insufficient(total, &short),
                super::NO_DEVICE_PLUGIN,
                super::DEVICE_PLUGIN_DOWN
            ),
            None => insufficient(total, &short),
        },
    };
    Err(ClusterError::Unschedulable {
        pod: pod_ref.to_string(),
        message,
    })
}

/// Admission: Allocate per container and resource; the device manager checkpoints.
async fn admit(
    inner: &Inner,
    pod: &Pod,
    start: &Start,
    undo: &mut Vec<Undo>,
) -> Result<BTreeMap<String, Vec<String>>, String> {
    let pod_id =
        crate::kubelet::PodId::new(&pod.metadata.namespace, &pod.metadata.name, &start.uid);
    undo.push(Undo::Release);
    let node = &inner.nodes[start.node_index];
    let mut devices: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for container in &pod.spec.containers {
        let single = Pod {
            metadata: pod.metadata.clone(),
            spec: crate::objects::PodSpec {
                node_name: None,
                containers: vec![container.clone()],
            },
        };
        for (resource, want) in single.extended_resources() {
            let admitted = match &node.device_manager {
                Some(dm) => dm
                    .admit(&pod_id, &container.name, &resource, want as usize)
                    .await
                    .map_err(super::NetnsError::from),
                None => Err(super::NetnsError::NotRunning {
                    what: "device plugin",
                    node: start.node.clone(),
                }),
            };
            let d = admitted.map_err(|e| format!("admission of {resource}: {e}"))?;
            // The device plugin's answers, held to the kubelet API.
            let dm = node.device_manager.as_ref();
            let wrong =
                crate::kubelet::answer_check::admitted(dm, &resource, &d, &node.ns.path()).await;
            if !wrong.is_empty() {
                return Err(format!(
                    "admission of {resource}: the device plugin's answers break the kubelet API: {}",
                    wrong.join("; ")
                ));
            }
            devices.entry(resource).or_default().extend(d.ids);
        }
    }
    Ok(devices)
}

/// The pod's sandbox: its network namespace.
fn sandbox(inner: &mut Inner, pod: &Pod, undo: &mut Vec<Undo>) -> Result<Ns, String> {
    let (ns, name) = (&pod.metadata.namespace, &pod.metadata.name);
    let netns = inner
        .lab
        .netns(&format!("pod-{ns}-{name}"))
        .map_err(|e| format!("failed to create the sandbox: {e}"))?;
    undo.push(Undo::DeleteSandbox(netns.clone()));
    Ok(netns)
}

/// What attaching the pod's networks gave.
struct Attached {
    eth0: Attachment,
    /// Secondary networks, in attach order.
    networks: Vec<Attachment>,
    statuses: Vec<NetworkStatus>,
}

/// eth0 on the pod network (bridge + host-local), then every network the pod
/// selects, through its NAD, as multus delegates them.
async fn attach(
    cluster: &NetnsCluster,
    inner: &Inner,
    pod: &Pod,
    start: &Start,
    devices: &BTreeMap<String, Vec<String>>,
    netns: &Ns,
    undo: &mut Vec<Undo>,
) -> Result<Attached, String> {
    let (ns, name) = (&pod.metadata.namespace, &pod.metadata.name);
    let (uid, sandbox_id) = (&start.uid, &start.sandbox_id);
    let node = &inner.nodes[start.node_index];
    let enter = node.enter().map_err(|e| e.to_string())?;
    let dirs = cluster.bin_dirs();
    let k8s_args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={sandbox_id};K8S_POD_UID={uid}"
    );
    // multus serves the ADD: refused while it restarts, cut off if it restarts
    // before the last network; eth0's config is the node's cluster network's file.
    let add = cluster.multus_on(start.node_index).begin()?;
    let (pod_network, eth0_plugins) = add.primary()?;
    let eth0_target = Target {
        container_id: sandbox_id.clone(),
        netns: Some(netns.path_str()),
        ifname: "eth0".into(),
        args: k8s_args.clone(),
    };
    undo.push(Undo::Detach {
        plugins: eth0_plugins.clone(),
        target: eth0_target.clone(),
        result: None,
    });
    let eth0_result = chain::add(&dirs, &enter, &eth0_plugins, &eth0_target)
        .await
        .map_err(|e| format!("eth0 on {pod_network}: {e}"))?;
    if let Some(Undo::Detach { result, .. }) = undo.last_mut() {
        *result = Some(eth0_result.clone());
    }
    let mut statuses = multus::status::from_result(&pod_network, &eth0_result, true, None)
        .map_err(|e| e.to_string())?;
    let annotation = pod
        .metadata
        .annotations
        .get(multus::NETWORKS_ANNOTATION)
        .map(String::as_str)
        .unwrap_or("");
    let semantics = cluster.opts.multus;
    let delegates = multus::semantics::selections(semantics, annotation, ns, name)
        .and_then(|selections| {
            let info = PodInfo {
                namespace: ns.clone(),
                name: name.clone(),
                uid: uid.clone(),
                sandbox_id: sandbox_id.clone(),
            };
            let mut ids: DeviceIds = devices
                .iter()
                .map(|(r, v)| (r.clone(), v.clone()))
                .collect();
            multus::semantics::plan(
                semantics,
                &info,
                // multus appends the runtime's own CNI_ARGS to each delegate's.
                &multus::Runtime {
                    cni_args: Some(k8s_args.clone()),
                    ..multus::Runtime::for_pod(&pod.metadata.annotations)
                },
                &selections,
                |nns, nname| lookup_nad(&inner.nads, nns, nname),
                &mut ids,
            )
        })
        .map_err(|e| e.with_pod(ns, name).to_string())?;
    let mut networks = Vec::new();
    for d in delegates {
        add.still_served()?;
        let target = Target {
            container_id: sandbox_id.clone(),
            netns: Some(netns.path_str()),
            ifname: d.ifname.clone(),
            args: d.cni_args.clone(),
        };
        let result = chain::add(&dirs, &enter, &d.plugins, &target)
            .await
            .map_err(|e| format!("network {} ({}): {e}", d.network, d.ifname))?;
        // Its DELs get multus's DEL arguments (no MAC=/IP=).
        let target = Target {
            args: d.del_cni_args.clone(),
            ..target
        };
        undo.push(Undo::Detach {
            plugins: d.plugins.clone(),
            target: target.clone(),
            result: Some(result.clone()),
        });
        multus::semantics::verify(semantics, &format!("{ns}/{name}"), &d, &result)
            .map_err(|e| e.to_string())?;
        let status = multus::status::from_result(&d.network, &result, false, None);
        networks.push(Attachment {
            plugins: d.plugins,
            target,
            result,
        });
        statuses.extend(status.map_err(|e| e.to_string())?);
    }
    add.still_served()?;
    Ok(Attached {
        eth0: Attachment {
            plugins: eth0_plugins,
            target: eth0_target,
            result: eth0_result,
        },
        networks,
        statuses,
    })
}

/// The pod as the API shows it: its network-status annotation written.
fn annotate(
    pod: &Pod,
    start: &Start,
    statuses: &[NetworkStatus],
    devices: BTreeMap<String, Vec<String>>,
) -> PodView {
    let mut annotations = pod.metadata.annotations.clone();
    annotations.insert(
        multus::NETWORK_STATUS_ANNOTATION.into(),
        multus::status::annotation(statuses),
    );
    PodView {
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: start.uid.clone(),
        node: start.node.clone(),
        annotations,
        devices,
    }
}

fn lookup_nad(
    nads: &BTreeMap<(String, String), crate::objects::NetworkAttachmentDefinition>,
    ns: &str,
    name: &str,
) -> Option<Nad> {
    nads.get(&(ns.to_string(), name.to_string())).map(|n| Nad {
        namespace: n.metadata.namespace.clone(),
        name: n.metadata.name.clone(),
        config: n.spec.config.clone(),
        resource_name: n.resource_name().map(str::to_string),
    })
}

/// A UUID-shaped id unique within the run.
fn pod_uid(run_id: &str, n: u64) -> String {
    let h = xxhash_rust::xxh64::xxh64(format!("{run_id}/{n}").as_bytes(), 7);
    let h2 = xxhash_rust::xxh64::xxh64(format!("{run_id}/{n}").as_bytes(), 11);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xffff,
        h2 >> 48,
        h2 & 0xffff_ffff_ffff
    )
}

pub async fn delete(cluster: &NetnsCluster, ns: &str, name: &str) -> Result<(), ClusterError> {
    let pod_ref = format!("{ns}/{name}");
    // The pod leaves the cluster's books under the lock; its CNI DELs run without
    // it, so that pods are deleted concurrently (a teardown of 50 pods).
    let (state, enter) = {
        let mut inner = cluster.inner.lock().await;
        let state = inner
            .pods
            .remove(&(ns.to_string(), name.to_string()))
            .ok_or_else(|| ClusterError::NoSuchPod(pod_ref.clone()))?;
        let enter = inner.nodes[state.node_index].enter();
        (state, enter)
    };
    let dirs = cluster.bin_dirs();
    let mut errors = Vec::new();
    match enter {
        Ok(enter) => {
            for a in state.attachments.iter().rev() {
                if let Err(e) =
                    chain::del(&dirs, &enter, &a.plugins, &a.target, Some(&a.result)).await
                {
                    errors.push(format!("{}: {e}", a.target.ifname));
                }
            }
            if let Err(e) = chain::del(
                &dirs,
                &enter,
                &state.eth0.plugins,
                &state.eth0.target,
                Some(&state.eth0.result),
            )
            .await
            {
                errors.push(format!("eth0: {e}"));
            }
        }
        Err(e) => errors.push(e.to_string()),
    }
    let mut inner = cluster.inner.lock().await;
    if let Err(e) = inner.nodes[state.node_index].release(&state.view.uid) {
        errors.push(e.to_string());
    }
    if let Err(e) = inner.lab.delete_netns(&state.netns) {
        errors.push(e.to_string());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ClusterError::PodDelete {
            pod: pod_ref,
            message: errors.join("; "),
        })
    }
}

pub async fn exec(
    cluster: &NetnsCluster,
    ns: &str,
    name: &str,
    argv: &[&str],
) -> Result<ExecOutput, ClusterError> {
    let pod_ref = format!("{ns}/{name}");
    let netns = cluster
        .pod_netns(ns, name)
        .await
        .ok_or_else(|| ClusterError::NoSuchPod(pod_ref.clone()))?;
    let fail = |message: String| ClusterError::Exec {
        pod: pod_ref.clone(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        message,
    };
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| fail("empty command".into()))?;
    let enter = Enter::net(netns.path()).map_err(|e| fail(e.to_string()))?;
    let out = Cmd::new(program)
        .args(args)
        .enter(&enter)
        .timeout(Duration::from_secs(30))
        .output_async()
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(ExecOutput {
        success: out.success(),
        stdout: out.stdout_text(),
        stderr: out.stderr_text(),
    })
}

/// The pod's network-status annotation, parsed.
pub fn network_status(view: &PodView) -> Result<Vec<NetworkStatus>, super::NetnsError> {
    let text = view
        .annotations
        .get(multus::NETWORK_STATUS_ANNOTATION)
        .ok_or_else(|| super::NetnsError::NoNetworkStatus(view.name.clone()))?;
    Ok(multus::status::parse_annotation(text)?)
}

/// The device-manager container name a hot-plugged network's allocation is kept
/// under: one per interface, so that its unplug frees that device and no other.
fn hotplug_container(ifname: &str) -> String {
    format!("hotplug-{ifname}")
}

/// Attaches one more network to a running pod, as multus' dynamic networks
/// controller does for KubeVirt's NIC hot-plug: `selection` (one entry of the
/// networks annotation, with its `interface`) is delegated to its NAD's chain in the
/// running sandbox; a NAD with a resource first gets its own device-plugin
/// allocation. The pod's networks and network-status annotations gain the entry.
pub async fn attach_network(
    cluster: &NetnsCluster,
    ns: &str,
    name: &str,
    selection: &Value,
) -> Result<PodView, ClusterError> {
    let pod_ref = format!("{ns}/{name}");
    let mut inner = cluster.inner.lock().await;
    let key = (ns.to_string(), name.to_string());
    let state = inner
        .pods
        .get(&key)
        .ok_or_else(|| ClusterError::NoSuchPod(pod_ref.clone()))?;
    let (node_index, uid) = (state.node_index, state.view.uid.clone());
    let node_name = inner.nodes[node_index].name.clone();
    let err = |m: String| start_err(&pod_ref, &node_name, format!("hot-plug: {m}"));
    let semantics = cluster.opts.multus;
    let selections = multus::semantics::selections(
        semantics,
        &Value::Array(vec![selection.clone()]).to_string(),
        ns,
        name,
    )
    .map_err(|e| err(e.with_pod(ns, name).to_string()))?;
    let [sel] = selections.as_slice() else {
        return Err(err(format!("{selection} is not one network selection")));
    };
    let ifname = sel
        .interface
        .clone()
        .ok_or_else(|| err(format!("{selection} names no interface")))?;
    let resource = lookup_nad(&inner.nads, &sel.namespace, &sel.name).and_then(|n| n.resource_name);
    let container = hotplug_container(&ifname);
    let mut ids = DeviceIds::new();
    let mut allocated: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(resource) = &resource {
        let dm = inner.nodes[node_index]
            .device_manager
            .as_ref()
            .ok_or_else(|| err(format!("no device plugin on {node_name} for {resource}")))?;
        let pod_id = crate::kubelet::PodId::new(ns, name, &uid);
        let d = dm
            .admit(&pod_id, &container, resource, 1)
            .await
            .map_err(|e| {
                err(format!(
                    "admission of {resource}: {}",
                    super::NetnsError::from(e)
                ))
            })?;
        ids.insert(resource, d.ids.clone());
        allocated.insert(resource.clone(), d.ids);
    }
    let release = |inner: &Inner| {
        if let Some(dm) = &inner.nodes[node_index].device_manager {
            let _ = dm.release_container(&uid, &container);
        }
    };
    let state = &inner.pods[&key];
    let info = PodInfo {
        namespace: ns.to_string(),
        name: name.to_string(),
        uid: uid.clone(),
        sandbox_id: state.sandbox_id.clone(),
    };
    let planned = multus::semantics::plan(
        semantics,
        &info,
        &multus::Runtime::for_pod(&state.view.annotations),
        &selections,
        |nns, nname| lookup_nad(&inner.nads, nns, nname),
        &mut ids,
    );
    let d = match planned {
        Ok(mut d) if d.len() == 1 => d.remove(0),
        Ok(d) => {
            release(&inner);
            return Err(err(format!("{} delegates for one selection", d.len())));
        }
        Err(e) => {
            release(&inner);
            return Err(err(e.with_pod(ns, name).to_string()));
        }
    };
    let target = Target {
        container_id: state.sandbox_id.clone(),
        netns: Some(state.netns.path_str()),
        ifname: d.ifname.clone(),
        args: d.cni_args.clone(),
    };
    let dirs = cluster.bin_dirs();
    let enter = inner.nodes[node_index]
        .enter()
        .map_err(|e| err(e.to_string()))?;
    let added = chain::add(&dirs, &enter, &d.plugins, &target)
        .await
        .map_err(|e| e.to_string());
    let checked = added.and_then(|result| {
        multus::semantics::verify(semantics, &pod_ref, &d, &result).map_err(|e| e.to_string())?;
        let status = multus::status::from_result(&d.network, &result, false, None)
            .map_err(|e| e.to_string())?;
        Ok((result, status))
    });
    let (result, status) = match checked {
        Ok(r) => r,
        Err(e) => {
            let _ = chain::del(&dirs, &enter, &d.plugins, &target, None).await;
            release(&inner);
            return Err(err(format!("network {} ({}): {e}", d.network, d.ifname)));
        }
    };
    let state = inner.pods.get_mut(&key).expect("pod looked up above");
    let mut statuses = network_status(&state.view).unwrap_or_default();
    statuses.extend(status);
    let annotations = &mut state.view.annotations;
    annotations.insert(
        multus::NETWORK_STATUS_ANNOTATION.into(),
        multus::status::annotation(&statuses),
    );
    let mut networks: Vec<Value> = annotations
        .get(multus::NETWORKS_ANNOTATION)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    networks.push(selection.clone());
    annotations.insert(
        multus::NETWORKS_ANNOTATION.into(),
        Value::Array(networks).to_string(),
    );
    for (r, v) in allocated {
        state.view.devices.entry(r).or_default().extend(v);
    }
    state.attachments.push(Attachment {
        plugins: d.plugins,
        target: Target {
            args: d.del_cni_args,
            ..target
        },
        result,
    });
    Ok(state.view.clone())
}

/// Detaches the hot-plugged network on `ifname` from a running pod: its chain's DEL
/// in the sandbox, its device-plugin allocation freed, its entries gone from the
/// pod's annotations.
pub async fn detach_network(
    cluster: &NetnsCluster,
    ns: &str,
    name: &str,
    ifname: &str,
) -> Result<PodView, ClusterError> {
    let pod_ref = format!("{ns}/{name}");
    let mut inner = cluster.inner.lock().await;
    let key = (ns.to_string(), name.to_string());
    let state = inner
        .pods
        .get_mut(&key)
        .ok_or_else(|| ClusterError::NoSuchPod(pod_ref.clone()))?;
    let fail = |message: String| ClusterError::PodDelete {
        pod: pod_ref.clone(),
        message: format!("hot-unplug of {ifname}: {message}"),
    };
    let at = state
        .attachments
        .iter()
        .position(|a| a.target.ifname == ifname)
        .ok_or_else(|| fail("the pod has no such attachment".into()))?;
    let a = state.attachments.remove(at);
    let (node_index, uid) = (state.node_index, state.view.uid.clone());
    let mut statuses = network_status(&state.view).unwrap_or_default();
    statuses.retain(|s| s.interface.as_deref() != Some(ifname));
    let annotations = &mut state.view.annotations;
    annotations.insert(
        multus::NETWORK_STATUS_ANNOTATION.into(),
        multus::status::annotation(&statuses),
    );
    let mut networks: Vec<Value> = annotations
        .get(multus::NETWORKS_ANNOTATION)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    networks.retain(|n| n["interface"].as_str() != Some(ifname));
    annotations.insert(
        multus::NETWORKS_ANNOTATION.into(),
        Value::Array(networks).to_string(),
    );
    let mut errors = Vec::new();
    let dirs = cluster.bin_dirs();
    match inner.nodes[node_index].enter() {
        Ok(enter) => {
            if let Err(e) = chain::del(&dirs, &enter, &a.plugins, &a.target, Some(&a.result)).await
            {
                errors.push(e.to_string());
            }
        }
        Err(e) => errors.push(e.to_string()),
    }
    let released = match &inner.nodes[node_index].device_manager {
        Some(dm) => dm
            .release_container(&uid, &hotplug_container(ifname))
            .map_err(|e| errors.push(e.to_string()))
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let state = inner.pods.get_mut(&key).expect("pod looked up above");
    for p in released {
        if let Some(held) = state.view.devices.get_mut(&p.resource) {
            held.retain(|id| !p.ids.contains(id));
            if held.is_empty() {
                state.view.devices.remove(&p.resource);
            }
        }
    }
    if errors.is_empty() {
        Ok(state.view.clone())
    } else {
        Err(fail(errors.join("; ")))
    }
}
