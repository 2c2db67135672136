//! From selections and NADs to delegate invocations, as multus builds them.
//!
//! Per network: the NAD's `spec.config` is normalised to a plugin chain; each
//! plugin config gets the list's `name` and `cniVersion` (libcni does this when it
//! runs a chain), the device ID of the NAD's resource as top-level `deviceID` and
//! `pciBusID` (multus injects both, into every plugin of a conflist), the
//! selection's `cni-args` merged into `args.cni`, and a `runtimeConfig` holding the
//! capability arguments the plugin declares in `capabilities` (libcni passes a
//! capability argument only to plugins that declare it): `portMappings`,
//! `bandwidth`, `ips`, `mac`, `infinibandGUID`, `deviceID` and `CNIDeviceInfoFile`.
//! `portMappings` and `bandwidth` come from the selection, else from the pod
//! (what the runtime handed multus, [`Runtime`]). `CNI_ARGS` carries the pod
//! identity plus `MAC=`/`IP=`.
//!
//! Checks multus makes before any plugin runs for the pod fail [`plan`] too: an
//! unknown network, more than one IPv4 or IPv6 `default-route` gateway over all
//! networks ("no ECMP"), an interface name already in the sandbox or invalid for
//! libcni.
//!
//! Deliberate differences, each for a clearer error:
//! - a `spec.config` without `cniVersion` is refused: multus hands libcni `""`,
//!   which plugins read as 0.1.0 and answer with pre-0.3.0 results; the likely
//!   cause is a forgotten field;
//! - a network whose NAD names a device-plugin resource the pod has no (more)
//!   devices of is refused: multus runs the delegate without `deviceID`, and
//!   device-plugin CNIs (macvtap, SR-IOV) then fail with their own message (a
//!   plugin that ignores `deviceID` would run under multus);
//! - an empty `spec.config` is refused: multus then reads a file named after the
//!   NAD from its conf dir, which secnet does not emulate.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::MultusError;
use super::selection::{Bandwidth, NetworkSelection, PortMapping, check_ifname};

/// A NetworkAttachmentDefinition as multus reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nad {
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// `spec.config`: JSON text of one plugin config or a conflist.
    pub(crate) config: String,
    /// The `k8s.v1.cni.cncf.io/resourceName` annotation.
    pub(crate) resource_name: Option<String>,
}

/// The pod identity multus passes to delegates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
    /// `K8S_POD_INFRA_CONTAINER_ID`, also the `CNI_CONTAINERID` multus runs
    /// delegates with.
    pub(crate) sandbox_id: String,
}

/// What multus gets from the container runtime for the pod besides the
/// annotation. The default is the thick plugin (no `CNI_ARGS` of its own) for a
/// pod without host ports or bandwidth annotations, whose sandbox holds `lo` and
/// the cluster network's `eth0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// The thin plugin's own `CNI_ARGS` (from the runtime), merged into each
    /// delegate's: empty values are filled in, other keys appended (even when
    /// already present, as multus does).
    pub(crate) cni_args: Option<String>,
    /// The pod's `runtimeConfig.portMappings` (its containers' host ports).
    pub(crate) port_mappings: Vec<PortMapping>,
    /// The pod's `runtimeConfig.bandwidth` (its bandwidth annotations).
    pub(crate) bandwidth: Option<Bandwidth>,
    /// Interfaces already in the sandbox: a network may not take their names.
    pub(crate) sandbox_ifnames: Vec<String>,
}

impl Default for Runtime {
    fn default() -> Runtime {
        Runtime {
            cni_args: None,
            port_mappings: Vec::new(),
            bandwidth: None,
            sandbox_ifnames: vec!["lo".into(), "eth0".into()],
        }
    }
}

/// The pod annotations kubelet turns into the pod's bandwidth request.
pub const INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";

impl Runtime {
    /// What a container runtime hands multus for a pod with these annotations:
    /// its bandwidth annotations as `runtimeConfig.bandwidth` in bits per second,
    /// the burst at its maximum (as containerd's CRI plugin sets it). An
    /// annotation that is not a quantity is left out, as kubelet rejects it.
    pub fn for_pod(annotations: &std::collections::BTreeMap<String, String>) -> Runtime {
        let rate = |key: &str| annotations.get(key).and_then(|q| parse_quantity(q));
        let (ingress, egress) = (rate(INGRESS_BANDWIDTH), rate(EGRESS_BANDWIDTH));
        let bandwidth = (ingress.is_some() || egress.is_some()).then(|| Bandwidth {
            ingress_rate: ingress.unwrap_or(0),
            ingress_burst: ingress.map_or(0, |_| i64::from(u32::MAX)),
            egress_rate: egress.unwrap_or(0),
            egress_burst: egress.map_or(0, |_| i64::from(u32::MAX)),
        });
        Runtime {
            bandwidth,
            ..Runtime::default()
        }
    }
}

/// A Kubernetes quantity such as `10M`, `1Gi` or `500k`, as a whole number.
fn parse_quantity(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let n: i64 = digits.parse().ok()?;
    let factor: i64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// One delegate invocation: run `plugins` in order for ADD (each with the
/// previous plugin's result as `prevResult`), in reverse for DEL.
#[derive(Debug, Clone, PartialEq)]
pub struct Delegate {
    /// `ns/name` of the NAD.
    pub(crate) network: String,
    /// `CNI_IFNAME`.
    pub(crate) ifname: String,
    /// One stdin config per plugin of the chain, everything but `prevResult`.
    pub(crate) plugins: Vec<Value>,
    pub(crate) cni_version: String,
    /// `CNI_ARGS`.
    pub(crate) cni_args: String,
    /// `CNI_ARGS` for its DEL: multus appends `MAC=` and `IP=` in DelegateAdd only.
    pub(crate) del_cni_args: String,
    /// The device ID handed to the plugins: from the NAD's resource, else the
    /// selection's `deviceID`.
    pub(crate) device_id: Option<String>,
    /// The device-plugin resource the device came from, if any.
    pub(crate) resource_name: Option<String>,
    /// The capability arguments multus offers this delegate (each plugin gets
    /// those it declares as `runtimeConfig`).
    pub(crate) capability_args: Map<String, Value>,
    pub(crate) selection: NetworkSelection,
}

/// The pod's allocated device IDs per resource name; each network with a
/// `resourceName` takes the next unused one in string order (multus sorts a
/// resource's device IDs since v4.3.0 so that every reader agrees).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIds {
    unused: BTreeMap<String, Vec<String>>,
    allocated: BTreeMap<String, usize>,
}

impl DeviceIds {
    pub fn new() -> DeviceIds {
        DeviceIds::default()
    }

    /// Adds `ids` to the pod's devices of `resource`.
    pub fn insert<I, S>(&mut self, resource: &str, ids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let list = self.unused.entry(resource.to_string()).or_default();
        let before = list.len();
        list.extend(ids.into_iter().map(Into::into));
        list.sort();
        *self.allocated.entry(resource.to_string()).or_default() += list.len() - before;
    }

    /// Takes the next unused device of `resource`.
    pub fn take(&mut self, resource: &str) -> Option<String> {
        let list = self.unused.get_mut(resource)?;
        (!list.is_empty()).then(|| list.remove(0))
    }

    /// How many devices of `resource` the pod was allocated in total.
    pub fn allocated(&self, resource: &str) -> usize {
        self.allocated.get(resource).copied().unwrap_or(0)
    }

    /// The devices of `resource` no network has taken yet.
    pub fn unused(&self, resource: &str) -> Vec<String> {
        self.unused.get(resource).cloned().unwrap_or_default()
    }
}

impl<S: Into<String>, I: IntoIterator<Item = S>> FromIterator<(String, I)> for DeviceIds {
    fn from_iter<T: IntoIterator<Item = (String, I)>>(iter: T) -> DeviceIds {
        let mut ids = DeviceIds::new();
        for (resource, list) in iter {
            ids.insert(&resource, list);
        }
        ids
    }
}

/// [`plan_with`] for the default [`Runtime`].
pub fn plan(
    pod: &PodInfo,
    selections: &[NetworkSelection],
    lookup: impl Fn(&str, &str) -> Option<Nad>,
    devices: &mut DeviceIds,
) -> Result<Vec<Delegate>, MultusError> {
    plan_with(pod, &Runtime::default(), selections, lookup, devices)
}

/// Builds the delegates for `selections` in order. `lookup(namespace, name)`
/// returns the NAD. Interfaces default to `net<N>`, N the network's 1-based
/// position in the selection (as multus numbers its delegates, so `a@eth1, b`
/// gives `b` the name `net2`). On error, `devices` may be partly consumed: plan
/// again from a fresh [`DeviceIds`].
pub fn plan_with(
    pod: &PodInfo,
    runtime: &Runtime,
    selections: &[NetworkSelection],
    lookup: impl Fn(&str, &str) -> Option<Nad>,
    devices: &mut DeviceIds,
) -> Result<Vec<Delegate>, MultusError> {
    let pod_ref = format!("{}/{}", pod.namespace, pod.name);
    let mut out: Vec<Delegate> = Vec::new();
    let mut taken: HashMap<String, usize> = HashMap::new();
    // Multus loads every delegate (NAD lookup, device) first ...
    for (i, sel) in selections.iter().enumerate() {
        let network = sel.network();
        if sel.name.is_empty() {
            return Err(MultusError::Selection {
                pod: Some(pod_ref),
                entry: Some(i + 1),
                text: String::new(),
                problem:
                    "selects no network name (a stray comma, or a JSON entry without \"name\"?)"
                        .into(),
                fix: "name a NetworkAttachmentDefinition in every entry".into(),
            });
        }
        let nad = lookup(&sel.namespace, &sel.name).ok_or_else(|| MultusError::NadNotFound {
            pod: pod_ref.clone(),
            network: network.clone(),
        })?;
        let ifname = sel
            .interface
            .clone()
            .unwrap_or_else(|| format!("net{}", i + 1));

        let (cni_version, mut plugins) = normalize_config(&nad)?;

        let resource = nad.resource_name.clone().filter(|r| !r.is_empty());
        let resource_device = match &resource {
            Some(r) => {
                let needed = {
                    let n = taken.entry(r.clone()).or_default();
                    *n += 1;
                    *n
                };
                Some(devices.take(r).ok_or_else(|| MultusError::NoDevice {
                    pod: pod_ref.clone(),
                    network: network.clone(),
                    resource: r.clone(),
                    allocated: devices.allocated(r),
                    needed,
                })?)
            }
            None => None,
        };
        // The resource's device wins over a `deviceID` in the selection; the
        // latter only reaches runtimeConfig (multus: "Both RuntimeConfig and
        // ResourceMap provide deviceID. Ignoring RuntimeConfig").
        let device_id = resource_device.clone().or_else(|| sel.device_id.clone());
        let capability_args = capability_args(
            sel,
            runtime,
            device_id.as_deref(),
            &cni_device_info_file(&network, &pod.sandbox_id, &ifname),
        );

        for plugin in &mut plugins {
            let obj = plugin
                .as_object_mut()
                .expect("normalize_config yields objects");
            if let Some(dev) = &resource_device {
                obj.insert("deviceID".into(), json!(dev));
                obj.insert("pciBusID".into(), json!(dev));
            }
            if let Some(args) = &sel.cni_args {
                merge_cni_args(obj, args);
            }
            inject_runtime_config(obj, &capability_args);
        }

        out.push(Delegate {
            network,
            ifname,
            plugins,
            cni_version,
            cni_args: cni_args(pod, runtime, sel),
            del_cni_args: cni_args(
                pod,
                runtime,
                &NetworkSelection {
                    mac: None,
                    ips: None,
                    ..sel.clone()
                },
            ),
            device_id,
            resource_name: resource,
            capability_args,
            selection: sel.clone(),
        });
    }
    // ... then checks the requested default routes over all of them ...
    check_gateways(&pod_ref, selections)?;
    // ... and, per delegate in order, that its interface is free and valid.
    let mut present: HashMap<String, Option<String>> = runtime
        .sandbox_ifnames
        .iter()
        .map(|n| (n.clone(), None))
        .collect();
    for (i, d) in out.iter().enumerate() {
        if let Some(owner) = present.get(&d.ifname) {
            return Err(match owner {
                Some(first) => MultusError::DuplicateInterface {
                    pod: pod_ref,
                    ifname: d.ifname.clone(),
                    first: first.clone(),
                    second: d.network.clone(),
                },
                None => MultusError::InterfaceExists {
                    pod: pod_ref,
                    ifname: d.ifname.clone(),
                    network: d.network.clone(),
                },
            });
        }
        if let Err(problem) = check_ifname(&d.ifname) {
            return Err(MultusError::Selection {
                pod: Some(pod_ref),
                entry: Some(i + 1),
                text: String::new(),
                problem: format!("network {}: {problem}", d.network),
                fix: "use at most 15 characters, no '/', ':' or whitespace".into(),
            });
        }
        present.insert(d.ifname.clone(), Some(d.network.clone()));
    }
    Ok(out)
}

/// Multus refuses more than one IPv4 or more than one IPv6 `default-route`
/// gateway over all networks of a pod. Like Go's `To4`, an IPv4-mapped IPv6
/// address counts as IPv4 and an empty entry (a nil IP) as IPv6.
fn check_gateways(pod_ref: &str, selections: &[NetworkSelection]) -> Result<(), MultusError> {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for sel in selections {
        for gw in sel.default_route.iter().flatten() {
            let is_v4 = match gw.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => true,
                Ok(IpAddr::V6(a)) => a.to_ipv4_mapped().is_some(),
                Err(_) => false,
            };
            if is_v4 { &mut v4 } else { &mut v6 }.push(format!("{} ({})", gw, sel.network()));
        }
    }
    for (family, list) in [("IPv4", v4), ("IPv6", v6)] {
        if list.len() > 1 {
            return Err(MultusError::Ecmp {
                pod: pod_ref.to_string(),
                family: family.into(),
                gateways: list.join(", "),
            });
        }
    }
    Ok(())
}

/// `CNI_ARGS` for one delegate, in multus' order: `IgnoreUnknown=true`, the pod
/// identity, the thin plugin's own `CNI_ARGS` merged in, then `MAC=` and `IP=`.
pub fn cni_args(pod: &PodInfo, runtime: &Runtime, sel: &NetworkSelection) -> String {
    let mut args: Vec<(String, String)> = [
        ("IgnoreUnknown", "true"),
        ("K8S_POD_NAMESPACE", pod.namespace.as_str()),
        ("K8S_POD_NAME", pod.name.as_str()),
        ("K8S_POD_INFRA_CONTAINER_ID", pod.sandbox_id.as_str()),
        ("K8S_POD_UID", pod.uid.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for item in runtime.cni_args.as_deref().unwrap_or("").split(';') {
        // Items without '=' are skipped; the value may contain '='.
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        match args
            .iter_mut()
            .find(|(k, v)| k == key && v.is_empty() && !value.is_empty())
        {
            Some(slot) => slot.1 = value.to_string(),
            None => args.push((key.to_string(), value.to_string())),
        }
    }
    if let Some(mac) = &sel.mac {
        args.push(("MAC".into(), mac.clone()));
    }
    // Even `"ips": []` gives `IP=`, as in multus.
    if let Some(ips) = &sel.ips {
        args.push(("IP".into(), ips.join(",")));
    }
    args.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Where multus asks a plugin declaring `CNIDeviceInfoFile` to write its
/// device-info: named after the delegate, container and interface, `/` → `-`.
pub fn cni_device_info_file(network: &str, container_id: &str, ifname: &str) -> String {
    format!(
        "/var/run/k8s.cni.cncf.io/devinfo/cni/{}",
        format!("{network}-{container_id}_{ifname}").replace('/', "-")
    )
}

/// The capability arguments multus offers a delegate: the pod's
/// `portMappings`/`bandwidth` unless the selection gives its own (an empty
/// `portMappings` list clears them), the selection's `ips`, `mac` and
/// `infiniband-guid`, and, with a device ID, `deviceID` and `CNIDeviceInfoFile`.
/// Empty values are left out.
pub fn capability_args(
    sel: &NetworkSelection,
    runtime: &Runtime,
    device_id: Option<&str>,
    device_info_file: &str,
) -> Map<String, Value> {
    let mut args = Map::new();
    let port_mappings = sel.port_mappings.as_ref().unwrap_or(&runtime.port_mappings);
    if !port_mappings.is_empty() {
        args.insert("portMappings".into(), json!(port_mappings));
    }
    if let Some(bw) = sel.bandwidth.as_ref().or(runtime.bandwidth.as_ref()) {
        args.insert("bandwidth".into(), json!(bw));
    }
    if let Some(ips) = sel.ips.as_ref().filter(|ips| !ips.is_empty()) {
        args.insert("ips".into(), json!(ips));
    }
    if let Some(mac) = &sel.mac {
        args.insert("mac".into(), json!(mac));
    }
    if let Some(guid) = &sel.infiniband_guid {
        args.insert("infinibandGUID".into(), json!(guid));
    }
    if let Some(dev) = device_id.filter(|d| !d.is_empty()) {
        args.insert("deviceID".into(), json!(dev));
        args.insert("CNIDeviceInfoFile".into(), json!(device_info_file));
    }
    args
}

/// The NAD's `spec.config` as `(cniVersion, plugin configs)`, each plugin config
/// carrying the list's `name` and `cniVersion` (overriding its own, as libcni
/// does). A missing `name` defaults to the NAD's name (multus fills it in from
/// the NAD).
///
/// A missing `cniVersion` is an error here. Multus does not default it: libcni
/// passes `""`, which plugins read as 0.1.0 and answer with pre-0.3.0 results that
/// secnet does not model, so the likely cause is a forgotten field.
pub fn normalize_config(nad: &Nad) -> Result<(String, Vec<Value>), MultusError> {
    let nad_ref = format!("{}/{}", nad.namespace, nad.name);
    let bad = |problem: String, fix: &str| MultusError::NadConfig {
        nad: nad_ref.clone(),
        problem,
        fix: fix.to_string(),
    };
    if nad.config.trim().is_empty() {
        return Err(bad(
            "is empty (multus would then read a config file named after the NAD from its conf dir, which secnet does not emulate)".into(),
            "put the CNI config JSON in spec.config",
        ));
    }
    let value: Value = serde_json::from_str(&nad.config)
        .map_err(|e| bad(format!("is not valid JSON ({e})"), "fix the JSON"))?;
    let Value::Object(mut top) = value else {
        return Err(bad(
            "is not a JSON object".into(),
            "write a CNI config object {\"cniVersion\": ..., \"type\": ...} or a conflist {\"cniVersion\": ..., \"plugins\": [...]}",
        ));
    };

    let name = match top.get("name") {
        None | Some(Value::Null) => nad.name.clone(),
        Some(Value::String(s)) if s.is_empty() => nad.name.clone(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(bad(
                format!("\"name\" must be a string, not {other}"),
                "write \"name\": \"<network>\" or leave it out",
            ));
        }
    };
    // libcni refuses to run a network whose name has other characters.
    let valid_name = name
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_alphanumeric() || (i > 0 && matches!(c, '_' | '.' | '-')));
    if !valid_name {
        return Err(bad(
            format!("\"name\" \"{name}\" is not a valid CNI network name"),
            "start with a letter or digit and use only letters, digits, '_', '.' and '-'",
        ));
    }
    let cni_version = match top.get("cniVersion") {
        Some(Value::String(v)) if !v.is_empty() => v.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(bad(
                "has no \"cniVersion\"".into(),
                "add \"cniVersion\": \"1.0.0\" (or the version the plugin supports)",
            ));
        }
        Some(other) => {
            return Err(bad(
                format!("\"cniVersion\" must be a string, not {other}"),
                "write \"cniVersion\": \"1.0.0\"",
            ));
        }
    };

    let has_type = top
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    let mut plugins = if has_type {
        vec![Value::Object(top)]
    } else {
        match top.remove("plugins") {
            Some(Value::Array(list)) if !list.is_empty() => list,
            Some(Value::Array(_)) => {
                return Err(bad(
                    "\"plugins\" is empty".into(),
                    "list at least one plugin config in \"plugins\"",
                ));
            }
            Some(_) => {
                return Err(bad(
                    "\"plugins\" must be a list of plugin configs".into(),
                    "write \"plugins\": [{\"type\": ...}]",
                ));
            }
            None => {
                return Err(bad(
                    "has neither \"type\" (a plugin config) nor \"plugins\" (a conflist)".into(),
                    "add \"type\": \"<plugin binary>\", or wrap plugin configs in \"plugins\": [...]",
                ));
            }
        }
    };
    for (i, plugin) in plugins.iter_mut().enumerate() {
        let Value::Object(obj) = plugin else {
            return Err(bad(
                format!("plugin {} of \"plugins\" is not a JSON object", i + 1),
                "write each plugin as {\"type\": ...}",
            ));
        };
        if obj
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(bad(
                format!("plugin {} of \"plugins\" has no \"type\"", i + 1),
                "add \"type\": \"<plugin binary>\"",
            ));
        }
        // libcni decodes `capabilities` as a map of booleans.
        match obj.get("capabilities") {
            None | Some(Value::Null) => {}
            Some(Value::Object(caps)) if caps.values().all(|v| v.is_boolean() || v.is_null()) => {}
            Some(other) => {
                return Err(bad(
                    format!(
                        "plugin {} has \"capabilities\" {other}, not an object of booleans",
                        i + 1
                    ),
                    "write \"capabilities\": {\"mac\": true}",
                ));
            }
        }
        obj.insert("name".into(), json!(name));
        obj.insert("cniVersion".into(), json!(cni_version));
    }
    Ok((cni_version, plugins))
}

/// Merges `args` into `config.args.cni` (the selection's keys win).
fn merge_cni_args(config: &mut Map<String, Value>, args: &Map<String, Value>) {
    let outer = config
        .entry("args")
        .or_insert_with(|| Value::Object(Map::new()));
    if !outer.is_object() {
        *outer = Value::Object(Map::new());
    }
    let cni = outer
        .as_object_mut()
        .expect("just made an object")
        .entry("cni")
        .or_insert_with(|| Value::Object(Map::new()));
    if !cni.is_object() {
        *cni = Value::Object(Map::new());
    }
    let cni = cni.as_object_mut().expect("just made an object");
    for (k, v) in args {
        cni.insert(k.clone(), v.clone());
    }
}

/// Whether the plugin config declares `capabilities.<name>: true`.
pub fn has_capability(config: &Map<String, Value>, name: &str) -> bool {
    config
        .get("capabilities")
        .and_then(|c| c.get(name))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Sets `runtimeConfig` to the capability arguments the plugin declares. Like
/// libcni, an injected `runtimeConfig` replaces one written in the config;
/// nothing is touched when no declared capability has an argument.
fn inject_runtime_config(config: &mut Map<String, Value>, args: &Map<String, Value>) {
    let rc: Map<String, Value> = args
        .iter()
        .filter(|(name, _)| has_capability(config, name))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !rc.is_empty() {
        config.insert("runtimeConfig".into(), Value::Object(rc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multus::selection::parse_networks;

    fn pod() -> PodInfo {
        PodInfo {
            namespace: "default".into(),
            name: "p".into(),
            uid: "uid-1".into(),
            sandbox_id: "sb-1".into(),
        }
    }

    fn nad(name: &str, config: Value, resource: Option<&str>) -> Nad {
        Nad {
            namespace: "default".into(),
            name: name.into(),
            config: config.to_string(),
            resource_name: resource.map(str::to_string),
        }
    }

    fn nads(list: Vec<Nad>) -> impl Fn(&str, &str) -> Option<Nad> {
        move |ns, name| {
            list.iter()
                .find(|n| n.namespace == ns && n.name == name)
                .cloned()
        }
    }

    const MACVTAP: &str = "macvtap.network.kubevirt.io/dataplane";

    fn macvtap_nad(name: &str) -> Nad {
        nad(
            name,
            json!({"cniVersion": "0.3.1", "name": name, "type": "macvtap", "mtu": 1500}),
            Some(MACVTAP),
        )
    }

    fn plan_one(annotation: &str, n: Nad, devices: &mut DeviceIds) -> Delegate {
        let sels = parse_networks(annotation, "default").unwrap();
        let mut d = plan(&pod(), &sels, nads(vec![n]), devices).unwrap();
        assert_eq!(d.len(), 1);
        d.remove(0)
    }

    #[test]
    fn seed_plain_name() {
        let mut devs: DeviceIds = [(MACVTAP.to_string(), vec!["dataplane"])]
            .into_iter()
            .collect();
        let d = plan_one("dataplane", macvtap_nad("dataplane"), &mut devs);
        assert_eq!(d.network, "default/dataplane");
        assert_eq!(d.ifname, "net1");
        assert_eq!(d.cni_version, "0.3.1");
        assert_eq!(d.device_id.as_deref(), Some("dataplane"));
        assert_eq!(d.resource_name.as_deref(), Some(MACVTAP));
        assert_eq!(
            d.plugins,
            vec![json!({
                "cniVersion": "0.3.1", "name": "dataplane", "type": "macvtap", "mtu": 1500,
                "deviceID": "dataplane", "pciBusID": "dataplane"
            })]
        );
        assert_eq!(
            d.cni_args,
            "IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=sb-1;K8S_POD_UID=uid-1"
        );
        assert!(devs.unused(MACVTAP).is_empty());
    }

    #[test]
    fn seed_requested_mac() {
        let mut devs: DeviceIds = [(MACVTAP.to_string(), vec!["dataplane"])]
            .into_iter()
            .collect();
        let d = plan_one(
            r#"[{"name":"dataplane","mac":"02:23:45:67:89:01"}]"#,
            macvtap_nad("dataplane"),
            &mut devs,
        );
        assert!(
            d.cni_args
                .ends_with(";K8S_POD_UID=uid-1;MAC=02:23:45:67:89:01")
        );
        // macvtap declares no capabilities: the MAC travels in CNI_ARGS only.
        assert!(d.plugins[0].get("runtimeConfig").is_none());
        assert_eq!(d.selection.mac.as_deref(), Some("02:23:45:67:89:01"));
    }

    #[test]
    fn interface_names() {
        let plain = |name: &str| {
            nad(
                name,
                json!({"cniVersion": "1.0.0", "type": "macvlan"}),
                None,
            )
        };
        let cases: &[(&str, &[&str])] = &[
            ("a", &["net1"]),
            ("a,b,c", &["net1", "net2", "net3"]),
            ("a@eth1,b", &["eth1", "net2"]),
            ("a,b@eth9,c", &["net1", "eth9", "net3"]),
            (
                r#"[{"name":"a","interface":"x"},{"name":"b"}]"#,
                &["x", "net2"],
            ),
        ];
        for (annotation, want) in cases {
            let sels = parse_networks(annotation, "default").unwrap();
            let lookup = nads(vec![plain("a"), plain("b"), plain("c")]);
            let got: Vec<String> = plan(&pod(), &sels, lookup, &mut DeviceIds::new())
                .unwrap()
                .into_iter()
                .map(|d| d.ifname)
                .collect();
            assert_eq!(got, *want, "{annotation}");
        }
        let sels = parse_networks("a@net2,b", "default").unwrap();
        let e = plan(
            &pod(),
            &sels,
            nads(vec![plain("a"), plain("b")]),
            &mut DeviceIds::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("interface net2 is used by both network default/a and network default/b"),
            "{e}"
        );
    }

    #[test]
    fn nad_not_found() {
        let sels = parse_networks("other/missing", "default").unwrap();
        let e = plan(
            &pod(),
            &sels,
            |_: &str, _: &str| None,
            &mut DeviceIds::new(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "pod default/p: k8s.v1.cni.cncf.io/networks selects network other/missing, but NetworkAttachmentDefinition other/missing does not exist; create it or fix the name in the annotation"
        );
    }

    #[test]
    fn conflist_normalized() {
        let n = nad(
            "chain",
            json!({"cniVersion": "1.0.0", "name": "chain", "plugins": [
                {"type": "macvlan", "master": "eth0", "name": "ignored", "cniVersion": "0.3.1",
                 "capabilities": {"mac": true}},
                {"type": "tuning", "args": {"cni": {"keep": 1, "k": "old"}}}
            ]}),
            Some("r/x"),
        );
        let mut devs: DeviceIds = [("r/x".to_string(), vec!["d0"])].into_iter().collect();
        let d = plan_one(
            r#"[{"name":"chain","mac":"02:00:00:00:00:07","cni-args":{"k":"new"}}]"#,
            n,
            &mut devs,
        );
        assert_eq!(d.cni_version, "1.0.0");
        assert_eq!(
            d.plugins,
            vec![
                json!({"type": "macvlan", "master": "eth0", "name": "chain", "cniVersion": "1.0.0",
                       "capabilities": {"mac": true}, "deviceID": "d0", "pciBusID": "d0",
                       "args": {"cni": {"k": "new"}},
                       "runtimeConfig": {"mac": "02:00:00:00:00:07"}}),
                json!({"type": "tuning", "name": "chain", "cniVersion": "1.0.0",
                       "deviceID": "d0", "pciBusID": "d0",
                       "args": {"cni": {"keep": 1, "k": "new"}}}),
            ]
        );
    }

    #[test]
    fn config_normalization() {
        // name defaults to the NAD name, in both shapes
        let (_, p) = normalize_config(&nad(
            "n1",
            json!({"cniVersion": "1.0.0", "type": "x"}),
            None,
        ))
        .unwrap();
        assert_eq!(p[0]["name"], "n1");
        let (_, p) = normalize_config(&nad(
            "n2",
            json!({"cniVersion": "0.4.0", "plugins": [{"type": "x"}, {"type": "y"}]}),
            None,
        ))
        .unwrap();
        assert_eq!(p.len(), 2);
        assert!(
            p.iter()
                .all(|c| c["name"] == "n2" && c["cniVersion"] == "0.4.0")
        );

        let cases: &[(&str, &str)] = &[
            ("", "is empty"),
            ("{", "is not valid JSON"),
            ("[1]", "is not a JSON object"),
            (r#"{"type": "x"}"#, "has no \"cniVersion\""),
            (
                r#"{"cniVersion": 1, "type": "x"}"#,
                "\"cniVersion\" must be a string",
            ),
            (r#"{"cniVersion": "1.0.0"}"#, "has neither \"type\""),
            (
                r#"{"cniVersion": "1.0.0", "plugins": []}"#,
                "\"plugins\" is empty",
            ),
            (
                r#"{"cniVersion": "1.0.0", "plugins": {}}"#,
                "must be a list",
            ),
            (
                r#"{"cniVersion": "1.0.0", "plugins": [{"type":"a"}, {}]}"#,
                "plugin 2 of \"plugins\" has no \"type\"",
            ),
            (
                r#"{"cniVersion": "1.0.0", "plugins": [3]}"#,
                "plugin 1 of \"plugins\" is not a JSON object",
            ),
        ];
        for (config, want) in cases {
            let n = Nad {
                namespace: "ns".into(),
                name: "bad".into(),
                config: config.to_string(),
                resource_name: None,
            };
            let e = normalize_config(&n).unwrap_err().to_string();
            assert!(
                e.starts_with("NetworkAttachmentDefinition ns/bad: spec.config: "),
                "{e}"
            );
            assert!(e.contains(want), "{config}: {e}");
        }
    }

    #[test]
    fn capabilities_gate_runtime_config() {
        let annotation = r#"[{"name":"n","mac":"02:00:00:00:00:09","ips":["10.1.1.5/24","fd00::5/64"],"deviceID":"sel-dev"}]"#;
        let cases: &[(Value, Option<Value>)] = &[
            (json!({}), None),
            (
                json!({"mac": true}),
                Some(json!({"mac": "02:00:00:00:00:09"})),
            ),
            (
                json!({"ips": true}),
                Some(json!({"ips": ["10.1.1.5/24", "fd00::5/64"]})),
            ),
            (
                json!({"deviceID": true}),
                Some(json!({"deviceID": "sel-dev"})),
            ),
            (
                json!({"mac": false, "ips": true}),
                Some(json!({"ips": ["10.1.1.5/24", "fd00::5/64"]})),
            ),
            (
                json!({"mac": true, "ips": true, "deviceID": true, "portMappings": true}),
                Some(
                    json!({"mac": "02:00:00:00:00:09", "ips": ["10.1.1.5/24", "fd00::5/64"], "deviceID": "sel-dev"}),
                ),
            ),
        ];
        for (caps, want) in cases {
            let n = nad(
                "n",
                json!({"cniVersion": "1.0.0", "type": "x", "capabilities": caps}),
                None,
            );
            let d = plan_one(annotation, n, &mut DeviceIds::new());
            assert_eq!(d.plugins[0].get("runtimeConfig"), want.as_ref(), "{caps}");
            // MAC and IPs go to CNI_ARGS whatever the capabilities.
            assert!(
                d.cni_args
                    .ends_with(";MAC=02:00:00:00:00:09;IP=10.1.1.5/24,fd00::5/64"),
                "{}",
                d.cni_args
            );
            // A selection deviceID without a resource is not injected top-level.
            assert!(d.plugins[0].get("deviceID").is_none());
            assert_eq!(d.device_id.as_deref(), Some("sel-dev"));
        }
    }

    #[test]
    fn resource_device_beats_selection_device() {
        let n = nad(
            "n",
            json!({"cniVersion": "1.0.0", "type": "x", "capabilities": {"deviceID": true}}),
            Some("r/x"),
        );
        let mut devs: DeviceIds = [("r/x".to_string(), vec!["from-kubelet"])]
            .into_iter()
            .collect();
        let d = plan_one(
            r#"[{"name":"n","deviceID":"from-annotation"}]"#,
            n,
            &mut devs,
        );
        assert_eq!(d.device_id.as_deref(), Some("from-kubelet"));
        assert_eq!(d.plugins[0]["deviceID"], "from-kubelet");
        assert_eq!(
            d.plugins[0]["runtimeConfig"],
            json!({"deviceID": "from-kubelet"})
        );
    }

    #[test]
    fn device_ids_across_networks_of_one_resource() {
        let other = nad(
            "plain",
            json!({"cniVersion": "1.0.0", "type": "macvlan"}),
            None,
        );
        let lookup = nads(vec![macvtap_nad("a"), macvtap_nad("b"), other]);
        let sels = parse_networks("a,plain,b,a@net9", "default").unwrap();

        let mut devs = DeviceIds::new();
        devs.insert(MACVTAP, ["dev-1", "dev-2", "dev-3"]);
        devs.insert("other/res", ["z"]);
        let d = plan(&pod(), &sels, &lookup, &mut devs).unwrap();
        let got: Vec<_> = d
            .iter()
            .map(|d| (d.ifname.as_str(), d.device_id.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("net1", Some("dev-1")),
                ("net2", None),
                ("net3", Some("dev-2")),
                ("net9", Some("dev-3"))
            ]
        );
        assert!(d[1].plugins[0].get("deviceID").is_none());
        assert_eq!(d[2].plugins[0]["pciBusID"], "dev-2");
        assert_eq!(devs.unused("other/res"), vec!["z"]);

        // One device short.
        let mut devs = DeviceIds::new();
        devs.insert(MACVTAP, ["dev-1", "dev-2"]);
        let e = plan(&pod(), &sels, &lookup, &mut devs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pod default/p: network default/a needs a device of macvtap.network.kubevirt.io/dataplane"), "{e}");
        assert!(e.contains("allocated 2 and 3 of its networks use"), "{e}");
        assert!(e.contains("resources.limits to 3"), "{e}");

        // None at all.
        let e = plan(&pod(), &sels, &lookup, &mut DeviceIds::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the pod requests no macvtap.network.kubevirt.io/dataplane; add \"macvtap.network.kubevirt.io/dataplane: 1\" to the container's resources.limits"),
            "{e}"
        );
    }

    #[test]
    fn runtime_config_in_nad_replaced_only_when_injecting() {
        let cfg = json!({"cniVersion": "1.0.0", "type": "x", "capabilities": {"mac": true},
                         "runtimeConfig": {"stale": 1}});
        let d = plan_one("n", nad("n", cfg.clone(), None), &mut DeviceIds::new());
        assert_eq!(d.plugins[0]["runtimeConfig"], json!({"stale": 1}));
        let d = plan_one(
            r#"[{"name":"n","mac":"02:00:00:00:00:01"}]"#,
            nad("n", cfg, None),
            &mut DeviceIds::new(),
        );
        assert_eq!(
            d.plugins[0]["runtimeConfig"],
            json!({"mac": "02:00:00:00:00:01"})
        );
    }

    #[test]
    fn cni_args_non_object_args_replaced() {
        let cfg = json!({"cniVersion": "1.0.0", "type": "x", "args": "junk"});
        let d = plan_one(
            r#"[{"name":"n","cni-args":{"a":1}}]"#,
            nad("n", cfg, None),
            &mut DeviceIds::new(),
        );
        assert_eq!(d.plugins[0]["args"], json!({"cni": {"a": 1}}));
    }
}
