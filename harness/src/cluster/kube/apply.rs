//! Fixture objects → the documents sent to the API server with server-side apply.
//! Every object gets the run label so teardown can find exactly what this run made.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

use super::RUN_LABEL;
use crate::cluster::ClusterError;
use crate::objects::Object;

/// Where an object lives in the API: its resource and whether it is namespaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub(crate) resource: ApiResource,
    pub(crate) namespaced: bool,
}

/// Kinds the fixtures and component sets use, so that apply works without a
/// discovery round trip. Anything else is resolved with discovery (`pinned_kind`).
const KNOWN: &[(&str, &str, &str, &str, bool)] = &[
    // (group, version, kind, plural, namespaced)
    ("", "v1", "ConfigMap", "configmaps", true),
    ("", "v1", "Pod", "pods", true),
    ("", "v1", "Namespace", "namespaces", false),
    ("", "v1", "ServiceAccount", "serviceaccounts", true),
    ("", "v1", "Service", "services", true),
    ("", "v1", "Secret", "secrets", true),
    ("apps", "v1", "DaemonSet", "daemonsets", true),
    ("apps", "v1", "Deployment", "deployments", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    ),
    (
        "k8s.cni.cncf.io",
        "v1",
        "NetworkAttachmentDefinition",
        "network-attachment-definitions",
        true,
    ),
    ("kubevirt.io", "v1", "KubeVirt", "kubevirts", true),
    (
        "kubevirt.io",
        "v1",
        "VirtualMachine",
        "virtualmachines",
        true,
    ),
    (
        "kubevirt.io",
        "v1",
        "VirtualMachineInstance",
        "virtualmachineinstances",
        true,
    ),
    (
        "networkaddonsoperator.network.kubevirt.io",
        "v1",
        "NetworkAddonsConfig",
        "networkaddonsconfigs",
        false,
    ),
];

/// The placement of a known kind, `None` for kinds that need discovery.
pub fn known_placement(api_version: &str, kind: &str) -> Option<Placement> {
    let (group, version) = split_api_version(api_version);
    known_placements().find(|p| {
        let r = &p.resource;
        r.group == group && r.version == version && r.kind == kind
    })
}

/// Every kind `apply` knows without discovery, in `KNOWN` order (what `sweep` lists).
pub fn known_placements() -> impl Iterator<Item = Placement> {
    KNOWN.iter().map(|(g, v, k, plural, namespaced)| Placement {
        resource: ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), plural),
        namespaced: *namespaced,
    })
}

pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// The whole document of a fixture object, with `apiVersion` and `kind`.
pub fn document(obj: &Object) -> Result<Value, ClusterError> {
    let fail = |message: String| ClusterError::Apply {
        kind: obj.kind().to_string(),
        name: obj.name().to_string(),
        message,
    };
    let (api_version, mut doc) = match obj {
        Object::ConfigMap(c) => ("v1", serde_json::to_value(c)),
        Object::Nad(n) => ("k8s.cni.cncf.io/v1", serde_json::to_value(n)),
        Object::Pod(p) => ("v1", serde_json::to_value(p)),
        Object::Other { raw, .. } => {
            return if raw.get("apiVersion").and_then(Value::as_str).is_some() {
                Ok(raw.clone())
            } else {
                Err(fail("has no apiVersion".into()))
            };
        }
    };
    let doc = doc
        .as_mut()
        .map_err(|e| fail(format!("cannot serialize: {e}")))?;
    let map = doc
        .as_object_mut()
        .ok_or_else(|| fail("is not a mapping".into()))?;
    map.insert("apiVersion".into(), json!(api_version));
    map.insert("kind".into(), json!(obj.kind()));
    Ok(doc.take())
}

/// Turns a document into the object to apply: run label set, namespace set for
/// namespaced kinds (default `default`) and removed for cluster-scoped ones, server
/// fields (`uid`, `resourceVersion`, `status`) dropped.
pub fn prepare(
    mut doc: Value,
    placement: &Placement,
    run: &str,
) -> Result<(DynamicObject, Option<String>), ClusterError> {
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let fail = |message: String| ClusterError::Apply {
        kind: kind.clone(),
        name: name.clone(),
        message,
    };
    if name.is_empty() {
        return Err(fail("has no metadata.name".into()));
    }
    if let Some(map) = doc.as_object_mut() {
        map.remove("status");
    }
    let meta = doc
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| fail("metadata is not a mapping".into()))?;
    for server_field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
    ] {
        meta.remove(server_field);
    }
    let namespace = if placement.namespaced {
        let ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string();
        meta.insert("namespace".into(), json!(ns));
        Some(ns)
    } else {
        meta.remove("namespace");
        None
    };
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if labels.is_null() {
        *labels = json!({});
    }
    labels
        .as_object_mut()
        .ok_or_else(|| fail("metadata.labels is not a mapping".into()))?
        .insert(RUN_LABEL.into(), json!(run));
    for empty in ["annotations", "labels"] {
        if meta
            .get(empty)
            .and_then(Value::as_object)
            .is_some_and(|m| m.is_empty())
        {
            meta.remove(empty);
        }
    }
    let obj: DynamicObject =
        serde_json::from_value(doc).map_err(|e| fail(format!("not a Kubernetes object: {e}")))?;
    Ok((obj, namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_kinds_resolve_with_their_plural_and_scope() {
        let nad = known_placement("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition").unwrap();
        assert_eq!(nad.resource.plural, "network-attachment-definitions");
        assert!(nad.namespaced);
        let nac = known_placement(
            "networkaddonsoperator.network.kubevirt.io/v1",
            "NetworkAddonsConfig",
        )
        .unwrap();
        assert!(!nac.namespaced);
        assert!(known_placement("v1", "Frobnicator").is_none());
    }

    #[test]
    fn prepare_labels_and_scopes() {
        let cm = known_placement("v1", "ConfigMap").unwrap();
        let doc = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "uid": "u", "labels": {"a": "b"}}, "data": {"k": "v"}});
        let (obj, ns) = prepare(doc, &cm, "r1").unwrap();
        assert_eq!(ns.as_deref(), Some("default"));
        assert_eq!(obj.metadata.labels.unwrap()["secnet.run"], "r1");
        assert!(obj.metadata.uid.is_none());
        let crb = known_placement("rbac.authorization.k8s.io/v1", "ClusterRoleBinding").unwrap();
        let doc = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "y", "namespace": "kube-system"}});
        let (obj, ns) = prepare(doc, &crb, "r1").unwrap();
        assert!(ns.is_none() && obj.metadata.namespace.is_none());
        let err = prepare(json!({"kind": "ConfigMap", "metadata": {}}), &cm, "r1").unwrap_err();
        assert!(err.to_string().contains("metadata.name"), "{err}");
    }
}
