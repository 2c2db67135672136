//! What a failure report carries from a real cluster: a pod's state, its events and
//! the last lines of its containers' logs, for the run's pods and the components'.

use k8s_openapi::api::core::v1::{Event, Pod as KPod};
use kube::api::{Api, ListParams, LogParams};

use super::{KubeCluster, api_err};

impl KubeCluster {
    /// Events about one object, oldest first, one per line.
    pub(super) async fn events_of(&self, namespace: &str, name: &str, uid: Option<&str>) -> String {
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let mut fields = format!("involvedObject.name={name}");
        if let Some(uid) = uid.filter(|u| !u.is_empty()) {
            fields.push_str(&format!(",involvedObject.uid={uid}"));
        }
        match api.list(&ListParams::default().fields(&fields)).await {
            Ok(list) => {
                let mut items = list.items;
                items.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
                if items.is_empty() {
                    return "(no events)".into();
                }
                items
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {} {}",
                            e.type_.as_deref().unwrap_or("?"),
                            e.reason.as_deref().unwrap_or("?"),
                            e.message.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Err(e) => format!("(events unavailable: {})", api_err(e)),
        }
    }

    /// The last log lines of every container of a pod.
    pub(super) async fn logs_of(&self, namespace: &str, pod: &KPod) -> String {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<KPod> = Api::namespaced(self.client.clone(), namespace);
        let containers: Vec<String> = pod
            .spec
            .as_ref()
            .map(|s| {
                let init = s.init_containers.iter().flatten();
                init.chain(&s.containers).map(|c| c.name.clone()).collect()
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for c in containers {
            let lp = LogParams {
                container: Some(c.clone()),
                tail_lines: Some(self.opts.log_lines),
                ..LogParams::default()
            };
            let text = match api.logs(&name, &lp).await {
                Ok(t) if t.is_empty() => "(empty)".into(),
                Ok(t) => t,
                Err(e) => format!("(logs unavailable: {})", api_err(e)),
            };
            out.push(format!("--- {namespace}/{name} [{c}] ---\n{text}"));
        }
        out.join("\n")
    }
}

/// A pod's phase and its conditions that are not True, on one line.
pub(super) fn describe(pod: Option<&KPod>) -> String {
    let Some(pod) = pod else {
        return "pod not found".into();
    };
    let Some(status) = pod.status.as_ref() else {
        return "no status yet".into();
    };
    let mut s = format!("phase {}", status.phase.as_deref().unwrap_or("?"));
    for c in status.conditions.iter().flatten() {
        if c.status != "True" {
            s.push_str(&format!(
                "; {}={} {} {}",
                c.type_,
                c.status,
                c.reason.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or("")
            ));
        }
    }
    s
}

/// Every pod of the run (and scope) and of the components' log selectors: state,
/// events and logs.
pub(super) async fn collect(c: &KubeCluster) -> String {
    let mut out = Vec::new();
    let pods_all: Api<KPod> = Api::all(c.client.clone());
    let mut selectors = vec![(None, c.selector())];
    selectors.extend(
        c.opts
            .log_selectors
            .iter()
            .map(|(ns, sel)| (Some(ns.clone()), sel.clone())),
    );
    for (ns, sel) in selectors {
        let api = match &ns {
            Some(ns) => Api::namespaced(c.client.clone(), ns),
            None => pods_all.clone(),
        };
        match api.list(&ListParams::default().labels(&sel)).await {
            Ok(list) => {
                for p in list.items {
                    let pns = p.metadata.namespace.clone().unwrap_or_default();
                    let pname = p.metadata.name.clone().unwrap_or_default();
                    out.push(format!("=== pod {pns}/{pname}: {}", describe(Some(&p))));
                    out.push(format!(
                        "events:\n{}",
                        c.events_of(&pns, &pname, p.metadata.uid.as_deref()).await
                    ));
                    out.push(c.logs_of(&pns, &p).await);
                }
            }
            Err(e) => out.push(format!("(pods with {sel}: {})", api_err(e))),
        }
    }
    out.join("\n")
}
