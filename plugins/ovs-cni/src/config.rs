//! The network configuration and per-invocation arguments, validated up front so that
//! every mistake is reported before anything is touched.

use std::collections::BTreeSet;
use std::path::PathBuf;

use cni_kit::args::CniArgs;
use cni_kit::invocation::decode;
use cni_kit::policy::Policy;
use cni_kit::{CniError, ErrorCode, Invocation, MacAddr};
use serde::Deserialize;
use serde_json::Value;

use crate::ovsdb::socket_path;

/// Where ovsdb-server listens on a node with Open vSwitch installed.
pub const DEFAULT_SOCKET: &str = "unix:/var/run/openvswitch/db.sock";

#[derive(Debug, Deserialize, Default)]
struct RawConf {
    #[serde(default)]
    name: String,
    #[serde(default)]
    bridge: Option<String>,
    vlan: Option<i64>,
    trunk: Option<Vec<RawTrunk>>,
    mtu: Option<i64>,
    socket_file: Option<String>,
    ipam: Option<Value>,
    ofport_request: Option<i64>,
    interface_type: Option<String>,
    #[serde(rename = "deviceID")]
    device_id: Option<String>,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: RawRuntimeConfig,
    #[serde(default)]
    args: Option<RawArgs>,
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<RawAttachment>>,
}

#[derive(Debug, Deserialize, Default)]
struct RawTrunk {
    id: Option<i64>,
    #[serde(rename = "minID")]
    min_id: Option<i64>,
    #[serde(rename = "maxID")]
    max_id: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
struct RawRuntimeConfig {
    mac: Option<String>,
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

#[derive(Debug, Deserialize)]
struct RawAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// How the port carries VLANs (OVS `vlan_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanMode {
    /// `vlan` only: untagged on the veth, tagged `vlan` on the bridge.
    Access,
    /// `trunk` only: the listed VLANs tagged.
    Trunk,
    /// Both: `vlan` untagged (native), the trunk VLANs tagged.
    NativeUntagged,
}

impl VlanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VlanMode::Access => "access",
            VlanMode::Trunk => "trunk",
            VlanMode::NativeUntagged => "native-untagged",
        }
    }
}

/// The MTU the kernel gives a veth when the configuration has no `mtu`.
pub const DEFAULT_VETH_MTU: u32 = 1500;

/// A validated configuration for one invocation.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub name: String,
    pub bridge: String,
    pub vlan: Option<u16>,
    /// The `trunk` entries as written (`id` as a one-VLAN range), each checked;
    /// expanded only by [`NetConf::trunks`], after the policy has seen them.
    pub trunk_ranges: Vec<(u16, u16)>,
    pub mtu: Option<u32>,
    pub socket: PathBuf,
    /// The `ipam` section with its plugin `type`.
    pub ipam: Option<(String, Value)>,
    pub ofport_request: Option<u16>,
    pub mac: Option<MacAddr>,
    pub pod_uid: Option<String>,
    pub prev_result: Option<Value>,
    /// GC: attachments that must be kept (`cni.dev/valid-attachments`).
    pub valid_attachments: Option<BTreeSet<(String, String)>>,
    /// The configuration as received (cached for DEL).
    pub raw: Value,
}

impl NetConf {
    pub fn vlan_mode(&self) -> Option<VlanMode> {
        match (self.vlan, self.trunk_ranges.is_empty()) {
            (Some(_), true) => Some(VlanMode::Access),
            (None, false) => Some(VlanMode::Trunk),
            (Some(_), false) => Some(VlanMode::NativeUntagged),
            (None, true) => None,
        }
    }

    /// The tagged VLANs of a trunk port, sorted, no duplicates: the ranges merged
    /// (sorting them first), so a long list of overlapping ranges costs no more than
    /// the 4094 VLANs it can name.
    pub fn trunks(&self) -> Vec<u16> {
        let mut ranges = self.trunk_ranges.clone();
        ranges.sort_unstable();
        let mut out: Vec<u16> = Vec::new();
        for (lo, hi) in ranges {
            let start = match out.last() {
                Some(&last) if last >= hi => continue,
                Some(&last) if last >= lo => last + 1,
                _ => lo,
            };
            out.extend(start..=hi);
        }
        out
    }
}

fn vlan_id(value: i64, field: &str) -> Result<u16, CniError> {
    if (1..=4094).contains(&value) {
        Ok(value as u16)
    } else {
        Err(
            CniError::invalid_config(format!("{field} {value} is not a valid VLAN id"))
                .with_details(format!(
                    "VLAN ids are 1 to 4094 (0 and 4095 are reserved by 802.1Q); {}",
                    if field == "vlan" {
                        "leave \"vlan\" out for a port without an access tag"
                    } else {
                        "fix the trunk entry"
                    }
                )),
        )
    }
}

fn parse_trunks(raw: &[RawTrunk]) -> Result<Vec<(u16, u16)>, CniError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        match (t.id, t.min_id, t.max_id) {
            (Some(id), None, None) => {
                let id = vlan_id(id, &format!("trunk[{i}].id"))?;
                out.push((id, id));
            }
            (None, Some(min), Some(max)) => {
                let lo = vlan_id(min, &format!("trunk[{i}].minID"))?;
                let hi = vlan_id(max, &format!("trunk[{i}].maxID"))?;
                if lo > hi {
                    return Err(CniError::invalid_config(format!(
                        "trunk[{i}]: minID {lo} is greater than maxID {hi}"
                    ))
                    .with_details("swap them or use {\"id\": N} for a single VLAN"));
                }
                out.push((lo, hi));
            }
            _ => {
                return Err(CniError::invalid_config(format!(
                    "trunk[{i}] must have either \"id\" or both \"minID\" and \"maxID\""
                ))
                .with_details("e.g. \"trunk\": [{\"id\": 42}, {\"minID\": 100, \"maxID\": 200}]"));
            }
        }
    }
    Ok(out)
}

fn parse_socket(socket_file: Option<String>) -> Result<PathBuf, CniError> {
    let socket_text = socket_file
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SOCKET.to_string());
    socket_path(&socket_text).map_err(|m| {
        CniError::invalid_config(m).with_details(
            "set \"socket_file\" to ovsdb-server's Unix socket, e.g. unix:/var/run/openvswitch/db.sock",
        )
    })
}

/// Plugins that are not IPAM plugins: an `ipam.type` naming one of them (or this
/// plugin) would run a main plugin, or this one recursively, as root.
const NOT_IPAM: [&str; 18] = [
    "ovs",
    "macvtap",
    "bridge",
    "macvlan",
    "ipvlan",
    "ptp",
    "vlan",
    "host-device",
    "tuning",
    "portmap",
    "bandwidth",
    "firewall",
    "sbr",
    "vrf",
    "loopback",
    "multus",
    "dummy",
    "tap",
];

fn parse_ipam(ipam: Option<Value>) -> Result<Option<(String, Value)>, CniError> {
    let v = match ipam {
        None => return Ok(None),
        Some(v) if v.as_object().is_some_and(|o| o.is_empty()) => return Ok(None),
        Some(v) => v,
    };
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            CniError::invalid_config("ipam has no \"type\"")
                .with_details("name the IPAM plugin, e.g. \"ipam\": {\"type\": \"host-local\", …}")
        })?;
    if kind.contains('/') || kind == "." || kind == ".." {
        return Err(CniError::invalid_config(format!(
            "ipam type \"{kind}\" must be a plugin name, not a path"
        )));
    }
    if NOT_IPAM.contains(&kind) {
        return Err(CniError::invalid_config(format!(
            "ipam type \"{kind}\" is not an IPAM plugin"
        ))
        .with_details("use an IPAM plugin such as host-local, static, dhcp or whereabouts"));
    }
    Ok(Some((kind.to_string(), v)))
}

impl NetConf {
    /// What DEL and GC use, read leniently: the socket, the IPAM plugin (DEL hands
    /// the attachment back to it), the bridge and the valid attachments (GC). A bad
    /// `vlan`, `trunk`, `mtu` or MAC, which only ADD needs, does not fail them; a
    /// socket or IPAM type that ADD would have refused comes back empty (ADD never
    /// used them, so there is nothing to undo there).
    pub fn for_teardown(inv: &Invocation) -> NetConf {
        let v: Value = serde_json::from_slice(&inv.config).unwrap_or(Value::Null);
        let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
        let socket = parse_socket(text(&v["socket_file"])).unwrap_or_default();
        let ipam = parse_ipam(v.get("ipam").cloned().filter(|i| !i.is_null()))
            .ok()
            .flatten();
        let valid_attachments = v
            .get("cni.dev/valid-attachments")
            .and_then(|a| serde_json::from_value::<Vec<RawAttachment>>(a.clone()).ok())
            .map(|list| {
                list.into_iter()
                    .map(|a| (a.container_id, a.ifname))
                    .collect()
            });
        NetConf {
            name: text(&v["name"]).unwrap_or_default(),
            bridge: text(&v["bridge"]).unwrap_or_default(),
            vlan: None,
            trunk_ranges: Vec::new(),
            mtu: None,
            socket,
            ipam,
            ofport_request: None,
            mac: None,
            pod_uid: None,
            prev_result: None,
            valid_attachments,
            raw: v,
        }
    }

    /// What the node's policy must allow before ADD touches anything: the OVSDB
    /// socket, the bridge (when the policy lists them; otherwise ADD asks the bridge
    /// itself, see `crate::bridge`), the MTU floor, the access VLAN, and trunking (a
    /// `trunk` list, or no `vlan` at all, which makes the port carry every VLAN).
    /// Trunk entries are counted and checked as ranges, never expanded here. A
    /// requested MAC (runtimeConfig, `args`, CNI_ARGS) must pass the policy's `[mac]`
    /// ranges, as in the macvtap CNI: a pod must not take the LAN gateway's MAC.
    pub fn authorize(&self, policy: &Policy) -> Result<(), CniError> {
        authorize_socket(&self.socket, policy)?;
        if let Some(mac) = self.mac {
            policy.check_mac(mac)?;
        }
        let p = &policy.ovs;
        if let Some(bridges) = &p.bridges
            && !bridges.contains(&self.bridge)
        {
            return Err(policy.refuse(format!("bridge \"{}\"", self.bridge), "ovs", "bridges"));
        }
        // Without `mtu` the veth gets the kernel's default, which counts the same.
        let mtu = self.mtu.unwrap_or(DEFAULT_VETH_MTU);
        if p.min_mtu.is_some_and(|floor| mtu < floor) {
            return Err(policy.refuse(format!("mtu {mtu}"), "ovs", "min_mtu"));
        }
        if let (Some(vlans), Some(vlan)) = (&p.vlans, self.vlan)
            && !vlans.contains(&vlan)
        {
            return Err(policy.refuse(format!("vlan {vlan}"), "ovs", "vlans"));
        }
        if !p.trunk {
            if !self.trunk_ranges.is_empty() {
                return Err(policy.refuse("a trunk port", "ovs", "trunk"));
            }
            if self.vlan.is_none() {
                return Err(policy.refuse(
                    "a port without \"vlan\" (it would carry every VLAN of the bridge)",
                    "ovs",
                    "trunk",
                ));
            }
        }
        if self.trunk_ranges.len() > p.max_trunk_entries {
            return Err(policy.refuse(
                format!("a trunk list of {} entries", self.trunk_ranges.len()),
                "ovs",
                "max_trunk_entries",
            ));
        }
        if let Some(vlans) = &p.vlans {
            for &(lo, hi) in &self.trunk_ranges {
                // Ranges are within 1-4094 and there are few of them (checked above).
                if let Some(t) = (lo..=hi).find(|t| !vlans.contains(t)) {
                    return Err(policy.refuse(format!("trunk VLAN {t}"), "ovs", "vlans"));
                }
            }
        }
        Ok(())
    }
}

/// The socket must be one the node's policy lists, written the same way; checked
/// before the plugin looks at the file system, so a refusal says nothing about
/// which paths exist.
pub fn authorize_socket(socket: &std::path::Path, policy: &Policy) -> Result<(), CniError> {
    let text = socket.to_string_lossy();
    if !cni_kit::policy::is_plain_absolute(&text) || !policy.ovs.sockets.iter().any(|s| s == socket)
    {
        return Err(policy.refuse(format!("socket_file \"{text}\""), "ovs", "sockets"));
    }
    Ok(())
}

impl NetConf {
    pub fn parse(inv: &Invocation) -> Result<NetConf, CniError> {
        let raw: RawConf = decode(&inv.config, "ovs network configuration")?;
        let raw_value: Value = serde_json::from_slice(&inv.config).unwrap_or(Value::Null);
        let bridge = raw.bridge.filter(|b| !b.is_empty()).ok_or_else(|| {
            CniError::invalid_config("bridge is required").with_details(
                "set \"bridge\" to the name of the OVS bridge on the node, e.g. \"br1\"",
            )
        })?;
        let vlan = raw.vlan.map(|v| vlan_id(v, "vlan")).transpose()?;
        let trunk_ranges = parse_trunks(raw.trunk.as_deref().unwrap_or(&[]))?;
        let mtu = match raw.mtu {
            None | Some(0) => None,
            Some(m) if (68..=65535).contains(&m) => Some(m as u32),
            Some(m) => {
                return Err(CniError::invalid_config(format!("mtu {m} is out of range"))
                    .with_details("set \"mtu\" between 68 and 65535, or leave it out for the kernel's default"));
            }
        };
        let socket = parse_socket(raw.socket_file)?;
        let ipam = parse_ipam(raw.ipam)?;
        let ofport_request = match raw.ofport_request {
            None | Some(0) => None,
            Some(p) if (1..=65279).contains(&p) => Some(p as u16),
            Some(p) => {
                return Err(CniError::invalid_config(format!(
                    "ofport_request {p} is out of range"
                ))
                .with_details("OpenFlow port numbers are 1 to 65279"));
            }
        };
        if let Some(t) = raw
            .interface_type
            .as_deref()
            .filter(|t| !t.is_empty() && *t != "system")
        {
            return Err(CniError::new(
                ErrorCode::UnsupportedField,
                format!("interface_type \"{t}\" is not supported"),
            )
            .with_details("this plugin attaches veth pairs (interface type \"system\"); leave interface_type out"));
        }
        if raw.device_id.as_deref().is_some_and(|d| !d.is_empty()) {
            return Err(CniError::new(
                ErrorCode::UnsupportedField,
                "deviceID (hardware offload with SR-IOV VFs) is not supported",
            )
            .with_details("remove \"deviceID\"; this plugin attaches veth pairs"));
        }
        let cni_args = CniArgs::parse(&inv.args, &["MAC"])?;
        let args_cni_mac = raw.args.and_then(|a| a.cni).and_then(|c| c.mac);
        let mac = cni_kit::failure::mac_from_sources(
            raw.runtime_config.mac.as_deref(),
            args_cni_mac.as_deref(),
            cni_args.get("MAC"),
        )?;
        let pod_uid = cni_args
            .get("K8S_POD_UID")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let valid_attachments = raw.valid_attachments.map(|list| {
            list.into_iter()
                .map(|a| (a.container_id, a.ifname))
                .collect()
        });
        Ok(NetConf {
            name: raw.name,
            bridge,
            vlan,
            trunk_ranges,
            mtu,
            socket,
            ipam,
            ofport_request,
            mac,
            pod_uid,
            prev_result: raw.prev_result,
            valid_attachments,
            raw: raw_value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(config: &str, args: &str) -> Invocation {
        Invocation::add_for_test(config.as_bytes(), args)
    }

    fn parse(extra: &str) -> Result<NetConf, CniError> {
        NetConf::parse(&inv(
            &format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"ovs","bridge":"br1"{extra}}}"#),
            "",
        ))
    }

    #[test]
    fn the_seed_nad_parses_with_defaults() {
        let c = NetConf::parse(&inv(
            r#"{"cniVersion":"0.3.1","type":"ovs","bridge":"br1","vlan":100}"#,
            "",
        ))
        .unwrap();
        assert_eq!(c.bridge, "br1");
        assert_eq!(c.vlan, Some(100));
        assert!(c.trunk_ranges.is_empty());
        assert_eq!(c.vlan_mode(), Some(VlanMode::Access));
        assert_eq!(c.socket, PathBuf::from("/var/run/openvswitch/db.sock"));
        assert_eq!((c.mtu, c.mac, c.ipam.is_none()), (None, None, true));
    }

    #[test]
    fn bridge_is_required() {
        let e = NetConf::parse(&inv(r#"{"cniVersion":"1.0.0","vlan":100}"#, "")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert_eq!(e.msg, "bridge is required");
        let e = NetConf::parse(&inv(r#"{"cniVersion":"1.0.0","bridge":""}"#, "")).unwrap_err();
        assert_eq!(e.msg, "bridge is required");
    }

    #[test]
    fn vlan_ids_0_and_4095_up_are_refused() {
        for bad in [0, 4095, 4096, -1] {
            let e = parse(&format!(r#","vlan":{bad}"#)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidConfig);
            assert!(e.msg.contains(&format!("vlan {bad}")), "{}", e.msg);
            assert!(e.details.contains("1 to 4094"));
        }
        assert_eq!(parse(r#","vlan":4094"#).unwrap().vlan, Some(4094));
        assert_eq!(parse(r#","vlan":1"#).unwrap().vlan, Some(1));
    }

    #[test]
    fn trunks_expand_ranges_sorted_without_duplicates() {
        let c = parse(r#","trunk":[{"id":42},{"minID":10,"maxID":12},{"id":11}]"#).unwrap();
        assert_eq!(c.trunks(), vec![10, 11, 12, 42]);
        let c = parse(r#","trunk":[{"minID":5,"maxID":9},{"minID":1,"maxID":6},{"id":7},{"minID":9,"maxID":10}]"#)
            .unwrap();
        assert_eq!(c.trunks(), (1..=10).collect::<Vec<u16>>());
        assert_eq!(c.vlan_mode(), Some(VlanMode::Trunk));
        let c = parse(r#","vlan":5,"trunk":[{"id":6}]"#).unwrap();
        assert_eq!(c.vlan_mode(), Some(VlanMode::NativeUntagged));
        assert_eq!(parse("").unwrap().vlan_mode(), None);
    }

    #[test]
    fn bad_trunks_name_the_entry() {
        let e = parse(r#","trunk":[{"id":1},{"minID":20,"maxID":10}]"#).unwrap_err();
        assert!(e.msg.starts_with("trunk[1]"), "{}", e.msg);
        let e = parse(r#","trunk":[{"minID":20}]"#).unwrap_err();
        assert!(e.msg.contains("trunk[0] must have"), "{}", e.msg);
        let e = parse(r#","trunk":[{"id":4095}]"#).unwrap_err();
        assert!(e.msg.contains("trunk[0].id 4095"), "{}", e.msg);
        let e = parse(r#","trunk":[{"minID":0,"maxID":3}]"#).unwrap_err();
        assert!(e.msg.contains("trunk[0].minID 0"), "{}", e.msg);
        let e = parse(r#","trunk":{"id":1}"#).unwrap_err();
        assert!(e.msg.contains("field trunk"), "{}", e.msg);
    }

    #[test]
    fn socket_file_with_and_without_unix_prefix() {
        for s in ["unix:/tmp/ovs/db.sock", "/tmp/ovs/db.sock"] {
            let c = parse(&format!(r#","socket_file":"{s}""#)).unwrap();
            assert_eq!(c.socket, PathBuf::from("/tmp/ovs/db.sock"));
        }
        let e = parse(r#","socket_file":"tcp:127.0.0.1:6640""#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
    }

    #[test]
    fn mtu_is_range_checked() {
        assert_eq!(parse(r#","mtu":9000"#).unwrap().mtu, Some(9000));
        assert_eq!(parse(r#","mtu":0"#).unwrap().mtu, None);
        assert!(parse(r#","mtu":67"#).unwrap_err().msg.contains("mtu 67"));
        let e = parse(r#","mtu":"1500""#).unwrap_err();
        assert!(e.msg.contains("field mtu"), "{}", e.msg);
    }

    #[test]
    fn ipam_needs_a_type() {
        let c = parse(r#","ipam":{"type":"host-local","subnet":"10.1.0.0/24"}"#).unwrap();
        assert_eq!(c.ipam.unwrap().0, "host-local");
        assert!(parse(r#","ipam":{}"#).unwrap().ipam.is_none());
        assert!(
            parse(r#","ipam":{"subnet":"x"}"#)
                .unwrap_err()
                .msg
                .contains("type")
        );
        assert!(parse(r#","ipam":{"type":"../x"}"#).is_err());
        let e = parse(r#","ipam":{"type":"ovs"}"#).unwrap_err();
        assert!(e.msg.contains("not an IPAM plugin"), "{}", e.msg);
        assert!(parse(r#","ipam":{"type":"macvtap"}"#).is_err());
    }

    #[test]
    fn mac_precedence_runtime_config_then_args_then_cni_args() {
        let base = r#""cniVersion":"1.0.0","bridge":"br1""#;
        let c = NetConf::parse(&inv(&format!(r#"{{{base},"runtimeConfig":{{"mac":"02:00:00:00:00:01"}},"args":{{"cni":{{"mac":"02:00:00:00:00:02"}}}}}}"#), "MAC=02:00:00:00:00:03")).unwrap();
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:01");
        let c = NetConf::parse(&inv(
            &format!(r#"{{{base},"args":{{"cni":{{"mac":"02:00:00:00:00:02"}}}}}}"#),
            "MAC=02:00:00:00:00:03",
        ))
        .unwrap();
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:02");
        let c = NetConf::parse(&inv(
            &format!("{{{base}}}"),
            "MAC=02:00:00:00:00:03;K8S_POD_UID=u-1",
        ))
        .unwrap();
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:03");
        assert_eq!(c.pod_uid.as_deref(), Some("u-1"));
        let e = NetConf::parse(&inv(&format!("{{{base}}}"), "MAC=01:00:5e:00:00:01")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
    }

    #[test]
    fn unsupported_fields_are_code_2() {
        let e = parse(r#","interface_type":"dpdk""#).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedField);
        let e = parse(r#","deviceID":"0000:00:01.0""#).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedField);
        parse(r#","interface_type":"system","ofport_request":5"#).unwrap();
        assert!(parse(r#","ofport_request":70000"#).is_err());
    }

    fn policy(text: &str) -> Policy {
        Policy::parse(text, std::path::Path::new("/test/plugins.conf")).unwrap()
    }

    #[test]
    fn the_node_policy_decides_sockets_bridges_vlans_and_trunks() {
        let none = Policy::default();
        parse(r#","vlan":100"#).unwrap().authorize(&none).unwrap();
        let e = parse("").unwrap().authorize(&none).unwrap_err();
        assert!(e.msg.contains("without \"vlan\"") && e.msg.contains("[ovs] trunk"));
        let e = parse(r#","trunk":[{"id":5}]"#)
            .unwrap()
            .authorize(&none)
            .unwrap_err();
        assert!(e.msg.contains("[ovs] trunk"), "{}", e.msg);
        for s in [
            "/run/x/db.sock",
            "/proc/1/root/var/run/openvswitch/db.sock",
            "/var/run/openvswitch/../openvswitch/db.sock",
        ] {
            let e = parse(&format!(r#","vlan":1,"socket_file":"{s}""#))
                .unwrap()
                .authorize(&none)
                .unwrap_err();
            assert!(e.msg.contains("[ovs] sockets"), "{}", e.msg);
        }
        let p = policy(
            "[ovs]\nbridges = br1\nvlans = 100-101\ntrunk = true\nsockets = /run/x/db.sock\n",
        );
        parse(r#","vlan":100,"socket_file":"unix:/run/x/db.sock""#)
            .unwrap()
            .authorize(&p)
            .unwrap();
        let e = parse(r#","vlan":100"#).unwrap().authorize(&p).unwrap_err();
        assert!(e.msg.contains("[ovs] sockets"), "{}", e.msg);
        let s = r#","socket_file":"/run/x/db.sock""#;
        let e = parse(&format!(r#"{s},"vlan":102"#))
            .unwrap()
            .authorize(&p)
            .unwrap_err();
        assert!(e.msg.contains("vlan 102") && e.msg.contains("[ovs] vlans"));
        let e = parse(&format!(r#"{s},"trunk":[{{"minID":100,"maxID":102}}]"#))
            .unwrap()
            .authorize(&p)
            .unwrap_err();
        assert!(e.msg.contains("trunk VLAN 102"), "{}", e.msg);
        let e = NetConf::parse(&inv(
            &format!(r#"{{"cniVersion":"1.0.0","bridge":"br0","vlan":100{s}}}"#),
            "",
        ))
        .unwrap()
        .authorize(&p)
        .unwrap_err();
        assert!(e.msg.contains("bridge \"br0\"") && e.msg.contains("[ovs] bridges"));
    }

    #[test]
    fn the_node_policy_decides_requested_macs() {
        let p = policy("[ovs]\nsockets = /run/x/db.sock\n[mac]\nforbidden = 02:00:00:00:00:01\n");
        let base =
            r#""cniVersion":"1.0.0","bridge":"br1","vlan":100,"socket_file":"/run/x/db.sock""#;
        for (config, args) in [
            (
                format!(r#"{{{base},"runtimeConfig":{{"mac":"02:00:00:00:00:01"}}}}"#),
                "",
            ),
            (
                format!("{{{base}}}"),
                "IgnoreUnknown=1;MAC=02:00:00:00:00:01",
            ),
        ] {
            let e = NetConf::parse(&inv(&config, args))
                .unwrap()
                .authorize(&p)
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidConfig);
            assert!(
                e.msg.contains("MAC 02:00:00:00:00:01") && e.msg.contains("[mac] forbidden"),
                "{}",
                e.msg
            );
        }
        // Another MAC, and no MAC at all (the kernel's or IPAM's), are the node's to give.
        NetConf::parse(&inv(&format!("{{{base}}}"), "MAC=02:00:00:00:00:02"))
            .unwrap()
            .authorize(&p)
            .unwrap();
        NetConf::parse(&inv(&format!("{{{base}}}"), ""))
            .unwrap()
            .authorize(&p)
            .unwrap();
        // Off by default.
        let sockets = policy("[ovs]\nsockets = /run/x/db.sock\n");
        NetConf::parse(&inv(&format!("{{{base}}}"), "MAC=02:00:00:00:00:01"))
            .unwrap()
            .authorize(&sockets)
            .unwrap();
    }

    #[test]
    fn teardown_reads_only_what_del_and_gc_use() {
        let c = NetConf::for_teardown(&inv(
            r#"{"cniVersion":"1.0.0","vlan":0,"trunk":{"id":1},"mtu":"x","runtimeConfig":{"mac":"zz"},"ipam":{"type":"host-local"}}"#,
            "MAC=bad;FOO=1",
        ));
        assert_eq!(c.socket, PathBuf::from("/var/run/openvswitch/db.sock"));
        assert_eq!(c.ipam.unwrap().0, "host-local");
        let c = NetConf::for_teardown(&inv(
            r#"{"ipam":{"type":"ovs"},"socket_file":"tcp:1.2.3.4:6640"}"#,
            "",
        ));
        assert!(c.ipam.is_none());
        assert!(authorize_socket(&c.socket, &Policy::default()).is_err());
    }

    #[test]
    fn valid_attachments_for_gc() {
        let c =
            parse(r#","cni.dev/valid-attachments":[{"containerID":"a","ifname":"net1"}]"#).unwrap();
        let set = c.valid_attachments.unwrap();
        assert!(set.contains(&("a".to_string(), "net1".to_string())));
    }
}
