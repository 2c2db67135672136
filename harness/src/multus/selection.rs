//! The network-selection annotation (`k8s.v1.cni.cncf.io/networks`).
//!
//! Two forms, as in multus: a comma list of `name`, `ns/name`, `name@ifname`,
//! `ns/name@ifname`, or a JSON list of selection objects. Like multus, the JSON
//! form is recognised by the presence of any of `[`, `{` or `"`; JSON keys match
//! case-insensitively (Go's `encoding/json`) and unknown keys are ignored.

use std::net::IpAddr;

use cni_kit::MacAddr;
use serde_json::{Map, Value};

use super::MultusError;

/// One selected network, with the namespace defaulted to the pod's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkSelection {
    pub name: String,
    pub namespace: String,
    pub interface: Option<String>,
    pub mac: Option<String>,
    pub ips: Vec<String>,
    pub default_route: Vec<String>,
    pub cni_args: Option<Map<String, Value>>,
    pub device_id: Option<String>,
}

impl NetworkSelection {
    /// `ns/name`, the network's name in multus' messages and network-status.
    pub fn network(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Parses the annotation. Empty (or blank) → no networks.
pub fn parse_networks(
    annotation: &str,
    pod_namespace: &str,
) -> Result<Vec<NetworkSelection>, MultusError> {
    let text = annotation.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if text.contains(['[', '{', '"']) {
        parse_json(text, pod_namespace)
    } else {
        parse_list(text, pod_namespace)
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

const LIST_FIX: &str = "write entries as name, ns/name, name@ifname or ns/name@ifname separated by commas (lower-case letters, digits and '-')";

fn parse_list(text: &str, pod_namespace: &str) -> Result<Vec<NetworkSelection>, MultusError> {
    let mut out = Vec::new();
    for (i, raw) in text.split(',').enumerate() {
        let n = i + 1;
        let item = raw.trim();
        let quoted = format!("\"{item}\"");
        if item.is_empty() {
            return Err(err(
                Some(n),
                "",
                "is empty (stray comma?)".into(),
                "remove the extra comma",
            ));
        }
        let (namespace, rest) = match item.split('/').collect::<Vec<_>>()[..] {
            [name] => (None, name),
            [ns, name] => (Some(ns.trim()), name),
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
            [name] => (name.trim(), None),
            [name, ifname] => (name.trim(), Some(ifname.trim())),
            _ => {
                return Err(err(
                    Some(n),
                    &quoted,
                    "has more than one '@'".into(),
                    LIST_FIX,
                ));
            }
        };
        if name.is_empty() {
            return Err(err(
                Some(n),
                &quoted,
                "has no network name".into(),
                LIST_FIX,
            ));
        }
        // Multus requires every part of the comma form to be a DNS-1123 label;
        // empty namespace / interface parts mean "default", as in multus.
        for (what, part) in [
            ("network name", Some(name)),
            ("namespace", namespace),
            ("interface name", interface),
        ] {
            if let Some(part) = part.filter(|p| !p.is_empty())
                && !is_dns1123_label(part)
            {
                return Err(err(
                    Some(n),
                    &quoted,
                    format!("{what} \"{part}\" is not a DNS-1123 label"),
                    LIST_FIX,
                ));
            }
        }
        let interface = interface.filter(|s| !s.is_empty());
        if let Some(ifname) = interface
            && let Err(problem) = check_ifname(ifname)
        {
            return Err(err(Some(n), &quoted, problem, IFNAME_FIX));
        }
        out.push(NetworkSelection {
            name: name.to_string(),
            namespace: namespace
                .filter(|s| !s.is_empty())
                .unwrap_or(pod_namespace)
                .to_string(),
            interface: interface.map(str::to_string),
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

/// A key of `obj`, matched exactly first and then case-insensitively, like Go.
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key)
        .or_else(|| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
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
    let string = |key: &str| -> Result<Option<String>, MultusError> {
        match field(obj, key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(err(
                Some(n),
                &text,
                format!("\"{key}\" must be a string, not {other}"),
                &format!("write \"{key}\": \"...\""),
            )),
        }
    };
    let strings = |key: &str| -> Result<Vec<String>, MultusError> {
        let bad = || {
            err(
                Some(n),
                &text,
                format!("\"{key}\" must be a list of strings"),
                &format!("write \"{key}\": [\"...\"]"),
            )
        };
        match field(obj, key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
                .collect(),
            Some(_) => Err(bad()),
        }
    };

    let Some(name) = string("name")? else {
        return Err(err(
            Some(n),
            &text,
            "has no \"name\"".into(),
            "write {\"name\": \"<nad>\"}",
        ));
    };
    if !is_dns1123_subdomain(&name) {
        return Err(err(
            Some(n),
            &text,
            format!(
                "\"name\" \"{name}\" is not a valid NetworkAttachmentDefinition name (DNS-1123 subdomain)"
            ),
            "use lower-case letters, digits, '-' and '.', starting and ending alphanumerically",
        ));
    }
    let namespace = string("namespace")?;
    if let Some(ns) = &namespace
        && !is_dns1123_label(ns)
    {
        return Err(err(
            Some(n),
            &text,
            format!("\"namespace\" \"{ns}\" is not a valid namespace (DNS-1123 label)"),
            "use lower-case letters, digits and '-', at most 63 characters",
        ));
    }
    // `interfaceRequest` is the deprecated spelling multus still accepts.
    let interface = match string("interface")? {
        Some(i) => Some(i),
        None => string("interfaceRequest")?,
    };
    if let Some(ifname) = &interface
        && let Err(problem) = check_ifname(ifname)
    {
        return Err(err(Some(n), &text, problem, IFNAME_FIX));
    }
    let mac = string("mac")?;
    if let Some(mac) = &mac
        && mac.parse::<MacAddr>().is_err()
    {
        return Err(err(
            Some(n),
            &text,
            format!("\"mac\" \"{mac}\" is not a MAC address"),
            "write six hex octets like \"02:00:00:00:00:01\"",
        ));
    }
    let ips = strings("ips")?;
    for ip in &ips {
        if !is_ip_or_cidr(ip) {
            return Err(err(
                Some(n),
                &text,
                format!("\"ips\" entry \"{ip}\" is not an IP address"),
                "write addresses like \"10.1.1.5/24\" or \"fd00::5/64\"",
            ));
        }
    }
    let default_route = strings("default-route")?;
    for gw in &default_route {
        if gw.parse::<IpAddr>().is_err() {
            return Err(err(
                Some(n),
                &text,
                format!("\"default-route\" entry \"{gw}\" is not an IP address"),
                "write gateway addresses like \"10.1.1.1\" (no prefix length)",
            ));
        }
    }
    let cni_args = match field(obj, "cni-args") {
        None => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => {
            return Err(err(
                Some(n),
                &text,
                "\"cni-args\" must be a JSON object".into(),
                "write \"cni-args\": {\"key\": \"value\"}",
            ));
        }
    };
    let device_id = string("deviceID")?;
    Ok(NetworkSelection {
        name,
        namespace: namespace.unwrap_or_else(|| pod_namespace.to_string()),
        interface,
        mac,
        ips,
        default_route,
        cni_args,
        device_id,
    })
}

// ---- validation -----------------------------------------------------------------

const IFNAME_FIX: &str = "use at most 15 characters, no '/', ':' or whitespace";

/// Linux interface-name rules (`dev_valid_name`): 1–15 bytes, not `.`/`..`, no
/// `/`, `:` or whitespace.
pub fn check_ifname(ifname: &str) -> Result<(), String> {
    if ifname.is_empty() {
        return Err("interface name is empty".into());
    }
    if ifname.len() > 15 {
        return Err(format!(
            "interface name \"{ifname}\" is {} characters, longer than Linux's 15",
            ifname.len()
        ));
    }
    if ifname == "." || ifname == ".." {
        return Err(format!("interface name \"{ifname}\" is reserved"));
    }
    if let Some(c) = ifname
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "interface name \"{ifname}\" contains {c:?}, which Linux does not allow"
        ));
    }
    Ok(())
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// DNS-1123 labels joined by `.`, at most 253 characters (Kubernetes object names).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// An IP address with an optional prefix length, as multus accepts in `ips`.
fn is_ip_or_cidr(s: &str) -> bool {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= max))
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
            ("   ", vec![]),
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
        ];
        for (text, want) in cases {
            assert_eq!(&parse_networks(text, "default").unwrap(), want, "{text:?}");
        }
    }

    #[test]
    fn json_form() {
        let got =
            parse_networks(r#"[{"name":"dataplane","mac":"02:23:45:67:89:01"}]"#, "lab").unwrap();
        assert_eq!(
            got,
            vec![NetworkSelection {
                name: "dataplane".into(),
                namespace: "lab".into(),
                mac: Some("02:23:45:67:89:01".into()),
                ..Default::default()
            }]
        );

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
                mac: None,
                ips: vec!["10.1.1.5/24".into(), "fd00::5".into()],
                default_route: vec!["10.1.1.1".into()],
                cni_args: json!({"k": "v", "n": 1}).as_object().cloned(),
                device_id: Some("dev0".into()),
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
            (
                r#"[{"name":"a"},{"mac":"02:00:00:00:00:01"}]"#,
                &["entry 2", "has no \"name\"", "{\"name\": \"<nad>\"}"],
            ),
            (r#"[{"name":""}]"#, &["entry 1", "has no \"name\""]),
            (r#"["a"]"#, &["entry 1", "not a JSON object"]),
            (
                r#"[{"name":"a","mac":"02:00:00:00:00"}]"#,
                &[
                    "entry 1",
                    "\"mac\" \"02:00:00:00:00\" is not a MAC",
                    "six hex octets",
                ],
            ),
            (r#"[{"name":"a","mac":5}]"#, &["\"mac\" must be a string"]),
            (
                r#"[{"name":"a","interface":"abcdefghijklmnop"}]"#,
                &["16 characters", "15"],
            ),
            (r#"[{"name":"a","interface":"a/b"}]"#, &["'/'"]),
            (r#"[{"name":"a","interface":"a b"}]"#, &["' '"]),
            (r#"[{"name":"Bad_Name"}]"#, &["DNS-1123 subdomain"]),
            (r#"[{"name":"a","namespace":"a.b"}]"#, &["DNS-1123 label"]),
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
            ("a,,b", &["entry 2: is empty", "stray comma"]),
            ("a,", &["entry 2: is empty"]),
            ("a/b/c", &["entry 1 \"a/b/c\"", "more than one '/'"]),
            ("a@b@c", &["more than one '@'"]),
            ("ns/@eth1", &["has no network name"]),
            (
                "Dataplane",
                &["network name \"Dataplane\" is not a DNS-1123 label"],
            ),
            ("a@net_1", &["interface name \"net_1\""]),
            ("a@abcdefghijklmnop", &["16 characters"]),
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
        let e = parse_pod_networks(r#"[{"name":"a"},{}]"#, "default", "p")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "pod default/p: k8s.v1.cni.cncf.io/networks: entry 2 {}: has no \"name\"; write {\"name\": \"<nad>\"}"
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
}
