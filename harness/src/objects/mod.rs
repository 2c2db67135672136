//! The Kubernetes objects secnet reads from fixture YAML: just the fields the netns
//! cluster acts on, typed, with errors that name the file, document and field.

pub mod fixture;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use fixture::{FixtureError, load_file, load_str};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub(crate) name: String,
    #[serde(default = "default_namespace")]
    pub(crate) namespace: String,
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    /// Set by the cluster when the object is created.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) uid: String,
}

fn default_namespace() -> String {
    "default".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigMap {
    pub(crate) metadata: Meta,
    #[serde(default)]
    pub(crate) data: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkAttachmentDefinition {
    pub(crate) metadata: Meta,
    pub(crate) spec: NadSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NadSpec {
    /// The CNI configuration as JSON text.
    pub(crate) config: String,
}

impl NetworkAttachmentDefinition {
    pub fn resource_name(&self) -> Option<&str> {
        self.metadata
            .annotations
            .get("k8s.v1.cni.cncf.io/resourceName")
            .map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pod {
    pub(crate) metadata: Meta,
    pub(crate) spec: PodSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub(crate) node_name: Option<String>,
    pub(crate) containers: Vec<Container>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) image: Option<String>,
    #[serde(default)]
    pub(crate) command: Vec<String>,
    #[serde(default)]
    pub(crate) resources: Resources,
    /// Kept as written (capabilities, privileged): the netns cluster ignores it, a
    /// real cluster needs it for probes such as `ip addr add` (NET_ADMIN).
    #[serde(
        default,
        rename = "securityContext",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) security_context: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub(crate) limits: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub(crate) requests: BTreeMap<String, serde_json::Value>,
}

impl Pod {
    /// A one-container pod pinned to `node` that selects `networks` (the
    /// `k8s.v1.cni.cncf.io/networks` annotation), in namespace default.
    pub fn plain(name: &str, node: &str, networks: &str) -> Pod {
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "k8s.v1.cni.cncf.io/networks".to_string(),
            networks.to_string(),
        );
        Pod {
            metadata: Meta {
                name: name.into(),
                namespace: "default".into(),
                annotations,
                ..Default::default()
            },
            spec: PodSpec {
                node_name: Some(node.into()),
                containers: vec![Container {
                    name: "c".into(),
                    ..Default::default()
                }],
            },
        }
    }

    /// Extended resources (names with a `/`, like `macvtap.network.kubevirt.io/x`)
    /// the pod asks for, summed over containers. For extended resources Kubernetes
    /// requires requests == limits, and a limit alone implies the request.
    pub fn extended_resources(&self) -> BTreeMap<String, u64> {
        let mut total = BTreeMap::new();
        for c in &self.spec.containers {
            let mut mine: BTreeMap<&str, u64> = BTreeMap::new();
            for (k, v) in c.resources.requests.iter().chain(&c.resources.limits) {
                if k.contains('/') {
                    let n = v
                        .as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                        .unwrap_or(0);
                    mine.insert(k, n);
                }
            }
            for (k, n) in mine {
                *total.entry(k.to_string()).or_insert(0) += n;
            }
        }
        total
    }
}

/// A fixture document. Kinds the netns cluster plays rather than stores (DaemonSet)
/// or does not know are kept as `Other` so that the caller can say so.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    ConfigMap(ConfigMap),
    Nad(NetworkAttachmentDefinition),
    Pod(Pod),
    Other {
        kind: String,
        name: String,
        raw: serde_json::Value,
    },
}

impl Object {
    pub fn kind(&self) -> &str {
        match self {
            Object::ConfigMap(_) => "ConfigMap",
            Object::Nad(_) => "NetworkAttachmentDefinition",
            Object::Pod(_) => "Pod",
            Object::Other { kind, .. } => kind,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Object::ConfigMap(c) => &c.metadata.name,
            Object::Nad(n) => &n.metadata.name,
            Object::Pod(p) => &p.metadata.name,
            Object::Other { name, .. } => name,
        }
    }
}
