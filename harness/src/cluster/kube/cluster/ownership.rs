//! Whose an object is: secnet applies and deletes only what carries its run's label.
//! Before a run applies its components, every rendered document is looked up; one
//! that exists without this run's label (the user's own device plugin, a CRD, what a
//! killed secnet run left) is `Foreign` and stops the run unless it is adopted.

use std::fmt;

use kube::api::DynamicObject;
use serde_json::Value;

use super::KubeCluster;
use crate::cluster::ClusterError;
use crate::cluster::kube::RUN_LABEL;
use crate::cluster::kube::apply;

/// An object a run would apply that exists already and is not this run's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    pub(crate) kind: String,
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
    /// Its field managers (`metadata.managedFields`), e.g. `kubectl`, `helm`.
    pub(crate) managers: Vec<String>,
    /// The secnet run whose label it carries, when another run made it.
    pub(crate) other_run: Option<String>,
}

impl Foreign {
    pub(super) fn of(kind: &str, obj: &DynamicObject) -> Foreign {
        let mut managers: Vec<String> = Vec::new();
        for m in obj.metadata.managed_fields.iter().flatten() {
            if let Some(name) = m.manager.clone().filter(|n| !managers.contains(n)) {
                managers.push(name);
            }
        }
        Foreign {
            kind: kind.to_string(),
            namespace: obj.metadata.namespace.clone().filter(|n| !n.is_empty()),
            name: obj.metadata.name.clone().unwrap_or_default(),
            managers,
            other_run: obj
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(RUN_LABEL))
                .cloned(),
        }
    }

    /// `kube-system/name`, or the name of a cluster-scoped object.
    pub fn path(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// `managed by kubectl`; for an object of another secnet run, which run and how
    /// to remove what it left.
    pub fn owners(&self) -> String {
        let mut out = if self.managers.is_empty() {
            "no field manager recorded".to_string()
        } else {
            format!("managed by {}", self.managers.join(", "))
        };
        if let Some(run) = &self.other_run {
            out.push_str(&format!(
                "; left by secnet run {run}: if that run is not running any more, `secnet clean --cluster existing --run {run}` removes it"
            ));
        }
        out
    }
}

/// `DaemonSet kube-system/secnet-macvtap (managed by kubectl)`.
impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.kind, self.path(), self.owners())
    }
}

impl KubeCluster {
    /// The documents' objects that exist without this run's label, in document order.
    /// A kind the server does not serve yet (a CRD the same run applies first) has
    /// nothing that could be foreign.
    pub async fn foreign_objects(&self, docs: &[Value]) -> Result<Vec<Foreign>, ClusterError> {
        let mut out = Vec::new();
        for doc in docs {
            let Ok(placement) = self.placement(doc).await else {
                continue;
            };
            let (obj, namespace) = apply::prepare(doc.clone(), &placement, &self.run)?;
            let name = obj.metadata.name.clone().unwrap_or_default();
            let api = self.dynamic_api(&placement, namespace.as_deref());
            let found = api.get_opt(&name).await.map_err(|e| {
                ClusterError::api(format!("look up {} {name}", placement.resource.kind), e)
            })?;
            if let Some(found) = found.filter(|o| !self.is_this_runs(o)) {
                out.push(Foreign::of(&placement.resource.kind, &found));
            }
        }
        Ok(out)
    }

    /// Whether a stored object carries this run's label.
    pub(super) fn is_this_runs(&self, obj: &DynamicObject) -> bool {
        obj.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(RUN_LABEL))
            .is_some_and(|r| *r == self.run)
    }
}
