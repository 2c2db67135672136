//! KubeVirt `VirtualMachine` / `VirtualMachineInstance` fixtures: validation against
//! KubeVirt's OpenAPI document (a typo such as `macvtapp: {}` fails here, not on a
//! cluster), the interface/network pairs secnet acts on, and the virt-launcher pod
//! KubeVirt would create for them (networks annotation + the NADs' resources).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::objects::{Container, Meta, Pod, PodSpec, Resources};

/// Where the KubeVirt OpenAPI document is looked for: `SECNET_KUBEVIRT_SWAGGER`, then
/// `shared/schemas/kubevirt-swagger.json` next to the repository.
pub fn swagger_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SECNET_KUBEVIRT_SWAGGER") {
        return Some(PathBuf::from(p));
    }
    let harness = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        harness.join("../../shared/schemas/kubevirt-swagger.json"),
        harness.join("fixtures/schemas/kubevirt-swagger.json"),
    ]
    .into_iter()
    .find(|p| p.exists())
}

#[derive(Debug, thiserror::Error)]
pub enum KubevirtError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    SwaggerJson {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: no `definitions` object")]
    NoDefinitions { path: String },
    #[error("kind {0:?} is not a VirtualMachine(Instance)")]
    Kind(String),
    #[error("metadata.name is missing")]
    NoName,
    #[error("an interface has no name")]
    NoInterfaceName,
    #[error("interface {0} has no network of the same name")]
    NoNetwork(String),
    #[error("network {0} is neither pod nor multus")]
    NetworkSource(String),
    #[error("interface {interface} cannot be hot-plugged through KubeVirt: {why}")]
    NotHotpluggable { interface: String, why: String },
    #[error("the VM has no interface {0}")]
    NoInterface(String),
    /// `problems` are `path: problem`, one per violation.
    #[error("{kind} {name} does not match KubeVirt's {def}: {}", .problems.join("; "))]
    Schema {
        kind: String,
        name: String,
        def: &'static str,
        problems: Vec<String>,
    },
}

/// The `definitions` of an OpenAPI v2 document.
pub struct Swagger {
    defs: Map<String, Value>,
}

impl Swagger {
    pub fn load(path: &Path) -> Result<Swagger, KubevirtError> {
        let text = std::fs::read_to_string(path).map_err(|source| KubevirtError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Swagger::parse(&text, &path.display().to_string())
    }

    /// `path` names the document in errors.
    pub fn parse(text: &str, path: &str) -> Result<Swagger, KubevirtError> {
        let mut doc: Value =
            serde_json::from_str(text).map_err(|source| KubevirtError::SwaggerJson {
                path: path.to_string(),
                source,
            })?;
        match doc.get_mut("definitions").map(Value::take) {
            Some(Value::Object(defs)) => Ok(Swagger { defs }),
            _ => Err(KubevirtError::NoDefinitions {
                path: path.to_string(),
            }),
        }
    }

    /// Every violation of definition `def` in `value`, as `path: problem`. Unknown
    /// fields are errors (the API server's strict field validation).
    pub fn validate(&self, def: &str, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        match self.defs.get(def) {
            Some(schema) => self.check(schema, value, "", &mut errors),
            None => errors.push(format!("the schema has no definition {def}")),
        }
        errors
    }

    fn check(&self, schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let name = r.trim_start_matches("#/definitions/");
            match self.defs.get(name) {
                Some(s) => self.check(s, v, path, errors),
                None => errors.push(format!("{path}: unresolved $ref {r}")),
            }
            return;
        }
        let here = if path.is_empty() { "." } else { path };
        if let Some(t) = schema.get("type") {
            let types: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !types.is_empty() && !types.iter().any(|t| type_matches(t, v)) {
                errors.push(format!(
                    "{here}: expected {}, found {}",
                    types.join(" or "),
                    type_name(v)
                ));
                return;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(v)
        {
            errors.push(format!("{here}: {v} is not one of {allowed:?}"));
        }
        match v {
            Value::Object(obj) => {
                let props = schema.get("properties").and_then(Value::as_object);
                let extra = schema.get("additionalProperties");
                for req in schema
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if !obj.contains_key(req) {
                        errors.push(format!("{here}: missing required field {req:?}"));
                    }
                }
                for (k, child) in obj {
                    let child_path = format!("{path}.{k}");
                    match (props.and_then(|p| p.get(k)), extra) {
                        (Some(s), _) => self.check(s, child, &child_path, errors),
                        (None, Some(Value::Bool(true))) => {}
                        (None, Some(s @ Value::Object(_))) => {
                            self.check(s, child, &child_path, errors)
                        }
                        // An object without declared fields is free-form (RawExtension).
                        (None, _) if props.is_none() && schema_is_free_form(schema) => {}
                        (None, _) => {
                            let known: Vec<&String> =
                                props.map(|p| p.keys().collect()).unwrap_or_default();
                            errors.push(format!(
                                "{child_path}: unknown field {k:?}{}",
                                suggestion(k, &known)
                            ));
                        }
                    }
                }
            }
            Value::Array(items) => {
                if let Some(s) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(s, item, &format!("{path}[{i}]"), errors);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Empty marker objects (`bridge: {}`, `pod: {}`'s relatives) have a description and
/// `type: object` only; they take no fields. RawExtension-like ones say nothing at all.
fn schema_is_free_form(schema: &Value) -> bool {
    schema
        .get("description")
        .and_then(Value::as_str)
        .is_some_and(|d| d.contains("RawExtension"))
}

fn suggestion(k: &str, known: &[&String]) -> String {
    known
        .iter()
        .filter(|c| edit_distance(k, c) <= 2)
        .min_by_key(|c| edit_distance(k, c))
        .map(|c| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How an interface is connected to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingKind {
    /// `macvtap: {}` (core binding until KubeVirt v1.3) or `binding: {name: macvtap}`.
    Macvtap,
    Bridge,
    Masquerade,
    /// Another binding plugin or method (`passt`, `sriov`, ...): not emulated.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkSource {
    Pod,
    Multus { namespace: String, name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmInterface {
    pub(crate) name: String,
    pub(crate) binding: BindingKind,
    pub(crate) mac: Option<String>,
    pub(crate) network: NetworkSource,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VirtualMachine {
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) interfaces: Vec<VmInterface>,
    pub(crate) memory_mb: u32,
    /// The fixture as read (what a real cluster is given).
    pub(crate) raw: Value,
}

impl VirtualMachine {
    /// Reads a VirtualMachine (its template) or a VirtualMachineInstance.
    pub fn from_value(raw: &Value) -> Result<VirtualMachine, KubevirtError> {
        let kind = raw["kind"].as_str().unwrap_or_default().to_string();
        let spec = match kind.as_str() {
            "VirtualMachine" => &raw["spec"]["template"]["spec"],
            "VirtualMachineInstance" => &raw["spec"],
            other => return Err(KubevirtError::Kind(other.to_string())),
        };
        let name = raw["metadata"]["name"]
            .as_str()
            .ok_or(KubevirtError::NoName)?
            .to_string();
        let namespace = raw["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let networks: BTreeMap<&str, &Value> = spec["networks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| Some((n["name"].as_str()?, n)))
            .collect();
        let mut interfaces = Vec::new();
        for iface in spec["domain"]["devices"]["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let iname = iface["name"]
                .as_str()
                .ok_or(KubevirtError::NoInterfaceName)?;
            let binding = if iface.get("macvtap").is_some()
                || iface["binding"]["name"].as_str() == Some("macvtap")
            {
                BindingKind::Macvtap
            } else if iface.get("bridge").is_some() {
                BindingKind::Bridge
            } else if iface.get("masquerade").is_some() {
                BindingKind::Masquerade
            } else {
                let other = ["binding", "passt", "slirp", "sriov", "passtBinding"]
                    .into_iter()
                    .find(|k| iface.get(*k).is_some())
                    .unwrap_or("none");
                BindingKind::Other(other.into())
            };
            let net = networks
                .get(iname)
                .ok_or_else(|| KubevirtError::NoNetwork(iname.to_string()))?;
            let network = if net.get("pod").is_some() {
                NetworkSource::Pod
            } else if let Some(n) = net["multus"]["networkName"].as_str() {
                let (ns, nn) = n.split_once('/').unwrap_or((namespace.as_str(), n));
                NetworkSource::Multus {
                    namespace: ns.to_string(),
                    name: nn.to_string(),
                }
            } else {
                return Err(KubevirtError::NetworkSource(iname.to_string()));
            };
            interfaces.push(VmInterface {
                name: iname.to_string(),
                binding,
                mac: iface["macAddress"].as_str().map(str::to_string),
                network,
            });
        }
        let memory_mb = spec["domain"]["resources"]["requests"]["memory"]
            .as_str()
            .and_then(parse_mib)
            .unwrap_or(128);
        Ok(VirtualMachine {
            kind,
            name,
            namespace,
            interfaces,
            memory_mb,
            raw: raw.clone(),
        })
    }

    /// Schema check + parse.
    pub fn validated(swagger: &Swagger, raw: &Value) -> Result<VirtualMachine, KubevirtError> {
        let def = match raw["kind"].as_str().unwrap_or_default() {
            "VirtualMachine" => "v1.VirtualMachine",
            "VirtualMachineInstance" => "v1.VirtualMachineInstance",
            other => return Err(KubevirtError::Kind(other.to_string())),
        };
        let problems = swagger.validate(def, raw);
        if !problems.is_empty() {
            return Err(KubevirtError::Schema {
                kind: raw["kind"].as_str().unwrap_or_default().to_string(),
                name: raw["metadata"]["name"].as_str().unwrap_or("?").to_string(),
                def,
                problems,
            });
        }
        VirtualMachine::from_value(raw)
    }

    /// The virt-launcher pod: the multus networks in interface order (net1, net2, …,
    /// with a requested MAC as multus `mac`), and per multus network the NAD's
    /// resourceName as a limit of the `compute` container, as virt-controller adds it.
    /// (KubeVirt's own `devices.kubevirt.io/*` resources are left out: no device plugin
    /// serves them on the netns cluster.)
    pub fn launcher_pod(
        &self,
        pod_name: &str,
        resource_of: impl Fn(&str, &str) -> Option<String>,
    ) -> Pod {
        let mut selections = Vec::new();
        let mut limits: BTreeMap<String, Value> = BTreeMap::new();
        for (i, iface) in self.multus_interfaces().enumerate() {
            let NetworkSource::Multus { namespace, name } = &iface.network else {
                continue;
            };
            let mut sel =
                json!({"name": name, "namespace": namespace, "interface": format!("net{}", i + 1)});
            if let Some(mac) = &iface.mac {
                sel["mac"] = Value::from(mac.clone());
            }
            selections.push(sel);
            if let Some(r) = resource_of(namespace, name) {
                let n = limits.get(&r).and_then(Value::as_u64).unwrap_or(0);
                limits.insert(r, Value::from(n + 1));
            }
        }
        let mut annotations = BTreeMap::new();
        if !selections.is_empty() {
            annotations.insert(
                crate::multus::NETWORKS_ANNOTATION.to_string(),
                Value::Array(selections).to_string(),
            );
        }
        annotations.insert("kubevirt.io/domain".into(), self.name.clone());
        let mut labels = BTreeMap::new();
        labels.insert("kubevirt.io".into(), "virt-launcher".into());
        labels.insert("vm.kubevirt.io/name".into(), self.name.clone());
        Pod {
            metadata: Meta {
                name: pod_name.to_string(),
                namespace: self.namespace.clone(),
                annotations,
                labels,
                uid: String::new(),
            },
            spec: PodSpec {
                node_name: None,
                containers: vec![Container {
                    name: "compute".into(),
                    image: Some("quay.io/kubevirt/virt-launcher".into()),
                    command: vec![],
                    resources: Resources {
                        limits: limits.clone(),
                        requests: limits,
                    },
                    security_context: None,
                }],
            },
        }
    }

    /// The interfaces on multus networks, in order (they become net1, net2, …).
    pub fn multus_interfaces(&self) -> impl Iterator<Item = &VmInterface> {
        self.interfaces
            .iter()
            .filter(|i| matches!(i.network, NetworkSource::Multus { .. }))
    }

    /// The pod interface an interface of this VM is attached to (`eth0` or `netN`).
    pub fn pod_ifname(&self, iface: &str) -> Option<String> {
        let i = self.interfaces.iter().find(|i| i.name == iface)?;
        if i.network == NetworkSource::Pod {
            return Some("eth0".into());
        }
        self.multus_interfaces()
            .position(|m| m.name == iface)
            .map(|p| format!("net{}", p + 1))
    }
}

/// `128Mi` → 128, `1Gi` → 1024.
fn parse_mib(q: &str) -> Option<u32> {
    let (num, mul) = if let Some(n) = q.strip_suffix("Gi") {
        (n, 1024)
    } else if let Some(n) = q.strip_suffix("Mi") {
        (n, 1)
    } else if let Some(n) = q.strip_suffix('M') {
        (n, 1)
    } else if let Some(n) = q.strip_suffix('G') {
        (n, 1000)
    } else {
        return None;
    };
    num.parse::<u32>().ok().map(|n| n * mul)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{Object, load_file};

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
    }

    fn swagger() -> Option<Swagger> {
        let path = swagger_path();
        if !crate::prereq::require(
            "vm::kubevirt fixture validation",
            path.is_none()
                .then(|| "kubevirt-swagger.json not found (shared/schemas next to the repository or SECNET_KUBEVIRT_SWAGGER)".to_string()),
        ) {
            return None;
        }
        Some(Swagger::load(&path.unwrap()).unwrap())
    }

    fn raw(rel: &str) -> Value {
        match load_file(&fixtures().join(rel)).unwrap().remove(0) {
            Object::Other { raw, .. } => raw,
            other => panic!("{rel}: {other:?}"),
        }
    }

    #[test]
    fn seed_vm_fixtures_are_valid_kubevirt() {
        let Some(s) = swagger() else { return };
        for (rel, binding, network) in [
            ("seed/vm-macvtap.yaml", BindingKind::Macvtap, "dataplane"),
            (
                "seed/vm-macvlan-bridge.yaml",
                BindingKind::Bridge,
                "macvlan-test",
            ),
            (
                "seed/vm-ovs-vlan100.yaml",
                BindingKind::Bridge,
                "ovs-vlan-100",
            ),
        ] {
            let vm =
                VirtualMachine::validated(&s, &raw(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert_eq!(vm.interfaces.len(), 1, "{rel}");
            assert_eq!(vm.interfaces[0].binding, binding, "{rel}");
            assert_eq!(
                vm.interfaces[0].network,
                NetworkSource::Multus {
                    namespace: "default".into(),
                    name: network.into()
                },
                "{rel}"
            );
            assert_eq!(vm.memory_mb, 128);
        }
        let vmi = VirtualMachine::validated(&s, &raw("seed/vmi-masquerade.yaml")).unwrap();
        assert_eq!(vmi.kind, "VirtualMachineInstance");
        assert_eq!(vmi.interfaces[0].binding, BindingKind::Masquerade);
        assert_eq!(vmi.interfaces[0].network, NetworkSource::Pod);
        assert_eq!(vmi.pod_ifname("default").as_deref(), Some("eth0"));
    }

    #[test]
    fn a_binding_typo_is_rejected_with_a_hint() {
        let Some(s) = swagger() else { return };
        let err = VirtualMachine::validated(&s, &raw("bad/vm-macvtapp-typo.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(".spec.template.spec.domain.devices.interfaces[0].macvtapp: unknown field \"macvtapp\" (did you mean \"macvtap\"?)"),
            "{err}"
        );
    }

    #[test]
    fn types_required_fields_and_maps_are_checked() {
        let Some(s) = swagger() else { return };
        let mut vm = raw("seed/vm-macvtap.yaml");
        vm["metadata"]["labels"] = json!({"app": "x"});
        assert!(s.validate("v1.VirtualMachine", &vm).is_empty());
        vm["spec"]["template"]["spec"]["networks"][0]["multus"] = json!({"networkName": 7});
        vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][0] =
            json!({"macvtap": {}});
        let errors = s.validate("v1.VirtualMachine", &vm);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("networkName: expected string, found number")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("interfaces[0]: missing required field \"name\"")),
            "{errors:?}"
        );
        vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][0] =
            json!({"name": "default", "bridge": {"x": 1}});
        let errors = s.validate("v1.VirtualMachine", &vm);
        assert!(
            errors.iter().any(|e| e.contains("bridge.x: unknown field")),
            "{errors:?}"
        );
    }

    #[test]
    fn launcher_pod_carries_networks_and_resources() {
        let vm = VirtualMachine::from_value(&json!({
            "kind": "VirtualMachine",
            "metadata": {"name": "vm1"},
            "spec": {"template": {"spec": {
                "domain": {"devices": {"interfaces": [
                    {"name": "default", "masquerade": {}},
                    {"name": "a", "macvtap": {}, "macAddress": "02:00:00:00:00:0a"},
                    {"name": "b", "binding": {"name": "macvtap"}}
                ]}},
                "networks": [
                    {"name": "default", "pod": {}},
                    {"name": "a", "multus": {"networkName": "dataplane"}},
                    {"name": "b", "multus": {"networkName": "other/dataplane"}}
                ]
            }}}
        }))
        .unwrap();
        assert_eq!(vm.interfaces[2].binding, BindingKind::Macvtap);
        let pod = vm.launcher_pod("virt-launcher-vm1-abcde", |_, n| {
            (n == "dataplane").then(|| "macvtap.network.kubevirt.io/dataplane".to_string())
        });
        let nets: Value =
            serde_json::from_str(&pod.metadata.annotations[crate::multus::NETWORKS_ANNOTATION])
                .unwrap();
        assert_eq!(
            nets,
            json!([
                {"name": "dataplane", "namespace": "default", "interface": "net1", "mac": "02:00:00:00:00:0a"},
                {"name": "dataplane", "namespace": "other", "interface": "net2"}
            ])
        );
        assert_eq!(
            pod.extended_resources()
                .get("macvtap.network.kubevirt.io/dataplane"),
            Some(&2)
        );
        assert_eq!(vm.pod_ifname("b").as_deref(), Some("net2"));
        assert_eq!(vm.pod_ifname("default").as_deref(), Some("eth0"));
    }

    #[test]
    fn memory_quantities() {
        assert_eq!(parse_mib("128Mi"), Some(128));
        assert_eq!(parse_mib("1Gi"), Some(1024));
        assert_eq!(parse_mib("lots"), None);
    }
}
