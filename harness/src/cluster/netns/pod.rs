//! Pods on the netns cluster, the kubelet + multus way: schedule on resources,
//! Allocate devices at admission (checkpointed), create the sandbox netns, attach
//! eth0 (bridge + host-local), then every selected network through its NAD, and
//! write network-status. Delete runs every DEL even when one fails.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::NetnsCluster;
use crate::cluster::{ClusterError, ExecOutput, PodView};
use crate::cni::chain::{self, Target};
use crate::lab::Ns;
use crate::lab::command::Cmd;
use crate::lab::enter::Enter;
use crate::multus::{self, DeviceIds, Nad, NetworkStatus, PodInfo};
use crate::objects::Pod;

/// The cluster network every pod's eth0 is on.
pub const POD_NETWORK: &str = "secnet-pod-network";

pub struct PodState {
    pub view: PodView,
    pub netns: Ns,
    pub node_index: usize,
    pub sandbox_id: String,
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

fn eth0_config(pod_subnet: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": POD_NETWORK,
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": true,
        "ipMasq": false,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}
    })
}

/// `0/2 nodes are available: 2 Insufficient <resource>.` as the scheduler says it.
fn insufficient(total: usize, short: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = short
        .iter()
        .map(|(r, n)| format!("{n} Insufficient {r}"))
        .collect();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

pub async fn create(cluster: &NetnsCluster, pod: Pod) -> Result<PodView, ClusterError> {
    let ns = pod.metadata.namespace.clone();
    let name = pod.metadata.name.clone();
    let pod_ref = format!("{ns}/{name}");
    let requests = pod.extended_resources();
    let mut inner = cluster.inner.lock().await;
    if inner.pods.contains_key(&(ns.clone(), name.clone())) {
        return Err(start_err(
            &pod_ref,
            "-",
            "a pod with this name already exists; delete it first or pick another name",
        ));
    }

    // Schedule: the node with the most free devices of what the pod asks for.
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
    let Some((node_index, _)) = best else {
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
        return Err(ClusterError::Unschedulable {
            pod: pod_ref,
            message,
        });
    };

    inner.uid_counter += 1;
    let uid = pod_uid(&cluster.opts.run_id, inner.uid_counter);
    let sandbox_id = format!("{}-{}", cluster.opts.run_id, &uid[..8]);
    let node_name = inner.nodes[node_index].name.clone();
    let pod_id = crate::kubelet::PodId::new(&ns, &name, &uid);

    // Admission: Allocate per container and resource; the device manager checkpoints.
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
            let node = &inner.nodes[node_index];
            let admitted = match &node.device_manager {
                Some(dm) => dm
                    .admit(&pod_id, &container.name, &resource, want as usize)
                    .await
                    .map_err(super::NetnsError::from),
                None => Err(super::NetnsError::NotRunning {
                    what: "device plugin",
                    node: node_name.clone(),
                }),
            };
            match admitted {
                Ok(d) => devices.entry(resource).or_default().extend(d.ids),
                Err(e) => {
                    let _ = inner.nodes[node_index].release(&uid);
                    return Err(start_err(
                        &pod_ref,
                        &node_name,
                        format!("admission of {resource}: {e}"),
                    ));
                }
            }
        }
    }

    let netns = match inner.lab.netns(&format!("pod-{ns}-{name}")) {
        Ok(n) => n,
        Err(e) => {
            let _ = inner.nodes[node_index].release(&uid);
            return Err(start_err(
                &pod_ref,
                &node_name,
                format!("failed to create the sandbox: {e}"),
            ));
        }
    };
    let node = &inner.nodes[node_index];
    let enter = node
        .enter()
        .map_err(|e| start_err(&pod_ref, &node_name, e))?;
    let dirs = cluster.bin_dirs();
    let k8s_args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={sandbox_id};K8S_POD_UID={uid}"
    );
    let eth0_plugins = vec![eth0_config(&node.pod_subnet)];
    let eth0_target = Target {
        container_id: sandbox_id.clone(),
        netns: Some(netns.path_str()),
        ifname: "eth0".into(),
        args: k8s_args,
    };

    let attached = async {
        let eth0_result = match chain::add(&dirs, &enter, &eth0_plugins, &eth0_target).await {
            Ok(r) => r,
            Err(e) => return Err((format!("eth0 on {POD_NETWORK}: {e}"), None, Vec::new())),
        };
        let mut statuses = match multus::status::from_result(POD_NETWORK, &eth0_result, true, None)
        {
            Ok(s) => s,
            Err(e) => return Err((e.to_string(), Some(eth0_result), Vec::new())),
        };
        let mut attachments = Vec::new();
        let annotation = pod
            .metadata
            .annotations
            .get(multus::NETWORKS_ANNOTATION)
            .map(String::as_str)
            .unwrap_or("");
        let plan = multus::parse_networks(annotation, &ns).and_then(|selections| {
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
            multus::plan(
                &info,
                &selections,
                |nns, nname| lookup_nad(&inner.nads, nns, nname),
                &mut ids,
            )
        });
        let delegates = match plan {
            Ok(d) => d,
            Err(e) => {
                return Err((
                    e.with_pod(&ns, &name).to_string(),
                    Some(eth0_result),
                    attachments,
                ));
            }
        };
        for d in delegates {
            let target = Target {
                container_id: sandbox_id.clone(),
                netns: Some(netns.path_str()),
                ifname: d.ifname.clone(),
                args: d.cni_args.clone(),
            };
            match chain::add(&dirs, &enter, &d.plugins, &target).await {
                Ok(result) => {
                    let status = multus::status::from_result(&d.network, &result, false, None);
                    attachments.push(Attachment {
                        plugins: d.plugins,
                        target,
                        result,
                    });
                    match status {
                        Ok(s) => statuses.extend(s),
                        Err(e) => return Err((e.to_string(), Some(eth0_result), attachments)),
                    }
                }
                Err(e) => {
                    return Err((
                        format!("network {} ({}): {e}", d.network, d.ifname),
                        Some(eth0_result),
                        attachments,
                    ));
                }
            }
        }
        Ok((eth0_result, attachments, statuses))
    }
    .await;

    let (eth0_result, attachments, statuses) = match attached {
        Ok(ok) => ok,
        Err((message, eth0_result, attachments)) => {
            for a in attachments.iter().rev() {
                let _ = chain::del(&dirs, &enter, &a.plugins, &a.target, Some(&a.result)).await;
            }
            let _ = chain::del(
                &dirs,
                &enter,
                &eth0_plugins,
                &eth0_target,
                eth0_result.as_ref(),
            )
            .await;
            let _ = inner.nodes[node_index].release(&uid);
            let _ = inner.lab.delete_netns(&netns);
            return Err(start_err(&pod_ref, &node_name, message));
        }
    };

    let mut annotations = pod.metadata.annotations.clone();
    annotations.insert(
        multus::NETWORK_STATUS_ANNOTATION.into(),
        multus::status::annotation(&statuses),
    );
    let view = PodView {
        namespace: ns.clone(),
        name: name.clone(),
        uid: uid.clone(),
        node: node_name,
        annotations,
        devices,
    };
    inner.pods.insert(
        (ns, name),
        PodState {
            view: view.clone(),
            netns,
            node_index,
            sandbox_id,
            eth0: Attachment {
                plugins: eth0_plugins,
                target: eth0_target,
                result: eth0_result,
            },
            attachments,
        },
    );
    Ok(view)
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
