//! The network-selection annotation (`k8s.v1.cni.cncf.io/networks`), read as
//! multus reads it.
//!
//! Two forms: a comma list of `name`, `ns/name`, `name@ifname`, `ns/name@ifname`,
//! or a JSON list of selection objects; the JSON form is recognised by the
//! presence of any of `[`, `{` or `"`.
//!
//! What multus checks here, and nothing more:
//! - comma form: the namespace and the network name match the DNS-1123 label
//!   pattern `[a-z0-9]([-a-z0-9]*[a-z0-9])?` (no length limit) or are empty; the
//!   interface name is at most 15 bytes and has no whitespace or `/` (so
//!   `net1@my_interface` and `net1@eth0.100` are fine);
//! - JSON form: the types of the fields Go's `encoding/json` decodes (keys match
//!   case-insensitively, unknown keys are ignored, `null` means "not given"), and
//!   then `mac` and `infiniband-guid` (Go's `net.ParseMAC`: 6, 8 or 20 octets
//!   separated by `:` or `-`, or dotted `xxxx.xxxx.xxxx`), `ips` (an address, or an
//!   address/prefix with a decimal prefix length) and `default-route` (addresses).
//!
//! Names, namespaces and JSON interface names are not checked here, as in
//! multus: an empty or unknown network fails at the NetworkAttachmentDefinition
//! lookup and a bad interface name when the delegate is run
//! ([`super::delegate::plan`] reports both before any plugin runs).
//!
//! Deliberate difference: a `null` entry in the list or in `portMappings` is
//! refused (multus dereferences it and crashes, or hands `null` to the plugin).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::MultusError;

/// One selected network, with the namespace defaulted to the pod's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkSelection {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) interface: Option<String>,
    pub(crate) mac: Option<String>,
    /// `infiniband-guid`, passed as the `infinibandGUID` capability.
    pub(crate) infiniband_guid: Option<String>,
    /// `ips`: `Some([])` when written as `[]` (multus then passes an empty
    /// `IP=` in CNI_ARGS).
    pub(crate) ips: Option<Vec<String>>,
    /// `default-route`: `None` when absent, `Some([])` when written as `[]`
    /// (multus tells the two apart). An empty string is Go's nil IP.
    pub(crate) default_route: Option<Vec<String>>,
    /// `portMappings`: `Some([])` clears the pod's own port mappings.
    pub(crate) port_mappings: Option<Vec<PortMapping>>,
    pub(crate) bandwidth: Option<Bandwidth>,
    pub(crate) cni_args: Option<Map<String, Value>>,
    pub(crate) device_id: Option<String>,
    /// `ipam-claim-reference` (Multi-Net spec v1.3): the IPAMClaim whose
    /// addresses the attachment takes. Multus does not read it.
    pub(crate) ipam_claim_reference: Option<String>,
}

impl NetworkSelection {
    /// `ns/name`, the network's name in multus' messages and network-status.
    pub fn network(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A `portMappings` entry, as the portmap plugin reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub(crate) host_port: i64,
    #[serde(rename = "containerPort")]
    pub(crate) container_port: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) protocol: String,
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub(crate) host_ip: String,
}

/// A `bandwidth` request, as the bandwidth plugin reads it (all four keys are
/// always passed on, zero when not given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    pub(crate) ingress_rate: i64,
    pub(crate) ingress_burst: i64,
    pub(crate) egress_rate: i64,
    pub(crate) egress_burst: i64,
}

/// Parses the annotation. Empty → no networks (multus: "no kubernetes network
/// found"); anything else, even blanks, is parsed.
pub fn parse_networks(
    annotation: &str,
    pod_namespace: &str,
) -> Result<Vec<NetworkSelection>, MultusError> {
    if annotation.is_empty() {
        return Ok(Vec::new());
    }
    if annotation.contains(['[', '{', '"']) {
        parse_json(annotation, pod_namespace)
    } else {
        parse_list(annotation, pod_namespace)
    }
}

/// [`parse_networks`] with the pod named in errors.
pub fn parse_pod_networks(
    annotation: &str,
    pod_namespace: &str,
    pod_name: &str,
) -> Result<Vec<NetworkSelection>, MultusError> {
    parse_networks(annotation, pod_namespace).map_err(|e| e.with_pod(pod_namespace, pod_name))
}

fn err(entry: Option<usize>, text: &str, problem: String, fix: &str) -> MultusError {
    MultusError::Selection {
        pod: None,
        entry,
        text: shorten(text),
        problem,
        fix: fix.to_string(),
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head}…")
    }
}

// ---- comma form ---------------------------------------------------------------

const LIST_FIX: &str = "write entries as name, ns/name, name@ifname or ns/name@ifname separated by commas (names: lower-case letters, digits and '-')";

fn parse_list(text: &str, pod_namespace: &str) -> Result<Vec<NetworkSelection>, MultusError> {
    let mut out = Vec::new();
    for (i, raw) in text.split(',').enumerate() {
        let n = i + 1;
        let item = raw.trim();
        let quoted = format!("\"{item}\"");
        let (namespace, rest) = match item.split('/').collect::<Vec<_>>()[..] {
            [rest] => ("", rest),
            [ns, rest] => (ns.trim(), rest),
            _ => {
                return Err(err(
                    Some(n),
                    &quoted,
                    "has more than one '/'".into(),
                    LIST_FIX,
                ));
            }
        };
        let (name, interface) = match rest.split('@').collect::<Vec<_>>()[..] {
            [name] => (name.trim(), ""),
            [name, ifname] => (name.trim(), ifname.trim()),
            _ => {
                return Err(err(
                    Some(n),
                    &quoted,
                    "has more than one '@'".into(),
                    LIST_FIX,
                ));
            }
        };
        // Empty parts pass here, as in multus (an empty name fails at the lookup).
        for (what, part) in [("namespace", namespace), ("network name", name)] {
            if !part.is_empty() && !is_dns1123_label_pattern(part) {
                return Err(err(
                    Some(n),
                    &quoted,
                    format!("{what} \"{part}\" is not a DNS-1123 label"),
                    LIST_FIX,
                ));
            }
        }
        if !interface.is_empty() {
            if interface.len() > 15 {
                return Err(err(
                    Some(n),
                    &quoted,
                    format!(
                        "interface name \"{interface}\" is {} bytes, longer than Linux's 15",
                        interface.len()
                    ),
                    IFNAME_FIX,
                ));
            }
            if let Some(c) = interface.chars().find(|c| " \t\n\x0b\x0c\r/".contains(*c)) {
                return Err(err(
                    Some(n),
                    &quoted,
                    format!("interface name \"{interface}\" contains {c:?}"),
                    IFNAME_FIX,
                ));
            }
        }
        out.push(NetworkSelection {
            name: name.to_string(),
            namespace: if namespace.is_empty() {
                pod_namespace
            } else {
                namespace
            }
            .to_string(),
            interface: (!interface.is_empty()).then(|| interface.to_string()),
            ..Default::default()
        });
    }
    Ok(out)
}

// ---- JSON form ----------------------------------------------------------------

const JSON_FIX: &str =
    "write a JSON list of objects like [{\"name\": \"<nad>\", \"interface\": \"net1\"}]";

fn parse_json(text: &str, pod_namespace: &str) -> Result<Vec<NetworkSelection>, MultusError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        err(
            None,
            "",
            format!("is not valid JSON ({e})"),
            "fix the JSON, or use the comma form ns/name@ifname",
        )
    })?;
    let Value::Array(entries) = value else {
        let kind = match value {
            Value::Object(_) => "a JSON object",
            Value::String(_) => "a JSON string",
            _ => "not a JSON list",
        };
        return Err(err(
            None,
            "",
            format!("is {kind}, not a list"),
            "wrap the selection objects in [...]",
        ));
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| parse_entry(i + 1, entry, pod_namespace))
        .collect()
}

/// A key of `obj`, matched exactly first and then case-insensitively, like Go;
/// `null` is "not given".
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key)
        .or_else(|| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

/// Reads typed fields of one JSON object the way Go decodes them into a struct.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    n: usize,
    text: &'a str,
}

impl Fields<'_> {
    fn bad(&self, problem: String, fix: &str) -> MultusError {
        err(Some(self.n), self.text, problem, fix)
    }

    /// A string field; empty is "not given" (Go's `omitempty` zero value).
    fn string(&self, key: &str) -> Result<Option<String>, MultusError> {
        match field(self.obj, key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.bad(
                format!("\"{key}\" must be a string, not {other}"),
                &format!("write \"{key}\": \"...\""),
            )),
        }
    }

    /// A list of strings; `null` elements read as "" (Go's zero value).
    fn strings(&self, key: &str) -> Result<Option<Vec<String>>, MultusError> {
        let bad = || {
            self.bad(
                format!("\"{key}\" must be a list of strings"),
                &format!("write \"{key}\": [\"...\"]"),
            )
        };
        match field(self.obj, key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Null => Ok(String::new()),
                    _ => Err(bad()),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(bad()),
        }
    }

    /// A Go `int` (64-bit): an integer literal, no fraction or exponent.
    fn int(&self, key: &str) -> Result<i64, MultusError> {
        match field(self.obj, key) {
            None => Ok(0),
            Some(v) => v.as_i64().ok_or_else(|| {
                self.bad(
                    format!("\"{key}\" must be an integer, not {v}"),
                    &format!("write \"{key}\": 80"),
                )
            }),
        }
    }

    fn object(&self, key: &str) -> Result<Option<&Map<String, Value>>, MultusError> {
        match field(self.obj, key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(self.bad(
                format!("\"{key}\" must be a JSON object, not {other}"),
                &format!("write \"{key}\": {{...}}"),
            )),
        }
    }

    fn nested<'b>(&'b self, obj: &'b Map<String, Value>) -> Fields<'b> {
        Fields {
            obj,
            n: self.n,
            text: self.text,
        }
    }
}

fn parse_entry(
    n: usize,
    entry: &Value,
    pod_namespace: &str,
) -> Result<NetworkSelection, MultusError> {
    let text = entry.to_string();
    let Value::Object(obj) = entry else {
        return Err(err(Some(n), &text, "is not a JSON object".into(), JSON_FIX));
    };
    let f = Fields {
        obj,
        n,
        text: &text,
    };

    let name = f.string("name")?.unwrap_or_default();
    let namespace = f.string("namespace")?;
    // `interfaceRequest` is the pre-3.2 spelling multus still reads.
    let interface = match f.string("interface")? {
        Some(i) => Some(i),
        None => f.string("interfaceRequest")?,
    };

    let mac = f.string("mac")?;
    if let Some(mac) = &mac
        && parse_go_mac(mac).is_none()
    {
        return Err(f.bad(
            format!("\"mac\" \"{mac}\" is not a MAC address"),
            "write hex octets like \"02:00:00:00:00:01\"",
        ));
    }
    let infiniband_guid = f.string("infiniband-guid")?;
    if let Some(guid) = &infiniband_guid
        && parse_go_mac(guid).is_none()
    {
        return Err(f.bad(
            format!("\"infiniband-guid\" \"{guid}\" is not a GUID"),
            "write eight hex octets like \"24:8a:07:03:00:8d:ae:2e\"",
        ));
    }

    let ips = f.strings("ips")?;
    for ip in ips.iter().flatten() {
        if !is_ip_or_cidr(ip) {
            return Err(f.bad(
                format!("\"ips\" entry \"{ip}\" is not an IP address"),
                "write addresses like \"10.1.1.5/24\" or \"fd00::5/64\"",
            ));
        }
    }

    let default_route = f.strings("default-route")?;
    for gw in default_route.iter().flatten() {
        if !gw.is_empty() && gw.parse::<IpAddr>().is_err() {
            return Err(f.bad(
                format!("\"default-route\" entry \"{gw}\" is not an IP address"),
                "write gateway addresses like \"10.1.1.1\" (no prefix length)",
            ));
        }
    }

    let port_mappings = match field(obj, "portMappings") {
        None => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| match item {
                    Value::Object(m) => {
                        let p = f.nested(m);
                        Ok(PortMapping {
                            host_port: p.int("hostPort")?,
                            container_port: p.int("containerPort")?,
                            protocol: p.string("protocol")?.unwrap_or_default(),
                            host_ip: p.string("hostIP")?.unwrap_or_default(),
                        })
                    }
                    other => Err(f.bad(
                        format!("\"portMappings\" entry {other} is not an object"),
                        "write {\"hostPort\": 8080, \"containerPort\": 80, \"protocol\": \"tcp\"}",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => {
            return Err(f.bad(
                "\"portMappings\" must be a list".into(),
                "write \"portMappings\": [{\"hostPort\": 8080, \"containerPort\": 80}]",
            ));
        }
    };
    let bandwidth = match f.object("bandwidth")? {
        None => None,
        Some(m) => {
            let b = f.nested(m);
            Some(Bandwidth {
                ingress_rate: b.int("ingressRate")?,
                ingress_burst: b.int("ingressBurst")?,
                egress_rate: b.int("egressRate")?,
                egress_burst: b.int("egressBurst")?,
            })
        }
    };

    let cni_args = f.object("cni-args")?.cloned();
    let device_id = f.string("deviceID")?;
    let ipam_claim_reference = f.string("ipam-claim-reference")?;
    Ok(NetworkSelection {
        name,
        namespace: namespace.unwrap_or_else(|| pod_namespace.to_string()),
        interface,
        mac,
        infiniband_guid,
        ips,
        default_route,
        port_mappings,
        bandwidth,
        cni_args,
        device_id,
        ipam_claim_reference,
    })
}

// ---- validation -----------------------------------------------------------------

const IFNAME_FIX: &str = "use at most 15 characters, no '/', ':' or whitespace";

/// Why an interface name breaks libcni's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IfnameProblem {
    #[error("interface name is empty")]
    Empty,
    #[error("interface name \"{name}\" is {} bytes, longer than Linux's 15", .name.len())]
    TooLong { name: String },
    #[error("interface name \"{0}\" is reserved")]
    Reserved(String),
    #[error("interface name \"{0}\" contains {1:?}, which Linux does not allow")]
    BadChar(String, char),
}

/// libcni's interface-name rules, checked before it runs a plugin (and the
/// kernel's `dev_valid_name`): 1–15 bytes, not `.`/`..`, no `/`, `:` or
/// whitespace.
pub fn check_ifname(ifname: &str) -> Result<(), IfnameProblem> {
    if ifname.is_empty() {
        return Err(IfnameProblem::Empty);
    }
    if ifname.len() > 15 {
        return Err(IfnameProblem::TooLong {
            name: ifname.into(),
        });
    }
    if ifname == "." || ifname == ".." {
        return Err(IfnameProblem::Reserved(ifname.into()));
    }
    if let Some(c) = ifname
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
    {
        return Err(IfnameProblem::BadChar(ifname.into(), c));
    }
    Ok(())
}

/// The pattern multus checks comma-form names against:
/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, with no length limit.
pub fn is_dns1123_label_pattern(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 label: the pattern, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && is_dns1123_label_pattern(s)
}

/// DNS-1123 labels joined by `.`, at most 253 characters (Kubernetes object names).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// An `ips` entry as multus accepts it: an address (Go's `net.ParseIP`), or, if it
/// contains `/`, an address and a prefix length of decimal digits only (Go's
/// `net.ParseCIDR`: `/024` is fine, `/+24` and `/` are not).
pub fn is_ip_or_cidr(s: &str) -> bool {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|p| {
        !p.is_empty()
            && p.bytes().all(|c| c.is_ascii_digit())
            && p.parse::<u64>().is_ok_and(|p| p <= max)
    })
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets as `xx:xx:…` or `xx-xx-…` (one
/// separator throughout, exactly two hex digits each) or `xxxx.xxxx.…`.
/// Returns the octets.
pub fn parse_go_mac(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() < 14 {
        return None;
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let octet = |at: usize| Some(hex(b[at])? << 4 | hex(b[at + 1])?);
    let lengths = [6, 8, 20];
    let mut out = Vec::new();
    if b[2] == b':' || b[2] == b'-' {
        let sep = b[2];
        if !(b.len() + 1).is_multiple_of(3) || !lengths.contains(&((b.len() + 1) / 3)) {
            return None;
        }
        for x in (0..b.len()).step_by(3) {
            out.push(octet(x)?);
            if x + 2 < b.len() && b[x + 2] != sep {
                return None;
            }
        }
    } else if b[4] == b'.' {
        if !(b.len() + 1).is_multiple_of(5) || !lengths.contains(&(2 * (b.len() + 1) / 5)) {
            return None;
        }
        for x in (0..b.len()).step_by(5) {
            out.push(octet(x)?);
            out.push(octet(x + 2)?);
            if x + 4 < b.len() && b[x + 4] != b'.' {
                return None;
            }
        }
    } else {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(ns: &str, name: &str, ifname: Option<&str>) -> NetworkSelection {
        NetworkSelection {
            name: name.into(),
            namespace: ns.into(),
            interface: ifname.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn comma_form() {
        let cases: &[(&str, Vec<NetworkSelection>)] = &[
            ("", vec![]),
            // Not empty: one entry with no name, which the NAD lookup refuses.
            ("   ", vec![sel("default", "", None)]),
            ("dataplane", vec![sel("default", "dataplane", None)]),
            ("other/dataplane", vec![sel("other", "dataplane", None)]),
            (
                "dataplane@eth1",
                vec![sel("default", "dataplane", Some("eth1"))],
            ),
            (
                "other/dataplane@eth1",
                vec![sel("other", "dataplane", Some("eth1"))],
            ),
            (
                " a , b/c@net5 ,d ",
                vec![
                    sel("default", "a", None),
                    sel("b", "c", Some("net5")),
                    sel("default", "d", None),
                ],
            ),
            // Empty parts mean "default", as in multus.
            ("/a@", vec![sel("default", "a", None)]),
            (
                "a,,b",
                vec![
                    sel("default", "a", None),
                    sel("default", "", None),
                    sel("default", "b", None),
                ],
            ),
            ("ns/@eth1", vec![sel("ns", "", Some("eth1"))]),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_networks(text, "default").unwrap(), want, "{text:?}");
        }
    }

    #[test]
    fn json_form() {
        let full = r#"[
          {"name": "a", "namespace": "ns1", "interface": "eth9",
           "ips": ["10.1.1.5/24", "fd00::5"], "default-route": ["10.1.1.1"],
           "cni-args": {"k": "v", "n": 1}, "deviceID": "dev0",
           "portMappings": [], "whatever": true},
          {"Name": "b", "interfaceRequest": "old"},
          {"name": "c.d", "namespace": "", "mac": null}
        ]"#;
        let got = parse_networks(full, "pod-ns").unwrap();
        assert_eq!(
            got[0],
            NetworkSelection {
                name: "a".into(),
                namespace: "ns1".into(),
                interface: Some("eth9".into()),
                ips: Some(vec!["10.1.1.5/24".into(), "fd00::5".into()]),
                default_route: Some(vec!["10.1.1.1".into()]),
                port_mappings: Some(vec![]),
                cni_args: json!({"k": "v", "n": 1}).as_object().cloned(),
                device_id: Some("dev0".into()),
                ..Default::default()
            }
        );
        assert_eq!(got[1], sel("pod-ns", "b", Some("old")));
        assert_eq!(got[2], sel("pod-ns", "c.d", None));
        assert_eq!(parse_networks("[]", "x").unwrap(), vec![]);
    }

    #[test]
    fn malformed() {
        // (annotation, substrings the message must contain)
        let cases: &[(&str, &[&str])] = &[
            ("[{\"name\": \"a\"", &["not valid JSON", "fix the JSON"]),
            ("{\"name\": \"a\"}", &["JSON object, not a list", "[...]"]),
            (r#"["a"]"#, &["entry 1", "not a JSON object"]),
            (r#"[null]"#, &["entry 1", "not a JSON object"]),
            (
                r#"[{"name":"a","mac":"02:00:00:00:00"}]"#,
                &["entry 1", "\"mac\" \"02:00:00:00:00\" is not a MAC"],
            ),
            (r#"[{"name":"a","mac":5}]"#, &["\"mac\" must be a string"]),
            (r#"[{"name":5}]"#, &["\"name\" must be a string"]),
            (r#"[{"name":"a","ips":["10.1.1.300"]}]"#, &["\"ips\" entry"]),
            (
                r#"[{"name":"a","ips":["10.1.1.3/33"]}]"#,
                &["\"ips\" entry"],
            ),
            (r#"[{"name":"a","ips":"10.1.1.3"}]"#, &["list of strings"]),
            (
                r#"[{"name":"a","default-route":["10.0.0.1/24"]}]"#,
                &["\"default-route\" entry"],
            ),
            (
                r#"[{"name":"a","cni-args":[1]}]"#,
                &["\"cni-args\" must be a JSON object"],
            ),
            (
                r#"[{"name":"a","portMappings":[{"hostPort":"80"}]}]"#,
                &["\"hostPort\" must be an integer"],
            ),
            (
                r#"[{"name":"a","portMappings":[null]}]"#,
                &["\"portMappings\" entry null"],
            ),
            (
                r#"[{"name":"a","bandwidth":{"ingressRate":1.5}}]"#,
                &["\"ingressRate\" must be an integer"],
            ),
            ("a/b/c", &["entry 1 \"a/b/c\"", "more than one '/'"]),
            ("a@b@c", &["more than one '@'"]),
            (
                "Dataplane",
                &["network name \"Dataplane\" is not a DNS-1123 label"],
            ),
            ("a@abcdefghijklmnop", &["16 bytes"]),
            ("a@my if", &["contains ' '"]),
        ];
        for (text, want) in cases {
            let e = parse_networks(text, "default").expect_err(text).to_string();
            assert!(
                e.starts_with("k8s.v1.cni.cncf.io/networks: "),
                "{text:?}: {e}"
            );
            for w in *want {
                assert!(e.contains(w), "{text:?}: {e:?} lacks {w:?}");
            }
        }
    }

    #[test]
    fn pod_named_in_errors() {
        let e = parse_pod_networks(r#"[{"name":"a"},{"mac":"x"}]"#, "default", "p")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("pod default/p: k8s.v1.cni.cncf.io/networks: entry 2 {\"mac\":\"x\"}: \"mac\" \"x\" is not a MAC address"),
            "{e}"
        );
    }

    #[test]
    fn ifname_rules() {
        for ok in ["net1", "eth0.100", "a-b_c", "abcdefghijklmno"] {
            assert!(check_ifname(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "abcdefghijklmnop", "a:b", "a/b", "a\tb"] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn go_mac_forms() {
        for ok in [
            "02:00:00:00:00:01",
            "02-00-00-00-00-01",
            "0200.0000.0001",
            "AA:bb:CC:dd:EE:ff",
            "24:8a:07:03:00:8d:ae:2e",
            "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01",
        ] {
            assert!(parse_go_mac(ok).is_some(), "{ok}");
        }
        for bad in [
            "+2:00:00:00:00:01",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "02:00-00:00:00:01",
            "2:00:00:00:00:01",
            "0g:00:00:00:00:01",
            "020000000001",
        ] {
            assert!(parse_go_mac(bad).is_none(), "{bad}");
        }
    }
}
