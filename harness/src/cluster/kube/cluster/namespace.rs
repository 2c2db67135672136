//! The run's own namespace (`secnet-<run>`): made first, before anything is applied,
//! labelled with the run label (so `secnet clean` finds it) and as a privileged
//! namespace for Pod Security admission (the node probe pods live in it); deleted
//! last, and waited for, so that nothing of the run outlives it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, Preconditions};

use super::{KubeCluster, api_err, is_not_found};
use crate::cluster::ClusterError;
use crate::cluster::kube::{FIELD_MANAGER, RUN_LABEL};
use crate::lab::wait::{Pace, Seen, poll_until};

/// Pod Security admission's label: the run's pods may be privileged (node probes).
pub const POD_SECURITY_LABEL: &str = "pod-security.kubernetes.io/enforce";

impl KubeCluster {
    /// The labels the run namespace carries.
    pub fn run_namespace_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (RUN_LABEL.to_string(), self.run.clone()),
            (POD_SECURITY_LABEL.to_string(), "privileged".to_string()),
        ])
    }

    /// Creates the run namespace. One that exists already is this run's only if it
    /// carries this run's label; any other is an error naming it (never taken over).
    pub async fn create_run_namespace(&self) -> Result<(), ClusterError> {
        let name = self.run_namespace();
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(self.run_namespace_labels()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let fail = |message: String| ClusterError::Apply {
            kind: "Namespace".into(),
            name: name.clone(),
            message,
        };
        match api.create(&pp, &ns).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let found = api
                    .get_opt(&name)
                    .await
                    .map_err(|e| ClusterError::api(format!("look up namespace {name}"), e))?;
                let owner = found
                    .as_ref()
                    .and_then(|n| n.metadata.labels.as_ref()?.get(RUN_LABEL).cloned());
                if owner.as_deref() == Some(self.run.as_str()) {
                    return Ok(());
                }
                Err(fail(format!(
                    "exists already and is not this run's ({RUN_LABEL}={}); a run id is new for every run, so this is someone else's namespace: secnet does not use it",
                    owner.as_deref().unwrap_or("<none>")
                )))
            }
            Err(e) => Err(ClusterError::api(format!("create namespace {name}"), e)),
        }
    }

    /// Deletes the run namespace (by UID, only if it carries this run's label) and
    /// waits until the API server has removed it and everything in it.
    pub async fn delete_run_namespace(&self) -> Result<(), String> {
        let name = self.run_namespace();
        let api: Api<Namespace> = Api::all(self.client.clone());
        let found = api
            .get_opt(&name)
            .await
            .map_err(|e| format!("failed to look up namespace {name}: {}", api_err(e)))?;
        let Some(ns) = found else {
            return Ok(());
        };
        let owner = ns.metadata.labels.as_ref().and_then(|l| l.get(RUN_LABEL));
        if owner != Some(&self.run) {
            return Err(format!(
                "not deleting namespace {name}: it does not carry {RUN_LABEL}={}",
                self.run
            ));
        }
        if ns.metadata.deletion_timestamp.is_some() {
            return self.wait_namespace_gone(&api, &name).await; // deleting already
        }
        let dp = DeleteParams {
            preconditions: ns.metadata.uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(format!("failed to delete namespace {name}: {}", api_err(e))),
        }
        self.wait_namespace_gone(&api, &name).await
    }

    /// Polls until namespace `name` is gone (the API server removed its content).
    async fn wait_namespace_gone(&self, api: &Api<Namespace>, name: &str) -> Result<(), String> {
        let pace = Pace::every(Duration::from_millis(200));
        let waited = poll_until(self.opts.pod_timeout, pace, || async {
            match api.get_opt(name).await {
                Ok(None) => Ok(Seen::Ready(())),
                Ok(Some(left)) => Ok(Seen::NotYet(
                    left.status.and_then(|s| s.phase).unwrap_or_default(),
                )),
                Err(e) => Err(format!(
                    "failed to look up namespace {name}: {}",
                    api_err(e)
                )),
            }
        })
        .await?;
        waited.map_err(|phase| {
            format!(
                "namespace {name} still there ({phase}) after {} s: kubectl get all,network-attachment-definitions -n {name}",
                self.opts.pod_timeout.as_secs()
            )
        })
    }
}
