//! Server-side apply of one document onto the cluster: where its kind lives
//! (known kinds, else discovery), and the run's labels on it.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery;

use super::{KubeCluster, SCOPE_LABEL, api_err};
use crate::cluster::ClusterError;
use crate::cluster::kube::apply::{self, Placement};
use crate::cluster::kube::{FIELD_MANAGER, RUN_LABEL};

impl KubeCluster {
    async fn placement(&self, doc: &serde_json::Value) -> Result<Placement, ClusterError> {
        let api_version = doc.get("apiVersion").and_then(|v| v.as_str()).unwrap_or("");
        let kind = doc.get("kind").and_then(|v| v.as_str()).unwrap_or("");
        if let Some(p) = apply::known_placement(api_version, kind) {
            return Ok(p);
        }
        let (group, version) = apply::split_api_version(api_version);
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| ClusterError::Apply {
                kind: kind.to_string(),
                name: String::new(),
                message: format!("the API server does not serve {api_version} {kind}: {e}"),
            })?;
        Ok(Placement {
            resource,
            namespaced: caps.scope == discovery::Scope::Namespaced,
        })
    }

    pub(super) fn dynamic_api(&self, p: &Placement, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &p.resource),
            None => Api::all_with(self.client.clone(), &p.resource),
        }
    }

    /// Server-side apply of one document, field manager `secnet`, run label set.
    pub async fn apply_document(&self, doc: serde_json::Value) -> Result<(), ClusterError> {
        let placement = self.placement(&doc).await?;
        let (mut obj, namespace) = apply::prepare(doc, &placement, &self.run)?;
        self.add_scope_label(&mut obj.metadata.labels);
        let name = obj.metadata.name.clone().unwrap_or_default();
        let api = self.dynamic_api(&placement, namespace.as_deref());
        // An object that exists without this run's label was not made by this run:
        // apply onto it without the label, so teardown leaves it alone.
        let existing = api.get_opt(&name).await.map_err(|e| ClusterError::Apply {
            kind: placement.resource.kind.clone(),
            name: name.clone(),
            message: format!("failed to look it up: {}", api_err(e)),
        })?;
        let theirs = existing.is_some_and(|o| {
            o.metadata.labels.as_ref().and_then(|l| l.get(RUN_LABEL)) != Some(&self.run)
        });
        if theirs {
            if let Some(labels) = obj.metadata.labels.as_mut() {
                labels.remove(RUN_LABEL);
                labels.remove(SCOPE_LABEL);
            }
            tracing::info!(kind = %placement.resource.kind, %name, "exists already, not made by this run: applied without the run label; teardown keeps it");
        } else {
            self.touch(&placement, namespace.as_deref());
        }
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await
        .map_err(|e| ClusterError::Apply {
            kind: placement.resource.kind.clone(),
            name,
            message: api_err(e),
        })?;
        Ok(())
    }
}
