//! CNI results, written in the shape of the requested spec version.

use serde_json::{Map, Value, json};

use crate::version::SpecVersion;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpConfig {
    /// CIDR, e.g. `10.1.0.5/24`.
    pub address: String,
    pub gateway: Option<String>,
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Value>,
    pub dns: Option<Value>,
}

impl CniResult {
    /// The result as JSON for `version` (0.3.0 and later): `mtu` only from 1.0.0,
    /// `ips[].version` only before 1.0.0.
    pub fn to_json(&self, version: SpecVersion) -> Value {
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version.as_str()));
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut o = Map::new();
                o.insert("name".into(), json!(i.name));
                if let Some(mac) = &i.mac {
                    o.insert("mac".into(), json!(mac));
                }
                if let (Some(mtu), true) = (i.mtu, version.is_v1()) {
                    o.insert("mtu".into(), json!(mtu));
                }
                if let Some(sandbox) = &i.sandbox {
                    o.insert("sandbox".into(), json!(sandbox));
                }
                Value::Object(o)
            })
            .collect();
        out.insert("interfaces".into(), Value::Array(interfaces));
        if !self.ips.is_empty() {
            let ips = self
                .ips
                .iter()
                .map(|ip| {
                    let mut o = Map::new();
                    if !version.is_v1() {
                        let family = if ip.address.contains(':') { "6" } else { "4" };
                        o.insert("version".into(), json!(family));
                    }
                    o.insert("address".into(), json!(ip.address));
                    if let Some(gw) = &ip.gateway {
                        o.insert("gateway".into(), json!(gw));
                    }
                    if let Some(idx) = ip.interface {
                        o.insert("interface".into(), json!(idx));
                    }
                    Value::Object(o)
                })
                .collect();
            out.insert("ips".into(), Value::Array(ips));
        }
        if !self.routes.is_empty() {
            out.insert("routes".into(), Value::Array(self.routes.clone()));
        }
        if let Some(dns) = &self.dns {
            out.insert("dns".into(), dns.clone());
        }
        Value::Object(out)
    }

    /// Reads a result of any version ≥ 0.3.0 (e.g. a `prevResult`), ignoring what
    /// it does not model.
    pub fn from_json(value: &Value) -> CniResult {
        let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let interfaces = value
            .get("interfaces")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|i| Interface {
                        name: str_of(i, "name").unwrap_or_default(),
                        mac: str_of(i, "mac"),
                        mtu: i.get("mtu").and_then(Value::as_u64).map(|m| m as u32),
                        sandbox: str_of(i, "sandbox"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ips = value
            .get("ips")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|ip| IpConfig {
                        address: str_of(ip, "address").unwrap_or_default(),
                        gateway: str_of(ip, "gateway"),
                        interface: ip
                            .get("interface")
                            .and_then(Value::as_u64)
                            .map(|x| x as usize),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let routes = value
            .get("routes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        CniResult {
            interfaces,
            ips,
            routes,
            dns: value.get("dns").cloned(),
        }
    }
}

/// What CHECK compares against: the prevResult and its interface `ifname` inside
/// the sandbox. Errors say what the runtime must pass.
pub fn check_input(
    prev: Option<&Value>,
    ifname: &str,
) -> Result<(CniResult, Interface), crate::CniError> {
    let prev = prev.ok_or_else(|| {
        crate::CniError::invalid_config("CHECK needs prevResult")
            .with_details("the runtime must pass the ADD result as prevResult")
    })?;
    let prev = CniResult::from_json(prev);
    let expected = prev
        .interfaces
        .iter()
        .find(|i| i.name == ifname && i.sandbox.is_some())
        .cloned()
        .ok_or_else(|| {
            crate::CniError::invalid_config(format!(
                "prevResult has no interface {ifname} with a sandbox"
            ))
            .with_details("pass the result of ADD for this CNI_IFNAME as prevResult")
        })?;
    Ok((prev, expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "net1".into(),
                mac: Some("02:00:00:00:00:01".into()),
                mtu: Some(1400),
                sandbox: Some("/run/netns/x".into()),
            }],
            ips: vec![IpConfig {
                address: "10.0.0.2/24".into(),
                gateway: None,
                interface: Some(0),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn v1_has_mtu_and_no_ip_version() {
        let v = sample().to_json(SpecVersion::V1_0_0);
        assert_eq!(v["interfaces"][0]["mtu"], 1400);
        assert!(v["ips"][0].get("version").is_none());
    }

    #[test]
    fn v04_has_ip_version_and_no_mtu() {
        let v = sample().to_json(SpecVersion::V0_4_0);
        assert!(v["interfaces"][0].get("mtu").is_none());
        assert_eq!(v["ips"][0]["version"], "4");
        assert_eq!(v["cniVersion"], "0.4.0");
    }

    #[test]
    fn round_trips_through_json() {
        let r = sample();
        assert_eq!(CniResult::from_json(&r.to_json(SpecVersion::V1_1_0)), r);
    }
}
