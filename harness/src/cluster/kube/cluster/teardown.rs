//! Removing what a run (or one scenario's scope) made: by label, by UID, newest
//! kinds first, and never what the run did not create.

use std::collections::BTreeSet;

use kube::api::{DeleteParams, ListParams, Preconditions};

use super::{KubeCluster, api_err, is_not_found};
use crate::cluster::kube::apply::{self, Placement};

/// What teardown did: objects deleted and errors met (it keeps going).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Teardown {
    pub deleted: Vec<String>,
    pub errors: Vec<String>,
}

impl KubeCluster {
    /// Deletes everything that carries this run's label, newest kinds first, each by
    /// UID precondition; keeps going on errors. Objects without the label (what the
    /// run did not create) are never listed, hence never deleted.
    pub async fn teardown(&self) -> Teardown {
        let touched = self
            .touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let pods = apply::known_placement("v1", "Pod").expect("pods are known");
        let mut order: Vec<(Placement, BTreeSet<String>)> = touched.into_iter().rev().collect();
        if let Some(i) = order.iter().position(|(p, _)| *p == pods) {
            let pods = order.remove(i);
            order.insert(0, pods);
        }
        let lp = ListParams::default().labels(&self.selector());
        let mut report = Teardown::default();
        for (placement, namespaces) in order {
            for ns in namespaces {
                let ns = (!ns.is_empty()).then_some(ns);
                let api = self.dynamic_api(&placement, ns.as_deref());
                let list = match api.list(&lp).await {
                    Ok(l) => l,
                    Err(e) => {
                        report.errors.push(format!(
                            "failed to list {}: {}",
                            placement.resource.plural,
                            api_err(e)
                        ));
                        continue;
                    }
                };
                for obj in list.items {
                    if !self.is_mine(obj.metadata.labels.as_ref()) {
                        continue; // the server ignored the selector: never guess
                    }
                    let name = obj.metadata.name.clone().unwrap_or_default();
                    let dp = DeleteParams {
                        preconditions: obj.metadata.uid.clone().map(|uid| Preconditions {
                            uid: Some(uid),
                            resource_version: None,
                        }),
                        ..DeleteParams::background()
                    };
                    let what = match &ns {
                        Some(ns) => format!("{} {ns}/{name}", placement.resource.kind),
                        None => format!("{} {name}", placement.resource.kind),
                    };
                    match api.delete(&name, &dp).await {
                        Ok(_) => report.deleted.push(what),
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => report
                            .errors
                            .push(format!("failed to delete {what}: {}", api_err(e))),
                    }
                }
            }
        }
        if self.scope.is_none() {
            // The node probe pods belong to the run, not to a scenario.
            let probes = self.remove_probes().await;
            report.deleted.extend(probes.deleted);
            report.errors.extend(probes.errors);
        }
        report
    }
}
