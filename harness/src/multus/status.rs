//! The network-status annotation (`k8s.v1.cni.cncf.io/network-status`), built
//! and written as multus does with the network-attachment-definition client
//! (`CreateNetworkStatuses`, `SetNetworkStatus`), and read as that client's
//! `NetworkStatus` type reads it.
//!
//! Per delegate, from its CNI result (any spec version, converted to 1.0.0):
//! - exactly one interface in the result: one status; its `interface`, `mac` and
//!   `mtu` only if that interface has a `sandbox`; every IP of the result;
//! - otherwise one status per interface with a `sandbox` (none for a result
//!   without sandbox interfaces, e.g. an IPAM-only or a 0.2.0 result); an IP goes
//!   to the status of the interface its `interface` index names (dropped if that
//!   interface has no sandbox), an IP without index to the *last* sandbox
//!   interface; for the cluster default network, `default: true` goes to the
//!   interface named by the first IP that has both a gateway and an index, else
//!   to the first sandbox interface;
//! - `gateway`: the `gw` of every default route of the result (a route without
//!   `dst`, or whose `dst` address is all zeros in any spelling: `0.0.0.0/0`,
//!   `::/0`, `0:0::0/0`, …), on every status of the delegate. A default route
//!   without `gw` is listed as `<nil>`, as Go prints a nil IP.
//!
//! Addresses are printed as Go prints IPs (RFC 5952, IPv4-mapped IPv6 as dotted
//! IPv4). The annotation is each status indented with four spaces, joined with
//! `,` inside `[...]`, with `<`, `>` and `&` escaped as Go's encoder does.
//!
//! Reading accepts what the client's type accepts (missing or `null` fields,
//! unknown keys) and, besides `gateway`, the key `default-route` that secnet
//! wrote before it matched multus.

use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::MultusError;

/// One attachment of the pod, as multus reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// `ns/name` of the NAD (the cluster network's name for the default one).
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) interface: Option<String>,
    /// Addresses without prefix length.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) mtu: Option<u32>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub(crate) default: bool,
    /// Multus always writes this (`{}` when the result has no DNS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dns: Option<Dns>,
    #[serde(
        rename = "device-info",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) device_info: Option<Value>,
    /// Gateways of the result's default routes.
    #[serde(
        alias = "default-route",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) gateway: Vec<String>,
}

/// The client's `DNS`: empty fields are left out, in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) nameservers: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub(crate) domain: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) search: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) options: Vec<String>,
}

/// `null` reads as the zero value, as in Go.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// An interface of a CNI result.
#[derive(Debug, Clone, Default, PartialEq)]
struct Iface {
    name: String,
    mac: String,
    mtu: u32,
    sandbox: String,
}

/// An IP of a CNI result: the address as Go prints it, its gateway and index.
#[derive(Debug, Clone, PartialEq)]
struct Ip {
    address: String,
    has_gateway: bool,
    interface: Option<i64>,
}

/// A CNI result as multus sees it after converting it to 1.0.0.
#[derive(Debug, Clone, Default, PartialEq)]
struct Result100 {
    interfaces: Vec<Iface>,
    ips: Vec<Ip>,
    /// Gateways of the default routes, as Go prints them.
    default_gateways: Vec<String>,
    dns: Dns,
}

/// The statuses of one delegate from its result (see the module docs).
/// `default` is true for the cluster default network only. `device_info` is
/// what multus read from the CNI device-info file, if any.
pub fn from_result(
    network: &str,
    result: &Value,
    default: bool,
    device_info: Option<&Value>,
) -> Result<Vec<NetworkStatus>, MultusError> {
    let r = read_result(result).map_err(|problem| MultusError::Result {
        network: network.to_string(),
        problem,
    })?;
    let base = NetworkStatus {
        name: network.to_string(),
        dns: Some(r.dns.clone()),
        device_info: device_info.cloned(),
        gateway: r.default_gateways.clone(),
        ..Default::default()
    };

    if r.interfaces.len() == 1 {
        let mut status = NetworkStatus {
            default,
            ips: r.ips.iter().map(|ip| ip.address.clone()).collect(),
            ..base
        };
        if let Some(i) = r.interfaces.iter().rfind(|i| !i.sandbox.is_empty()) {
            status.interface = Some(i.name.clone());
            status.mac = Some(i.mac.clone()).filter(|m| !m.is_empty());
            status.mtu = Some(i.mtu).filter(|m| *m != 0);
        }
        return Ok(vec![status]);
    }

    let gateway_iface = if default {
        r.ips
            .iter()
            .find(|ip| ip.has_gateway && ip.interface.is_some())
            .and_then(|ip| ip.interface)
    } else {
        None
    };
    let mut statuses = Vec::new();
    // Result interface index → index in `statuses`.
    let mut index_of = Vec::new();
    let mut default_given = false;
    for (i, iface) in r.interfaces.iter().enumerate() {
        if iface.sandbox.is_empty() {
            continue;
        }
        let is_default = default
            && !default_given
            && match gateway_iface {
                Some(g) => g == i as i64,
                None => true,
            };
        default_given |= is_default;
        index_of.push((i as i64, statuses.len()));
        statuses.push(NetworkStatus {
            interface: Some(iface.name.clone()),
            mac: Some(iface.mac.clone()).filter(|m| !m.is_empty()),
            mtu: Some(iface.mtu).filter(|m| *m != 0),
            default: is_default,
            ..base.clone()
        });
    }
    for ip in &r.ips {
        let target = match ip.interface {
            Some(idx) => index_of.iter().find(|(i, _)| *i == idx).map(|(_, s)| *s),
            None => statuses.len().checked_sub(1),
        };
        if let Some(s) = target {
            statuses[s].ips.push(ip.address.clone());
        }
    }
    Ok(statuses)
}

/// Why multus cannot read a CNI result; each reads after "the CNI result".
/// (Comparable and cloneable as `MultusError` is: serde's reason is kept as text.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultProblem {
    #[error("is not a JSON object")]
    NotObject,
    #[error("has cniVersion \"{0}\", which multus cannot read")]
    Version(String),
    #[error("has interface mtu {0}, not a number")]
    Mtu(Value),
    #[error("has an ip without address")]
    NoAddress,
    #[error("has ip interface index {0}, not an integer")]
    InterfaceIndex(Value),
    #[error("has route dst \"{0}\", not a CIDR")]
    RouteDst(String),
    #[error("has route dst {0}, not a CIDR")]
    RouteDstType(Value),
    #[error("has \"{key}\" {value}, not a string")]
    NotString { key: String, value: Value },
    #[error("has \"{key}\" {value}, not a list")]
    NotList { key: String, value: Value },
    #[error("has address \"{0}\", not a CIDR")]
    NotCidr(String),
    #[error("has \"{0}\", not an IP address")]
    NotIp(String),
    #[error("has dns {value}: {reason}")]
    Dns { value: Value, reason: String },
}

/// Reads a result of any spec version the way libcni and multus do, or says
/// why multus could not.
fn read_result(value: &Value) -> Result<Result100, ResultProblem> {
    let Value::Object(obj) = value else {
        return Err(ResultProblem::NotObject);
    };
    let version = obj.get("cniVersion").and_then(Value::as_str).unwrap_or("");
    let mut r = Result100 {
        dns: dns(obj.get("dns"))?,
        ..Default::default()
    };
    let mut routes: Vec<&Value> = Vec::new();
    match version {
        // Before 0.3.0 a result has no interfaces, so no status: nothing to read.
        "0.1.0" | "0.2.0" => return Ok(r),
        "" | "0.3.0" | "0.3.1" | "0.4.0" | "1.0.0" | "1.1.0" => {
            for i in array_field(value, "interfaces")? {
                r.interfaces.push(Iface {
                    name: str_field(i, "name")?.unwrap_or_default(),
                    mac: str_field(i, "mac")?.unwrap_or_default(),
                    mtu: match i.get("mtu") {
                        None | Some(Value::Null) => 0,
                        Some(m) => m
                            .as_u64()
                            .and_then(|m| u32::try_from(m).ok())
                            .ok_or_else(|| ResultProblem::Mtu(m.clone()))?,
                    },
                    sandbox: str_field(i, "sandbox")?.unwrap_or_default(),
                });
            }
            for ip in array_field(value, "ips")? {
                let address = str_field(ip, "address")?.ok_or(ResultProblem::NoAddress)?;
                let gateway = str_field(ip, "gateway")?;
                if let Some(gw) = &gateway {
                    go_ip(gw)?;
                }
                r.ips.push(Ip {
                    address: cidr_address(&address)?,
                    has_gateway: gateway.is_some(),
                    interface: match ip.get("interface") {
                        None | Some(Value::Null) => None,
                        Some(n) => Some(
                            n.as_i64()
                                .ok_or_else(|| ResultProblem::InterfaceIndex(n.clone()))?,
                        ),
                    },
                });
            }
            routes.extend(array_field(value, "routes")?);
        }
        other => {
            return Err(ResultProblem::Version(other.to_string()));
        }
    }
    for route in routes {
        let gw = match str_field(route, "gw")? {
            Some(gw) => go_ip(&gw)?,
            None => "<nil>".to_string(),
        };
        let default = match route.get("dst") {
            None => true,
            Some(Value::String(dst)) => {
                let (addr, _) = dst.split_once('/').unwrap_or((dst, ""));
                if !crate::multus::selection::is_ip_or_cidr(dst) || !dst.contains('/') {
                    return Err(ResultProblem::RouteDst(dst.clone()));
                }
                addr.parse::<IpAddr>().is_ok_and(|ip| is_zero(&ip))
            }
            Some(other) => return Err(ResultProblem::RouteDstType(other.clone())),
        };
        if default {
            r.default_gateways.push(gw);
        }
    }
    Ok(r)
}

fn str_field(v: &Value, key: &str) -> Result<Option<String>, ResultProblem> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ResultProblem::NotString {
            key: key.to_string(),
            value: other.clone(),
        }),
    }
}

fn array_field<'a>(v: &'a Value, key: &str) -> Result<Vec<&'a Value>, ResultProblem> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a.iter().collect()),
        Some(other) => Err(ResultProblem::NotList {
            key: key.to_string(),
            value: other.clone(),
        }),
    }
}

/// Go's `IP.Equal(IPv4zero) || IP.Equal(IPv6zero)`: all-zero, v4, v6 or
/// v4-mapped.
fn is_zero(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_unspecified(),
        IpAddr::V6(a) => {
            a.is_unspecified() || a.to_ipv4_mapped().is_some_and(|m| m.is_unspecified())
        }
    }
}

/// The address of `a.b.c.d/len` as Go prints it, or why it is no CIDR.
fn cidr_address(cidr: &str) -> Result<String, ResultProblem> {
    if !cidr.contains('/') || !crate::multus::selection::is_ip_or_cidr(cidr) {
        return Err(ResultProblem::NotCidr(cidr.to_string()));
    }
    go_ip(cidr.split('/').next().unwrap_or(cidr))
}

/// An address as Go's `IP.String()` prints it.
fn go_ip(text: &str) -> Result<String, ResultProblem> {
    match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => Ok(a.to_string()),
        Ok(IpAddr::V6(a)) => Ok(go_ipv6(&a)),
        Err(_) => Err(ResultProblem::NotIp(text.to_string())),
    }
}

fn go_ipv6(a: &Ipv6Addr) -> String {
    match a.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => a.to_string(),
    }
}

/// The annotation value, byte for byte as multus writes it.
pub fn annotation(statuses: &[NetworkStatus]) -> String {
    let parts: Vec<String> = statuses
        .iter()
        .map(|s| {
            let mut out = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            s.serialize(&mut ser).expect("network status serializes");
            go_html_escape(&String::from_utf8(out).expect("serde_json writes UTF-8"))
        })
        .collect();
    format!("[{}]", parts.join(","))
}

/// Go's JSON encoder escapes `<`, `>`, `&`, U+2028 and U+2029; they only occur
/// inside strings, so escaping the whole text is safe.
fn go_html_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Reads an annotation written by multus (or by [`annotation`]).
pub fn parse_annotation(text: &str) -> Result<Vec<NetworkStatus>, MultusError> {
    if text.trim() == "null" {
        return Ok(Vec::new());
    }
    serde_json::from_str(text).map_err(|e| MultusError::Status {
        problem: format!("is not a JSON list of network statuses ({e})"),
        fix: "expected [{\"name\": \"ns/nad\", \"interface\": \"net1\", ...}]".into(),
    })
}

/// The result's DNS (fields of the wrong type are a result multus cannot read).
fn dns(value: Option<&Value>) -> Result<Dns, ResultProblem> {
    match value {
        None | Some(Value::Null) => Ok(Dns::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| ResultProblem::Dns {
            value: v.clone(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_key_older_secnet_wrote() {
        let s = parse_annotation(r#"[{"name":"n","default-route":["10.0.0.1"]}]"#).unwrap();
        assert_eq!(s[0].gateway, ["10.0.0.1"]);
        // ... and writes multus' key.
        assert!(annotation(&s).contains("\"gateway\""), "{}", annotation(&s));
        assert_eq!(parse_annotation("null").unwrap(), vec![]);
    }

    #[test]
    fn results_multus_cannot_read_fail_the_add() {
        let iface = json!([{"name": "net1", "sandbox": "/x"}]);
        for (result, want) in [
            (json!([]), "is not a JSON object"),
            (
                json!({"cniVersion": "1.0.0", "interfaces": iface, "ips": [{"address": "10.0.0.300/24"}]}),
                "not a CIDR",
            ),
            (
                json!({"cniVersion": "1.0.0", "interfaces": iface, "ips": [{"address": "10.0.0.3"}]}),
                "not a CIDR",
            ),
            (
                json!({"cniVersion": "1.0.0", "interfaces": iface, "routes": [{"dst": null, "gw": "10.0.0.1"}]}),
                "not a CIDR",
            ),
            (
                json!({"cniVersion": "1.0.0", "interfaces": iface, "routes": [{"dst": "0.0.0.0/0", "gw": "x"}]}),
                "not an IP",
            ),
            (
                json!({"cniVersion": "1.0.0", "interfaces": "net1"}),
                "not a list",
            ),
            (
                json!({"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "mtu": "big"}]}),
                "mtu",
            ),
            (
                json!({"cniVersion": "1.0.0", "dns": {"nameservers": "10.0.0.1"}}),
                "dns",
            ),
        ] {
            let e = from_result("ns/n", &result, false, None)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("network ns/n: the CNI result "), "{e}");
            assert!(e.contains(want), "{result}: {e}");
        }
    }
}
