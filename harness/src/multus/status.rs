//! The network-status annotation (`k8s.v1.cni.cncf.io/network-status`), in the
//! shape multus writes it (network-attachment-definition-client's
//! `NetworkStatus`): a JSON list, indented with four spaces.

use std::net::IpAddr;

use cni_kit::result::CniResult;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::MultusError;

/// One attachment of the pod, as multus reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// `ns/name` of the NAD (the cluster network's name for the default one).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Addresses without prefix length.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// Multus always writes this (`{}` when the result has no DNS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Value>,
    #[serde(
        rename = "device-info",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_info: Option<Value>,
    /// Gateways of the result's default routes (`default-route`).
    #[serde(
        rename = "default-route",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub gateway: Vec<String>,
}

/// The status of one delegate from the result of its last plugin (any version
/// 0.3.0+).
///
/// The interface is the result's sandbox interface named `ifname`, else the first
/// one with a sandbox; its IPs are those whose `interface` index points at it plus
/// those without an index (multus gives unindexed IPs to the pod interface); with
/// no sandbox interface at all, every IP is listed.
///
/// `device-info` is left out: multus copies it from a device-info file written by
/// the device plugin or the CNI plugin (SR-IOV/vDPA/vhost-user), and neither
/// macvtap nor ovs-cni writes one, so `device_id` is not enough to invent one.
pub fn from_result(
    network: &str,
    ifname: &str,
    result: &Value,
    default: bool,
    device_id: Option<&str>,
) -> NetworkStatus {
    let _ = device_id;
    let r = CniResult::from_json(result);
    let chosen = r
        .interfaces
        .iter()
        .position(|i| i.sandbox.as_deref().is_some_and(|s| !s.is_empty()) && i.name == ifname)
        .or_else(|| {
            r.interfaces
                .iter()
                .position(|i| i.sandbox.as_deref().is_some_and(|s| !s.is_empty()))
        });
    let ips = r
        .ips
        .iter()
        .filter(|ip| match (chosen, ip.interface) {
            (Some(c), Some(idx)) => idx == c,
            _ => true,
        })
        .map(|ip| strip_prefix(&ip.address))
        .collect();
    let iface = chosen.map(|c| &r.interfaces[c]);
    let gateway = r
        .routes
        .iter()
        .filter(|route| {
            route
                .get("dst")
                .and_then(Value::as_str)
                .is_some_and(|d| d == "0.0.0.0/0" || d == "::/0")
        })
        .filter_map(|route| route.get("gw").and_then(Value::as_str))
        .map(strip_prefix)
        .collect();
    NetworkStatus {
        name: network.to_string(),
        interface: iface.map(|i| i.name.clone()),
        ips,
        mac: iface.and_then(|i| i.mac.clone()).filter(|m| !m.is_empty()),
        mtu: iface.and_then(|i| i.mtu).filter(|m| *m != 0),
        default,
        dns: Some(dns(r.dns.as_ref())),
        device_info: None,
        gateway,
    }
}

/// The annotation value: a JSON list, four-space indented like multus.
pub fn annotation(statuses: &[NetworkStatus]) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    statuses
        .serialize(&mut ser)
        .expect("network status serializes");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Reads an annotation written by multus (or by [`annotation`]).
pub fn parse_annotation(text: &str) -> Result<Vec<NetworkStatus>, MultusError> {
    serde_json::from_str(text).map_err(|e| MultusError::Status {
        problem: format!("is not a JSON list of network statuses ({e})"),
        fix: "expected [{\"name\": \"ns/nad\", \"interface\": \"net1\", ...}]".into(),
    })
}

/// `10.1.1.5/24` → `10.1.1.5`, canonical form as Go's `IP.String()` prints it.
fn strip_prefix(address: &str) -> String {
    let addr = address.split('/').next().unwrap_or(address);
    addr.parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|_| addr.to_string())
}

/// The result's DNS in multus' shape: only non-empty `nameservers`, `domain`,
/// `search`, `options`.
fn dns(value: Option<&Value>) -> Value {
    let mut out = Map::new();
    if let Some(Value::Object(d)) = value {
        for key in ["nameservers", "domain", "search", "options"] {
            match d.get(key) {
                Some(Value::String(s)) if !s.is_empty() => {
                    out.insert(key.into(), json!(s));
                }
                Some(Value::Array(a)) if !a.is_empty() => {
                    out.insert(key.into(), Value::Array(a.clone()));
                }
                _ => {}
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result_031() -> Value {
        json!({
            "cniVersion": "0.3.1",
            "interfaces": [
                {"name": "net1", "mac": "02:23:45:67:89:01", "sandbox": "/var/run/netns/p"}
            ],
            "ips": [{"version": "4", "address": "10.1.1.5/24", "gateway": "10.1.1.1", "interface": 0}],
            "dns": {}
        })
    }

    fn result_100() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "veth1234abcd", "mac": "0a:00:00:00:00:01"},
                {"name": "net2", "mac": "0a:58:0a:02:00:05", "mtu": 1400, "sandbox": "/run/netns/p"}
            ],
            "ips": [
                {"address": "10.2.0.5/24", "gateway": "10.2.0.1", "interface": 1},
                {"address": "fd00:0:0::5/64", "interface": 1},
                {"address": "192.168.9.9/24", "interface": 0}
            ],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.2.0.1"}, {"dst": "10.9.0.0/16", "gw": "10.2.0.2"}],
            "dns": {"nameservers": ["10.2.0.1"], "domain": "", "search": []}
        })
    }

    #[test]
    fn from_results_of_each_version() {
        let cases: Vec<(&str, Value, &str, NetworkStatus)> = vec![
            (
                "0.3.1 macvtap",
                result_031(),
                "net1",
                NetworkStatus {
                    name: "default/dataplane".into(),
                    interface: Some("net1".into()),
                    ips: vec!["10.1.1.5".into()],
                    mac: Some("02:23:45:67:89:01".into()),
                    dns: Some(json!({})),
                    ..Default::default()
                },
            ),
            (
                "1.0.0 ovs with host veth",
                result_100(),
                "net2",
                NetworkStatus {
                    name: "default/dataplane".into(),
                    interface: Some("net2".into()),
                    ips: vec!["10.2.0.5".into(), "fd00::5".into()],
                    mac: Some("0a:58:0a:02:00:05".into()),
                    mtu: Some(1400),
                    dns: Some(json!({"nameservers": ["10.2.0.1"]})),
                    gateway: vec!["10.2.0.1".into()],
                    ..Default::default()
                },
            ),
            (
                "ifname not in result: first sandbox interface",
                result_100(),
                "eth7",
                NetworkStatus {
                    name: "default/dataplane".into(),
                    interface: Some("net2".into()),
                    ips: vec!["10.2.0.5".into(), "fd00::5".into()],
                    mac: Some("0a:58:0a:02:00:05".into()),
                    mtu: Some(1400),
                    dns: Some(json!({"nameservers": ["10.2.0.1"]})),
                    gateway: vec!["10.2.0.1".into()],
                    ..Default::default()
                },
            ),
            (
                "IPAM-only result: all ips, no interface",
                json!({"cniVersion": "1.0.0", "ips": [{"address": "10.3.0.2/16"}]}),
                "net1",
                NetworkStatus {
                    name: "default/dataplane".into(),
                    ips: vec!["10.3.0.2".into()],
                    dns: Some(json!({})),
                    ..Default::default()
                },
            ),
        ];
        for (what, result, ifname, want) in cases {
            let got = from_result("default/dataplane", ifname, &result, false, Some("dev"));
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn picks_named_sandbox_interface_and_unindexed_ips() {
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "a", "sandbox": "/x", "mac": "02:00:00:00:00:0a"},
                {"name": "b", "sandbox": "/x", "mac": "02:00:00:00:00:0b"}
            ],
            "ips": [{"address": "10.0.0.1/8", "interface": 0}, {"address": "10.0.0.2/8", "interface": 1},
                    {"address": "10.0.0.3/8"}]
        });
        let s = from_result("n/x", "b", &r, true, None);
        assert_eq!(s.interface.as_deref(), Some("b"));
        assert_eq!(s.mac.as_deref(), Some("02:00:00:00:00:0b"));
        assert_eq!(s.ips, vec!["10.0.0.2", "10.0.0.3"]);
        assert!(s.default);
    }

    #[test]
    fn annotation_shape_and_round_trip() {
        let statuses = vec![
            NetworkStatus {
                name: "cbr0".into(),
                interface: Some("eth0".into()),
                ips: vec!["10.244.1.6".into()],
                mac: Some("2e:00:00:00:00:01".into()),
                default: true,
                dns: Some(json!({})),
                ..Default::default()
            },
            from_result("default/dataplane", "net1", &result_031(), false, None),
        ];
        let text = annotation(&statuses);
        let want = r#"[
    {
        "name": "cbr0",
        "interface": "eth0",
        "ips": [
            "10.244.1.6"
        ],
        "mac": "2e:00:00:00:00:01",
        "default": true,
        "dns": {}
    },
    {
        "name": "default/dataplane",
        "interface": "net1",
        "ips": [
            "10.1.1.5"
        ],
        "mac": "02:23:45:67:89:01",
        "dns": {}
    }
]"#;
        assert_eq!(text, want);
        assert_eq!(parse_annotation(&text).unwrap(), statuses);
    }

    #[test]
    fn parses_multus_written_annotation() {
        let text = r#"[{"name":"ns/ovs","interface":"net1","ips":["10.0.0.2"],"mac":"0a:58:0a:00:00:02",
            "mtu":1400,"dns":{},"device-info":{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:00.1"}},
            "default-route":["10.0.0.1"],"unknown":1}]"#;
        let s = parse_annotation(text).unwrap();
        assert_eq!(s[0].mtu, Some(1400));
        assert_eq!(s[0].device_info.as_ref().unwrap()["type"], "pci");
        assert_eq!(s[0].gateway, vec!["10.0.0.1"]);
        assert!(!s[0].default);
        for bad in [
            "",
            "{}",
            "[{\"interface\":\"x\"}]",
            "[{\"name\":\"a\",\"mtu\":\"big\"}]",
        ] {
            let e = parse_annotation(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("k8s.v1.cni.cncf.io/network-status: is not a JSON list"),
                "{bad}: {e}"
            );
        }
    }
}
