//! Server-side apply of one document onto the cluster: where its kind lives
//! (known kinds, else discovery), the run's labels on it, and never onto what the
//! run did not make: no `force`, and an object without this run's label is refused.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery;

use super::KubeCluster;
use super::ownership::Foreign;
use crate::cluster::ClusterError;
use crate::cluster::kube::FIELD_MANAGER;
use crate::cluster::kube::apply::{self, Placement};

impl KubeCluster {
    pub(super) async fn placement(
        &self,
        doc: &serde_json::Value,
    ) -> Result<Placement, ClusterError> {
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

    /// Server-side apply of one document in the namespace it names (a component's),
    /// field manager `secnet`, run label set.
    pub async fn apply_document(&self, doc: serde_json::Value) -> Result<(), ClusterError> {
        self.apply_in(doc, None).await
    }

    /// A scenario's document: a namespaced object goes into the run namespace,
    /// whatever namespace its fixture names.
    pub(super) async fn apply_scenario_document(
        &self,
        doc: serde_json::Value,
    ) -> Result<(), ClusterError> {
        self.apply_in(doc, Some(self.run_namespace())).await
    }

    async fn apply_in(
        &self,
        doc: serde_json::Value,
        into: Option<String>,
    ) -> Result<(), ClusterError> {
        let placement = self.placement(&doc).await?;
        let (mut obj, mut namespace) = apply::prepare(doc, &placement, &self.run)?;
        if let Some(ns) = into.filter(|_| placement.namespaced) {
            obj.metadata.namespace = Some(ns.clone());
            namespace = Some(ns);
        }
        self.add_scope_label(&mut obj.metadata.labels);
        let kind = placement.resource.kind.clone();
        let name = obj.metadata.name.clone().unwrap_or_default();
        let api = self.dynamic_api(&placement, namespace.as_deref());
        let path = match &namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.clone(),
        };
        let fail = |message: String| ClusterError::Apply {
            kind: kind.clone(),
            name: path.clone(),
            message,
        };
        // Never onto what this run did not make: deploy checked every component
        // first (and left out what was adopted); this catches the rest.
        let existing = api
            .get_opt(&name)
            .await
            .map_err(|e| ClusterError::api(format!("look up {kind} {path}"), e))?;
        if let Some(found) = existing.filter(|o| !self.is_this_runs(o)) {
            return Err(fail(format!(
                "exists already and was not made by this run ({}); secnet never overwrites it (--adopt-existing uses a component's objects as found)",
                Foreign::of(&kind, &found).owners()
            )));
        }
        self.touch(&placement, namespace.as_deref());
        // No force: a field another manager owns is a 409, reported, never taken over.
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&obj),
        )
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 409 => fail(format!(
                "another field manager owns fields this apply sets, and secnet never forces: {}",
                s.message
            )),
            other => ClusterError::api(format!("apply {kind} {path}"), other),
        })?;
        Ok(())
    }
}
