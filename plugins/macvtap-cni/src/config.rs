//! The network configuration and per-invocation arguments, validated up front so that
//! every mistake is reported before anything is touched.

use cni_kit::args::CniArgs;
use cni_kit::invocation::decode;
use cni_kit::policy::Policy;
use cni_kit::{CniError, Invocation, MacAddr};
use serde::Deserialize;
use serde_json::Value;

/// KubeVirt's qemu user and group: the default owner of `/dev/tapN`, as upstream.
pub const DEFAULT_OWNER: u32 = 107;

#[derive(Debug, Deserialize, Default)]
struct RawConf {
    #[serde(default)]
    name: String,
    #[serde(rename = "deviceID")]
    device_id: Option<String>,
    mtu: Option<i64>,
    #[serde(rename = "promiscMode")]
    promisc_mode: Option<bool>,
    owner: Option<i64>,
    group: Option<i64>,
    master: Option<String>,
    mode: Option<String>,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: RawRuntimeConfig,
    #[serde(default)]
    args: Option<RawArgs>,
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
}

#[derive(Debug, Deserialize, Default)]
struct RawRuntimeConfig {
    mac: Option<String>,
    #[serde(rename = "deviceID")]
    device_id: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct RawArgs {
    #[serde(default)]
    cni: Option<RawCniArgs>,
}

#[derive(Debug, Deserialize, Default)]
struct RawCniArgs {
    mac: Option<String>,
}

/// Where the macvtap comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Created by the device plugin in the host namespace for this device ID.
    Device(String),
    /// Created by this plugin on `master`.
    Standalone { master: String, mode: MacvtapMode },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvtapMode {
    Private,
    Vepa,
    Bridge,
    Passthru,
}

impl MacvtapMode {
    pub fn parse(s: &str) -> Option<MacvtapMode> {
        Some(match s {
            "" | "bridge" => MacvtapMode::Bridge,
            "private" => MacvtapMode::Private,
            "vepa" => MacvtapMode::Vepa,
            "passthru" => MacvtapMode::Passthru,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MacvtapMode::Bridge => "bridge",
            MacvtapMode::Private => "private",
            MacvtapMode::Vepa => "vepa",
            MacvtapMode::Passthru => "passthru",
        }
    }
}

/// The pod the runtime attaches, from CNI_ARGS `K8S_POD_NAMESPACE`/`K8S_POD_NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for PodName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A validated configuration for one invocation.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub name: String,
    pub source: Source,
    /// `None` outside Kubernetes (no pod name in CNI_ARGS).
    pub pod: Option<PodName>,
    pub mtu: Option<u32>,
    pub promisc: bool,
    pub owner: u32,
    pub group: u32,
    pub mac: Option<MacAddr>,
    pub prev_result: Option<Value>,
}

fn id_field(value: Option<i64>, field: &str) -> Result<u32, CniError> {
    match value {
        None => Ok(DEFAULT_OWNER),
        Some(v) => u32::try_from(v).map_err(|_| {
            CniError::invalid_config(format!("{field} {v} is not a valid user/group id"))
                .with_details(format!("set \"{field}\" to a number between 0 and 4294967295, or leave it out for {DEFAULT_OWNER}"))
        }),
    }
}

impl NetConf {
    pub fn parse(inv: &Invocation) -> Result<NetConf, CniError> {
        let raw: RawConf = decode(&inv.config, "macvtap network configuration")?;
        let device_id = raw
            .device_id
            .filter(|s| !s.is_empty())
            .or(raw.runtime_config.device_id.filter(|s| !s.is_empty()));
        let source = match (device_id, raw.master) {
            (Some(id), _) => Source::Device(id),
            (None, Some(master)) if !master.is_empty() => {
                let mode_text = raw.mode.unwrap_or_default();
                let mode = MacvtapMode::parse(&mode_text).ok_or_else(|| {
                    CniError::invalid_config(format!("unknown macvtap mode \"{mode_text}\""))
                        .with_details("set \"mode\" to bridge, private, vepa or passthru")
                })?;
                Source::Standalone { master, mode }
            }
            _ => {
                return Err(
                    CniError::invalid_config("deviceID is required").with_details(
                        "the macvtap device plugin provides it through multus (request the \
                     NAD's resourceName in the pod), or set \"master\" (and \"mode\") to let \
                     this plugin create the macvtap itself",
                    ),
                );
            }
        };
        let mtu = match raw.mtu {
            None | Some(0) => None,
            Some(m) if (68..=65535).contains(&m) => Some(m as u32),
            Some(m) => {
                return Err(CniError::invalid_config(format!("mtu {m} is out of range"))
                    .with_details(
                        "set \"mtu\" between 68 and 65535, or 0 to keep the lower device's",
                    ));
            }
        };
        let cni_args = CniArgs::parse(&inv.args, &["MAC"])?;
        let args_cni_mac = raw.args.and_then(|a| a.cni).and_then(|c| c.mac);
        let mac = cni_kit::failure::mac_from_sources(
            raw.runtime_config.mac.as_deref(),
            args_cni_mac.as_deref(),
            cni_args.get("MAC"),
        )?;
        let pod = match (
            cni_args.get("K8S_POD_NAMESPACE"),
            cni_args.get("K8S_POD_NAME"),
        ) {
            (Some(namespace), Some(name)) if !namespace.is_empty() && !name.is_empty() => {
                Some(PodName {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            }
            _ => None,
        };
        Ok(NetConf {
            name: raw.name,
            source,
            pod,
            mtu,
            promisc: raw.promisc_mode.unwrap_or(false),
            owner: id_field(raw.owner, "owner")?,
            group: id_field(raw.group, "group")?,
            mac,
            prev_result: raw.prev_result,
        })
    }
}

impl NetConf {
    /// What the node's policy must allow before ADD touches anything: standalone
    /// mode (master and mode) and the owner and group of `/dev/tapN`. Checked before
    /// any lookup, so a refusal says nothing about the node's links.
    pub fn authorize(&self, policy: &Policy) -> Result<(), CniError> {
        let p = &policy.macvtap;
        if let Source::Standalone { master, mode } = &self.source {
            if !p.standalone_masters.iter().any(|m| m == master) {
                return Err(policy.refuse(
                    format!("standalone mode on master \"{master}\""),
                    "macvtap",
                    "standalone_masters",
                ));
            }
            if !p.standalone_modes.iter().any(|m| m == mode.as_str()) {
                return Err(policy.refuse(
                    format!("macvtap mode \"{}\"", mode.as_str()),
                    "macvtap",
                    "standalone_modes",
                ));
            }
        }
        if !p.tap_owners.contains(&self.owner) {
            return Err(policy.refuse(format!("owner {}", self.owner), "macvtap", "tap_owners"));
        }
        if !p.tap_groups.contains(&self.group) {
            return Err(policy.refuse(format!("group {}", self.group), "macvtap", "tap_groups"));
        }
        if let Some(mac) = self.mac {
            policy.check_mac(mac)?;
        }
        Ok(())
    }
}

/// What DEL uses of the configuration, read leniently: DEL must succeed whatever
/// else ADD would have refused (a bad MAC, mode, MTU or owner, a missing deviceID).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelConf {
    /// The device ID, for the names an interrupted ADD may have left in the pod.
    pub device_id: Option<String>,
}

impl DelConf {
    pub fn parse(inv: &Invocation) -> DelConf {
        let v: Value = serde_json::from_slice(&inv.config).unwrap_or(Value::Null);
        let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
        DelConf {
            device_id: text(&v["deviceID"]).or_else(|| text(&v["runtimeConfig"]["deviceID"])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cni_kit::ErrorCode;

    fn inv(config: &str, args: &str) -> Invocation {
        Invocation::add_for_test(config.as_bytes(), args)
    }

    #[test]
    fn device_id_mode_with_defaults() {
        let c = NetConf::parse(&inv(
            r#"{"cniVersion":"1.0.0","name":"n","type":"macvtap","deviceID":"eth0Mvp0"}"#,
            "",
        ))
        .unwrap();
        assert_eq!(c.source, Source::Device("eth0Mvp0".into()));
        assert_eq!((c.owner, c.group), (107, 107));
        assert_eq!(c.mtu, None);
        assert!(!c.promisc);
    }

    #[test]
    fn pod_comes_from_cni_args_when_both_parts_are_there() {
        let conf = r#"{"cniVersion":"1.0.0","name":"n","deviceID":"d"}"#;
        let c = NetConf::parse(&inv(
            conf,
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=vm-a;K8S_POD_UID=u",
        ))
        .unwrap();
        assert_eq!(c.pod.unwrap().to_string(), "ns/vm-a");
        assert_eq!(
            NetConf::parse(&inv(conf, "K8S_POD_NAME=vm-a")).unwrap().pod,
            None
        );
        assert_eq!(NetConf::parse(&inv(conf, "")).unwrap().pod, None);
    }

    #[test]
    fn runtime_config_device_id_is_accepted() {
        let c = NetConf::parse(&inv(
            r#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"deviceID":"x"}}"#,
            "",
        ))
        .unwrap();
        assert_eq!(c.source, Source::Device("x".into()));
    }

    #[test]
    fn standalone_mode_needs_valid_mode() {
        let c = NetConf::parse(&inv(
            r#"{"cniVersion":"1.0.0","name":"n","master":"ens33","mode":"vepa"}"#,
            "",
        ))
        .unwrap();
        assert_eq!(
            c.source,
            Source::Standalone {
                master: "ens33".into(),
                mode: MacvtapMode::Vepa
            }
        );
        let e = NetConf::parse(&inv(
            r#"{"cniVersion":"1.0.0","name":"n","master":"ens33","mode":"brige"}"#,
            "",
        ))
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.msg.contains("brige") && e.details.contains("bridge"));
    }

    #[test]
    fn missing_device_id_names_both_fixes() {
        let e = NetConf::parse(&inv(r#"{"cniVersion":"1.0.0","name":"n"}"#, "")).unwrap_err();
        assert_eq!(e.msg, "deviceID is required");
        assert!(e.details.contains("master"));
    }

    #[test]
    fn mac_precedence_runtime_config_then_args_then_cni_args() {
        let base = r#""cniVersion":"1.0.0","name":"n","deviceID":"d""#;
        let c = NetConf::parse(&inv(&format!(r#"{{{base},"runtimeConfig":{{"mac":"02:00:00:00:00:01"}},"args":{{"cni":{{"mac":"02:00:00:00:00:02"}}}}}}"#), "MAC=02:00:00:00:00:03")).unwrap();
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:01");
        let c = NetConf::parse(&inv(
            &format!(r#"{{{base},"args":{{"cni":{{"mac":"02:00:00:00:00:02"}}}}}}"#),
            "MAC=02:00:00:00:00:03",
        ))
        .unwrap();
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:02");
        let c = NetConf::parse(&inv(&format!("{{{base}}}"), "MAC=02:00:00:00:00:03")).unwrap();
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:03");
    }

    #[test]
    fn bad_macs_are_refused_with_origin() {
        let base = r#""cniVersion":"1.0.0","name":"n","deviceID":"d""#;
        let e = NetConf::parse(&inv(&format!("{{{base}}}"), "MAC=zz")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        assert!(e.msg.starts_with("CNI_ARGS MAC"));
        let e = NetConf::parse(&inv(
            &format!(r#"{{{base},"runtimeConfig":{{"mac":"01:00:5e:00:00:01"}}}}"#),
            "",
        ))
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.msg.contains("unicast"));
    }

    #[test]
    fn mtu_and_ids_are_range_checked() {
        let e = NetConf::parse(&inv(
            r#"{"cniVersion":"1.0.0","name":"n","deviceID":"d","mtu":70000}"#,
            "",
        ))
        .unwrap_err();
        assert!(e.msg.contains("mtu 70000"));
        let e = NetConf::parse(&inv(
            r#"{"cniVersion":"1.0.0","name":"n","deviceID":"d","owner":-1}"#,
            "",
        ))
        .unwrap_err();
        assert!(e.msg.contains("owner -1"));
        let c = NetConf::parse(&inv(
            r#"{"cniVersion":"1.0.0","name":"n","deviceID":"d","mtu":0,"owner":0,"group":5}"#,
            "",
        ))
        .unwrap();
        assert_eq!((c.mtu, c.owner, c.group), (None, 0, 5));
    }

    #[test]
    fn wrong_types_are_config_errors() {
        let e = NetConf::parse(&inv(
            r#"{"cniVersion":"1.0.0","name":"n","deviceID":"d","mtu":"1500"}"#,
            "",
        ))
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.msg.contains("line 1"), "{}", e.msg);
    }

    fn policy(text: &str) -> Policy {
        Policy::parse(text, std::path::Path::new("/test/plugins.conf")).unwrap()
    }

    #[test]
    fn standalone_mode_needs_the_node_policy() {
        let c = NetConf::parse(&inv(
            r#"{"cniVersion":"1.0.0","name":"n","master":"ens33","mode":"passthru"}"#,
            "",
        ))
        .unwrap();
        let e = c.authorize(&Policy::default()).unwrap_err();
        assert!(e.msg.contains("[macvtap] standalone_masters"), "{}", e.msg);
        let e = c
            .authorize(&policy("[macvtap]\nstandalone_masters = ens33\n"))
            .unwrap_err();
        assert!(e.msg.contains("\"passthru\"") && e.msg.contains("standalone_modes"));
        c.authorize(&policy(
            "[macvtap]\nstandalone_masters = ens33\nstandalone_modes = passthru\n",
        ))
        .unwrap();
    }

    #[test]
    fn tap_owner_and_group_need_the_node_policy() {
        let c = NetConf::parse(&inv(
            r#"{"cniVersion":"1.0.0","name":"n","deviceID":"d","owner":0,"group":6}"#,
            "",
        ))
        .unwrap();
        let e = c.authorize(&Policy::default()).unwrap_err();
        assert!(e.msg.contains("owner 0") && e.msg.contains("tap_owners"));
        let e = c
            .authorize(&policy("[macvtap]\ntap_owners = 0\n"))
            .unwrap_err();
        assert!(e.msg.contains("group 6") && e.msg.contains("tap_groups"));
        c.authorize(&policy("[macvtap]\ntap_owners = 0\ntap_groups = 6\n"))
            .unwrap();
        let default = NetConf::parse(&inv(r#"{"cniVersion":"1.0.0","deviceID":"d"}"#, "")).unwrap();
        default.authorize(&Policy::default()).unwrap();
    }

    #[test]
    fn del_reads_only_the_device_id() {
        let d = DelConf::parse(&inv(
            r#"{"cniVersion":"1.0.0","mode":"bogus","mtu":"x","owner":-1,"runtimeConfig":{"mac":"zz","deviceID":"d1"}}"#,
            "MAC=bad;FOO=1",
        ));
        assert_eq!(d.device_id.as_deref(), Some("d1"));
        assert_eq!(DelConf::parse(&inv("{}", "")), DelConf::default());
    }

    #[test]
    fn unknown_cni_args_need_ignore_unknown() {
        let cfg = r#"{"cniVersion":"1.0.0","name":"n","deviceID":"d"}"#;
        assert!(NetConf::parse(&inv(cfg, "FOO=bar")).is_err());
        assert!(NetConf::parse(&inv(cfg, "FOO=bar;IgnoreUnknown=1")).is_ok());
    }
}
