//! Pods on a real cluster: create and wait until Running (or say why not), delete
//! by UID and wait until gone, exec, and the device plugin restart fault.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod as KPod;
use kube::api::{
    Api, AttachParams, DeleteParams, ListParams, LogParams, PostParams, Preconditions,
};
use kube::runtime::wait::{await_condition, conditions};
use tokio::io::AsyncReadExt;

use super::diagnostics::describe;
use super::sandbox;
use super::{HOSTNAME_LABEL, KubeCluster, api_err, is_not_found};
use crate::cluster::kube::FIELD_MANAGER;
use crate::cluster::kube::apply;
use crate::cluster::{ClusterError, ExecOutput, PodView, wait};
use crate::multus::{NETWORK_STATUS_ANNOTATION, NETWORKS_ANNOTATION};
use crate::objects::{Object, Pod};

/// The image the seed's pod fixtures name (as the seed document does).
const FIXTURE_BUSYBOX: &str = "busybox";

impl KubeCluster {
    /// A pinned pod (`nodeName`) goes through the scheduler with a hostname selector,
    /// so an oversized request is `Unschedulable` as on the netns cluster instead of a
    /// kubelet admission failure; containers without an image, or with the seed
    /// fixtures' unpinned `busybox`, get `pod_image` (pinned, or an air-gapped
    /// cluster's own: `--pod-image`).
    fn complete_spec(&self, pod: &mut KPod) {
        let Some(spec) = pod.spec.as_mut() else {
            return;
        };
        // The scenarios' containers sleep as PID 1, which ignores SIGTERM: without
        // this every deletion waits out the default 30 s.
        spec.termination_grace_period_seconds.get_or_insert(1);
        if let Some(node) = spec.node_name.take() {
            spec.node_selector
                .get_or_insert_with(BTreeMap::new)
                .insert(HOSTNAME_LABEL.into(), node);
        } else if self.restricted {
            spec.affinity = Some(only_on(&self.nodes));
        }
        for c in &mut spec.containers {
            ends_on_sigterm(c);
            if c.image.as_deref().is_some_and(|i| i == FIXTURE_BUSYBOX) {
                c.image = Some(self.opts.pod_image.clone());
            }
            if c.image.as_deref().is_none_or(str::is_empty) {
                c.image = Some(self.opts.pod_image.clone());
                if c.command.as_ref().is_none_or(Vec::is_empty) {
                    c.command = Some(vec!["sleep".into(), "3600".into()]);
                    ends_on_sigterm(c);
                }
            }
        }
    }
}

/// A container whose command is a lone `sleep N` sleeps as PID 1, which ignores
/// SIGTERM: each deletion would wait out the kubelet's minimum grace (2 s, seen in
/// containerd's `StopContainer … with timeout 2 (s)`) before the SIGKILL. The same
/// sleep under a shell that exits on TERM ends at once; nothing else changes.
fn ends_on_sigterm(c: &mut k8s_openapi::api::core::v1::Container) {
    let Some([prog, secs]) = c.command.as_deref() else {
        return;
    };
    let lone_sleep = matches!(prog.as_str(), "sleep" | "/bin/sleep")
        && secs.parse::<u64>().is_ok()
        && c.args.as_ref().is_none_or(Vec::is_empty);
    if lone_sleep {
        let script = format!("trap 'exit 0' TERM; sleep {secs} & wait");
        c.command = Some(vec!["/bin/sh".into(), "-c".into(), script]);
    }
}

/// Creates `pod` (scope label, image and placement completed) and waits until it runs
/// with its network-status, is unschedulable, fails or times out.
pub(super) async fn create(c: &KubeCluster, pod: Pod) -> Result<PodView, ClusterError> {
    let name = pod.metadata.name.clone();
    let wants_status = pod.metadata.annotations.contains_key(NETWORKS_ANNOTATION);
    let placement = apply::known_placement("v1", "Pod").expect("pods are known");
    let (obj, _) = apply::prepare(apply::document(&Object::Pod(pod))?, &placement, &c.run)?;
    // Whatever namespace the fixture names: the run's own.
    let ns = c.run_namespace();
    let mut typed: KPod = serde_json::from_value(serde_json::to_value(&obj).unwrap_or_default())
        .map_err(|e| ClusterError::PodStart {
            pod: name.clone(),
            node: String::new(),
            message: format!("not a valid pod: {e}"),
        })?;
    typed.metadata.namespace = Some(ns.clone());
    if let Some(networks) = typed
        .metadata
        .annotations
        .as_mut()
        .and_then(|a| a.get_mut(NETWORKS_ANNOTATION))
    {
        *networks = networks_in(networks, &ns);
    }
    c.add_scope_label(&mut typed.metadata.labels);
    c.complete_spec(&mut typed);
    let api: Api<KPod> = Api::namespaced(c.client.clone(), &ns);
    c.touch(&placement, Some(&ns));
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let created = api
        .create(&pp, &typed)
        .await
        .map_err(|e| ClusterError::api(format!("create pod {ns}/{name}"), e))?;
    let uid = created.metadata.uid.clone().unwrap_or_default();
    wait_running(c, &api, &ns, &name, &uid, wants_status).await
}

/// Waits until pod `name` runs (with multus' network-status when `wants_status`);
/// else why not: unschedulable, failed or timed out.
async fn wait_running(
    c: &KubeCluster,
    api: &Api<KPod>,
    ns: &str,
    name: &str,
    uid: &str,
    wants_status: bool,
) -> Result<PodView, ClusterError> {
    let cond = move |p: Option<&KPod>| {
        p.is_some_and(|p| ready(p, wants_status) || unschedulable(p).is_some() || failed(p))
    };
    let watched =
        tokio::time::timeout(c.opts.pod_timeout, await_condition(api.clone(), name, cond));
    let waited = tokio::select! {
        w = watched => w,
        why = sandbox::first_failure(c, ns, name, uid) => {
            return sandbox_failed(c, api, ns, name, uid, wants_status, why).await;
        }
    };
    let last = match waited {
        Ok(Ok(Some(p))) => {
            if ready(&p, wants_status) {
                let mut view = view_of(ns, &p);
                view.name = name.to_string();
                if view.uid.is_empty() {
                    view.uid = uid.to_string();
                }
                return Ok(view);
            }
            if let Some(message) = unschedulable(&p) {
                // Refused, as on the netns cluster: a pending pod left behind would be
                // scheduled as soon as capacity frees and take it (seen on a real
                // scheduler, the bare cluster).
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.to_string()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                let _ = api.delete(name, &dp).await;
                return Err(ClusterError::Unschedulable {
                    pod: format!("{ns}/{name}"),
                    message,
                });
            }
            Some(p)
        }
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            return Err(ClusterError::PodStart {
                pod: format!("{ns}/{name}"),
                node: String::new(),
                message: format!("failed to watch the pod: {e}"),
            });
        }
        Err(_elapsed) => api.get_opt(name).await.ok().flatten(),
    };
    Err(not_running(c, ns, name, uid, last.as_ref(), wants_status).await)
}

/// A pod whose sandbox the kubelet failed to create: the CNI's error, then its
/// state and events. Unless it runs by now (the kubelet got past a passing failure).
async fn sandbox_failed(
    c: &KubeCluster,
    api: &Api<KPod>,
    ns: &str,
    name: &str,
    uid: &str,
    wants_status: bool,
    why: String,
) -> Result<PodView, ClusterError> {
    let last = api.get_opt(name).await.ok().flatten();
    if let Some(p) = last.as_ref().filter(|p| ready(p, wants_status)) {
        let mut view = view_of(ns, p);
        view.name = name.to_string();
        if view.uid.is_empty() {
            view.uid = uid.to_string();
        }
        return Ok(view);
    }
    let events = c.events_of(ns, name, Some(uid)).await;
    Err(ClusterError::PodStart {
        pod: format!("{ns}/{name}"),
        node: last
            .as_ref()
            .and_then(|p| p.spec.as_ref()?.node_name.clone())
            .unwrap_or_default(),
        message: format!(
            "{}: {why}\n{}\nevents:\n{events}",
            sandbox::FAILED_SANDBOX,
            describe(last.as_ref())
        ),
    })
}

/// A pod that did not come up: failed, or still not running at the deadline; with
/// its state, events and logs.
async fn not_running(
    c: &KubeCluster,
    ns: &str,
    name: &str,
    uid: &str,
    last: Option<&KPod>,
    wants_status: bool,
) -> ClusterError {
    let events = c.events_of(ns, name, Some(uid)).await;
    let logs = match last {
        Some(p) => c.logs_of(ns, p).await,
        None => String::new(),
    };
    let state = format!("{}\nevents:\n{events}\n{logs}", describe(last));
    if last.is_some_and(failed) {
        return ClusterError::PodStart {
            pod: format!("{ns}/{name}"),
            node: last
                .and_then(|p| p.spec.as_ref()?.node_name.clone())
                .unwrap_or_default(),
            message: state,
        };
    }
    ClusterError::Timeout {
        what: format!(
            "pod {ns}/{name} to run{}",
            if wants_status {
                " with a network-status annotation"
            } else {
                ""
            }
        ),
        seconds: c.opts.pod_timeout.as_secs(),
        state,
    }
}

/// Deletes a pod by UID and waits until it is gone.
pub(super) async fn delete(
    c: &KubeCluster,
    namespace: &str,
    name: &str,
) -> Result<(), ClusterError> {
    // A pod that never started is known to its scenario only by its fixture's name.
    let namespace = &c.scenario_namespace(namespace);
    let api: Api<KPod> = Api::namespaced(c.client.clone(), namespace);
    let pod = api
        .get_opt(name)
        .await
        .map_err(|e| ClusterError::api(format!("look up pod {namespace}/{name}"), e))?
        .ok_or_else(|| ClusterError::NoSuchPod(format!("{namespace}/{name}")))?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => {
            return Err(ClusterError::api(
                format!("delete pod {namespace}/{name}"),
                e,
            ));
        }
    }
    let gone = tokio::time::timeout(
        c.opts.pod_timeout,
        await_condition(api.clone(), name, conditions::is_deleted(&uid)),
    )
    .await;
    match gone {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ClusterError::PodDelete {
            pod: format!("{namespace}/{name}"),
            message: format!("failed to watch the deletion: {e}"),
        }),
        Err(_) => {
            let events = c.events_of(namespace, name, Some(&uid)).await;
            let logs = c.logs_of(namespace, &pod).await;
            Err(ClusterError::Timeout {
                what: format!("pod {namespace}/{name} (uid {uid}) to be deleted"),
                seconds: c.opts.pod_timeout.as_secs(),
                state: format!("events:\n{events}\n{logs}"),
            })
        }
    }
}

/// Runs `argv` in the pod's first container; its output and whether it succeeded.
pub(super) async fn exec(
    c: &KubeCluster,
    namespace: &str,
    pod: &str,
    argv: &[&str],
) -> Result<ExecOutput, ClusterError> {
    let fail = |message: String| ClusterError::Exec {
        pod: format!("{namespace}/{pod}"),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        message,
    };
    let api: Api<KPod> = Api::namespaced(c.client.clone(), namespace);
    let ap = AttachParams::default()
        .stdin(false)
        .stdout(true)
        .stderr(true);
    // A request that never reached the API server (its connection refused or reset
    // under load) started nothing in the pod: asked again, up to three times.
    let mut attempt = 0;
    let mut proc = loop {
        attempt += 1;
        match api.exec(pod, argv.iter().copied(), &ap).await {
            Ok(proc) => break proc,
            Err(kube::Error::Service(_) | kube::Error::HyperError(_)) if attempt < 3 => {
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => {
                return Err(ClusterError::api(
                    format!("exec {argv:?} in pod {namespace}/{pod}"),
                    e,
                ));
            }
        }
    };
    let mut stdout = proc.stdout().ok_or_else(|| fail("no stdout".into()))?;
    let mut stderr = proc.stderr().ok_or_else(|| fail("no stderr".into()))?;
    let status = proc.take_status();
    let (mut out, mut err) = (String::new(), String::new());
    let (r1, r2) = tokio::join!(
        stdout.read_to_string(&mut out),
        stderr.read_to_string(&mut err)
    );
    r1.and(r2)
        .map_err(|e| fail(format!("reading output: {e}")))?;
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    proc.join().await.map_err(|e| fail(e.to_string()))?;
    Ok(ExecOutput {
        success: status.is_some_and(|s| s.status.as_deref() == Some("Success")),
        stdout: out,
        stderr: err,
    })
}

/// The run's live pods: every pod of its namespace and every pod elsewhere that
/// carries its label, but those being deleted or finished (their addresses are
/// being given back or are gone).
pub(super) async fn live(c: &KubeCluster) -> Result<Vec<PodView>, ClusterError> {
    let ns = c.run_namespace();
    let own: Api<KPod> = Api::namespaced(c.client.clone(), &ns);
    let labelled: Api<KPod> = Api::all(c.client.clone());
    let mut pods = own
        .list(&ListParams::default())
        .await
        .map_err(|e| ClusterError::api(format!("list the pods of namespace {ns}"), e))?
        .items;
    let by_label = format!("{}={}", crate::cluster::kube::RUN_LABEL, c.run);
    let elsewhere = labelled
        .list(&ListParams::default().labels(&by_label))
        .await
        .map_err(|e| ClusterError::api(format!("list the pods labelled {by_label}"), e))?
        .items;
    pods.extend(
        elsewhere
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() != Some(ns.as_str())),
    );
    Ok(pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !finished(p))
        .map(|p| view_of(p.metadata.namespace.as_deref().unwrap_or_default(), p))
        .collect())
}

/// A pod whose containers have all ended for good.
fn finished(pod: &KPod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed")
}

impl KubeCluster {
    /// Waits until no pod of this run (and scope) is left, e.g. after `teardown`, so
    /// that the next scenario can reuse the names.
    pub async fn wait_pods_gone(&self) -> Result<(), ClusterError> {
        let api: Api<KPod> = Api::all(self.client.clone());
        let lp = ListParams::default().labels(&self.selector());
        let what = format!("the pods labelled {} to be deleted", self.selector());
        let pace = wait::Pace::QUICK;
        wait::until(what, self.opts.pod_timeout, pace, || async {
            let left: Vec<String> = match api.list(&lp).await {
                Ok(list) => list
                    .items
                    .into_iter()
                    .filter(|p| self.is_mine(p.metadata.labels.as_ref()))
                    .filter_map(|p| p.metadata.name)
                    .collect(),
                Err(e) => vec![format!("(list failed: {})", api_err(e))],
            };
            Ok(if left.is_empty() {
                wait::Seen::Ready(())
            } else {
                wait::Seen::NotYet(format!("still there: {}", left.join(" ")))
            })
        })
        .await
    }

    /// Kills the device plugin on `node` (its pod deleted with no grace period) and
    /// waits until the DaemonSet's new pod there is Running.
    pub async fn restart_device_plugin(&self, node: &str) -> Result<(), ClusterError> {
        let fail = |message: String| ClusterError::Operation {
            provider: self.provider.clone(),
            what: format!("restarting the device plugin on {node}"),
            message,
        };
        let (ns, selector) = self.opts.device_plugin_pods.clone().ok_or_else(|| {
            fail("no device plugin component in this run (--components without macvtap?)".into())
        })?;
        let api: Api<KPod> = Api::namespaced(self.client.clone(), &ns);
        let lp = ListParams::default()
            .labels(&selector)
            .fields(&format!("spec.nodeName={node}"));
        let old = api
            .list(&lp)
            .await
            .map_err(|e| ClusterError::api(format!("list {selector} in {ns}"), e))?
            .items;
        if old.is_empty() {
            return Err(fail(format!("no pod {selector} in {ns} runs on {node}")));
        }
        let old_uids: Vec<String> = old.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        for p in &old {
            let name = p.metadata.name.clone().unwrap_or_default();
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: p.metadata.uid.clone().map(|uid| Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(ClusterError::api(format!("kill {ns}/{name}"), e)),
            }
        }
        let what = format!("a new device plugin pod ({selector}) Running on {node}");
        let pace = wait::Pace::every(Duration::from_millis(500));
        wait::until(what, self.opts.pod_timeout, pace, || async {
            let pods = api.list(&lp).await.map(|l| l.items).unwrap_or_default();
            let fresh = pods.iter().any(|p| {
                p.metadata
                    .uid
                    .as_ref()
                    .is_some_and(|u| !old_uids.contains(u))
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            });
            if fresh {
                return Ok(wait::Seen::Ready(()));
            }
            let state: Vec<String> = pods
                .iter()
                .map(|p| {
                    format!(
                        "{}: {}",
                        p.metadata.name.as_deref().unwrap_or("?"),
                        describe(Some(p))
                    )
                })
                .collect();
            Ok(wait::Seen::NotYet(if state.is_empty() {
                "no pod: is the DaemonSet there?".into()
            } else {
                state.join("; ")
            }))
        })
        .await
    }

    /// The whole log of the device plugin's pod on `node` (every container).
    pub async fn device_plugin_log(&self, node: &str) -> Result<String, ClusterError> {
        let (ns, selector) =
            self.opts
                .device_plugin_pods
                .clone()
                .ok_or_else(|| ClusterError::Operation {
                    provider: self.provider.clone(),
                    what: format!("reading the device plugin's log on {node}"),
                    message: "no device plugin component in this run".into(),
                })?;
        let api: Api<KPod> = Api::namespaced(self.client.clone(), &ns);
        let lp = ListParams::default()
            .labels(&selector)
            .fields(&format!("spec.nodeName={node}"));
        let pods = api
            .list(&lp)
            .await
            .map_err(|e| ClusterError::api(format!("list {selector} in {ns}"), e))?
            .items;
        let mut out = String::new();
        for p in &pods {
            let name = p.metadata.name.clone().unwrap_or_default();
            let containers = p.spec.iter().flat_map(|s| &s.containers);
            for c in containers {
                let lp = LogParams {
                    container: Some(c.name.clone()),
                    ..LogParams::default()
                };
                let text = api
                    .logs(&name, &lp)
                    .await
                    .map_err(|e| ClusterError::api(format!("logs of {ns}/{name}"), e))?;
                out.push_str(&text);
            }
        }
        Ok(out)
    }
}

/// A pod's network selection with the fixtures' namespace `default` read as `ns`
/// (the run's), in either form multus takes: `default/name@if, name` or a JSON list
/// with `namespace` fields. A bare name resolves in the pod's namespace already;
/// other namespaces are kept.
fn networks_in(annotation: &str, ns: &str) -> String {
    if let Ok(serde_json::Value::Array(mut list)) = serde_json::from_str(annotation) {
        for entry in &mut list {
            if entry["namespace"] == "default" {
                entry["namespace"] = ns.into();
            }
            if let Some(name) = entry["name"]
                .as_str()
                .and_then(|n| n.strip_prefix("default/"))
            {
                entry["name"] = format!("{ns}/{name}").into();
            }
        }
        return serde_json::Value::Array(list).to_string();
    }
    annotation
        .split(',')
        .map(|entry| {
            let entry = entry.trim();
            match entry.strip_prefix("default/") {
                Some(rest) => format!("{ns}/{rest}"),
                None => entry.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Node affinity to the given hostnames (required at scheduling).
fn only_on(nodes: &[String]) -> k8s_openapi::api::core::v1::Affinity {
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    };
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: HOSTNAME_LABEL.into(),
                        operator: "In".into(),
                        values: Some(nodes.to_vec()),
                    }]),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Running, and with multus' network-status when the pod selected networks.
fn ready(pod: &KPod, wants_status: bool) -> bool {
    let running = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Running");
    let status_ok = !wants_status
        || pod
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(NETWORK_STATUS_ANNOTATION));
    running && status_ok
}

/// The scheduler's "0/2 nodes are available: ... Insufficient ..." if it gave up.
fn unschedulable(pod: &KPod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| c.message.clone().unwrap_or_default())
}

fn failed(pod: &KPod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Failed")
}

/// What the scenarios see of a pod the API server returned. Device IDs are only
/// visible on the node (its kubelet's checkpoint or pod-resources API).
pub(super) fn view_of(namespace: &str, p: &KPod) -> PodView {
    PodView {
        namespace: namespace.to_string(),
        name: p.metadata.name.clone().unwrap_or_default(),
        uid: p.metadata.uid.clone().unwrap_or_default(),
        node: p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        annotations: p.metadata.annotations.clone().unwrap_or_default(),
        devices: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::networks_in;

    #[test]
    fn network_selections_of_namespace_default_move_to_the_run_namespace() {
        assert_eq!(
            networks_in("dataplane, default/other@net2,kube-system/x", "secnet-r1"),
            "dataplane,secnet-r1/other@net2,kube-system/x"
        );
        let json = r#"[{"name": "dataplane", "namespace": "default", "mac": "02:00:00:00:00:01"},
            {"name": "default/b"}, {"name": "c", "namespace": "lab"}]"#;
        let out: serde_json::Value = serde_json::from_str(&networks_in(json, "secnet-r1")).unwrap();
        assert_eq!(out[0]["namespace"], "secnet-r1");
        assert_eq!(out[0]["mac"], "02:00:00:00:00:01");
        assert_eq!(out[1]["name"], "secnet-r1/b");
        assert_eq!(out[2]["namespace"], "lab");
    }
}
