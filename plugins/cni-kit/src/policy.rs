//! The node's own policy for the bundled plugins: what a network configuration (a
//! NetworkAttachmentDefinition, written by tenants) may ask a root plugin to do on
//! this node. It belongs to the node's administrator: a file read on every
//! invocation, `/etc/secnet/plugins.conf` unless the runtime's environment names
//! another one in `SECNET_PLUGIN_POLICY`. Nothing in the network configuration can
//! widen it.
//!
//! The format is INI-like: `[macvtap]` and `[ovs]` sections, `key = value` lines,
//! lists separated by commas or spaces, `#` comments. Lists are explicit (no
//! wildcards), so `passthru` or the node's uplink are allowed only when written
//! down. See docs/threat-model.md.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{CniError, ErrorCode};
use crate::mac::MacAddr;

/// The environment variable (set by the runtime or the admin's DaemonSet, never by a
/// tenant) that points at another policy file.
pub const POLICY_ENV: &str = "SECNET_PLUGIN_POLICY";
pub const DEFAULT_POLICY_PATH: &str = "/etc/secnet/plugins.conf";
/// ovsdb-server's socket on a node with Open vSwitch: the only one allowed by default.
pub const DEFAULT_OVS_SOCKET: &str = "/var/run/openvswitch/db.sock";
/// KubeVirt's qemu user and group: the only owner of `/dev/tapN` allowed by default.
pub const DEFAULT_TAP_ID: u32 = 107;
/// The `ifalias` a device plugin sets on a macvtap it created (followed by the
/// deviceID): the mark that lets the CNI take a link under its raw deviceID name.
pub const DEVICE_PLUGIN_ALIAS_PREFIX: &str = "secnet-deviceplugin:";
/// The kubelet's pod-resources socket: where device mode asks which pod holds a device.
pub const DEFAULT_POD_RESOURCES_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";
/// Standalone modes allowed when `standalone_modes` is not set (never passthru).
pub const DEFAULT_STANDALONE_MODES: [&str; 3] = ["bridge", "private", "vepa"];
const MACVTAP_MODES: [&str; 4] = ["bridge", "private", "vepa", "passthru"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacvtapPolicy {
    /// Lower devices a configuration's `master` may name; empty: standalone mode off.
    pub standalone_masters: Vec<String>,
    pub standalone_modes: Vec<String>,
    /// Lower devices of the device plugin's macvtaps; `None`: any lower device.
    pub device_lower_devices: Option<Vec<String>>,
    pub tap_owners: Vec<u32>,
    pub tap_groups: Vec<u32>,
    /// The kubelet's pod-resources socket, asked whether a deviceID belongs to the
    /// pod named in CNI_ARGS.
    pub pod_resources_socket: PathBuf,
    /// Refuse device mode when that question cannot be asked (no socket, no answer,
    /// no pod name in CNI_ARGS); otherwise such a node works as with upstream's plugin.
    pub require_pod_resources: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvsPolicy {
    pub sockets: Vec<PathBuf>,
    /// The bridges a configuration may name. `None`: any bridge except those that
    /// carry the node's own traffic (an address on one of its ports, or the port
    /// of a default route: the `br-ex` kind).
    pub bridges: Option<Vec<String>>,
    /// Access VLANs allowed; `None`: any (1–4094).
    pub vlans: Option<BTreeSet<u16>>,
    /// Whether trunk ports (a `trunk` list, or no `vlan` at all: every VLAN) are allowed.
    pub trunk: bool,
    /// The smallest `mtu` a configuration may ask for. `None`: the bridge's current
    /// MTU on bridges that carry the node's traffic (a smaller port would lower the
    /// bridge's own port), no floor elsewhere.
    pub min_mtu: Option<u32>,
    /// How many entries a `trunk` list may have (checked before ranges are expanded).
    pub max_trunk_entries: usize,
}

/// `[ovs] max_trunk_entries` when the policy does not set it.
pub const DEFAULT_MAX_TRUNK_ENTRIES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The file this came from (or would have).
    pub path: PathBuf,
    /// Whether that file exists; without it every field has its default.
    pub present: bool,
    pub macvtap: MacvtapPolicy,
    pub ovs: OvsPolicy,
    /// `[mac]`: which MACs a network configuration may ask for (any plugin).
    pub mac: MacPolicy,
}

/// MAC ranges a requested MAC must (`allowed`) or must not (`forbidden`) fall in,
/// so that a pod cannot take e.g. the LAN gateway's MAC. Off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MacPolicy {
    /// `None`: any unicast MAC not forbidden.
    pub allowed: Option<Vec<MacRange>>,
    pub forbidden: Vec<MacRange>,
}

/// An inclusive range of MACs, `lo-hi` or one MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacRange {
    pub first: MacAddr,
    pub last: MacAddr,
}

impl MacRange {
    pub fn contains(&self, mac: MacAddr) -> bool {
        (self.first.0..=self.last.0).contains(&mac.0)
    }

    fn parse(item: &str) -> Result<MacRange, String> {
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        let mac = |s: &str| {
            s.parse::<MacAddr>()
                .map_err(|e| format!("{item:?} is not a MAC or a range of MACs (lo-hi): {e}"))
        };
        let (first, last) = (mac(lo)?, mac(hi)?);
        if first.0 > last.0 {
            return Err(format!("{item:?}: the range is reversed"));
        }
        Ok(MacRange { first, last })
    }
}

impl std::fmt::Display for MacRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            path: PathBuf::from(DEFAULT_POLICY_PATH),
            present: false,
            macvtap: MacvtapPolicy {
                standalone_masters: Vec::new(),
                standalone_modes: DEFAULT_STANDALONE_MODES.map(String::from).to_vec(),
                device_lower_devices: None,
                tap_owners: vec![DEFAULT_TAP_ID],
                tap_groups: vec![DEFAULT_TAP_ID],
                pod_resources_socket: PathBuf::from(DEFAULT_POD_RESOURCES_SOCKET),
                require_pod_resources: false,
            },
            ovs: OvsPolicy {
                sockets: vec![PathBuf::from(DEFAULT_OVS_SOCKET)],
                bridges: None,
                vlans: None,
                trunk: false,
                min_mtu: None,
                max_trunk_entries: DEFAULT_MAX_TRUNK_ENTRIES,
            },
            mac: MacPolicy::default(),
        }
    }
}

impl Policy {
    /// The policy of this node: the file `SECNET_PLUGIN_POLICY` names (an absolute
    /// path), else the default path. A missing file means the defaults; an
    /// unreadable or malformed one, or one that someone other than root could have
    /// written or swapped, is an error.
    pub fn load() -> Result<Policy, CniError> {
        let path = match std::env::var_os(POLICY_ENV).filter(|p| !p.is_empty()) {
            Some(p) => {
                let path = PathBuf::from(p);
                if !path.to_str().is_some_and(is_plain_absolute) {
                    return Err(CniError::new(
                        ErrorCode::InvalidEnvironment,
                        format!(
                            "{POLICY_ENV}={} is not an absolute path without `.`/`..` components",
                            path.display()
                        ),
                    )
                    .with_details(format!(
                        "set {POLICY_ENV} to the node policy's absolute path, e.g. {DEFAULT_POLICY_PATH}"
                    )));
                }
                path
            }
            None => PathBuf::from(DEFAULT_POLICY_PATH),
        };
        Policy::load_from(&path)
    }

    /// Reads the policy at `path` through one descriptor: every directory above it
    /// root's and writable by root only (or sticky, as `/tmp`), the file itself
    /// opened without following a symlink or blocking on a FIFO, then checked on
    /// that descriptor (a regular file, root's, writable by root only, at most
    /// [`MAX_POLICY_BYTES`]) and read from it.
    pub fn load_from(path: &Path) -> Result<Policy, CniError> {
        let bad = |msg: String| {
            CniError::invalid_config(msg).with_details(format!(
                "the node's administrator must fix {} (see docs/threat-model.md in secnet)",
                path.display()
            ))
        };
        let absent = || Policy {
            path: path.to_path_buf(),
            ..Policy::default()
        };
        let text = match read_root_file(path) {
            Ok(Some(text)) => text,
            Ok(None) => return Ok(absent()),
            Err(why) => return Err(bad(format!("node policy {}: {why}", path.display()))),
        };
        Policy::parse(&text, path).map_err(bad)
    }

    /// Refuses `mac` (asked for by the network configuration or the runtime) unless
    /// `[mac]` allows it.
    pub fn check_mac(&self, mac: MacAddr) -> Result<(), CniError> {
        let m = &self.mac;
        if let Some(range) = m.forbidden.iter().find(|r| r.contains(mac)) {
            return Err(self.refuse(
                format!("MAC {mac} (in forbidden range {range})"),
                "mac",
                "forbidden",
            ));
        }
        match &m.allowed {
            Some(allowed) if !allowed.iter().any(|r| r.contains(mac)) => {
                Err(self.refuse(format!("MAC {mac}"), "mac", "allowed"))
            }
            _ => Ok(()),
        }
    }

    /// Parses the policy text; errors name the file, line and key.
    pub fn parse(text: &str, path: &Path) -> Result<Policy, String> {
        let mut p = Policy {
            path: path.to_path_buf(),
            present: true,
            ..Policy::default()
        };
        let mut section = String::new();
        for (i, raw_line) in text.lines().enumerate() {
            let at = || format!("{}:{}", path.display(), i + 1);
            let line = raw_line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_string();
                if !["macvtap", "ovs", "mac"].contains(&section.as_str()) {
                    return Err(format!(
                        "{}: unknown section [{section}] (known: [macvtap], [ovs], [mac])",
                        at()
                    ));
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!("{}: expected `key = value`, got {line:?}", at()));
            };
            let (key, value) = (key.trim(), value.trim());
            let items: Vec<String> = value
                .split([',', ' ', '\t'])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let field_err = |why: String| format!("{}: [{section}] {key}: {why}", at());
            let ids = |items: &[String]| -> Result<Vec<u32>, String> {
                items
                    .iter()
                    .map(|s| {
                        s.parse::<u32>()
                            .map_err(|_| field_err(format!("{s:?} is not a numeric id")))
                    })
                    .collect()
            };
            match (section.as_str(), key) {
                ("macvtap", "standalone_masters") => p.macvtap.standalone_masters = items,
                ("macvtap", "standalone_modes") => {
                    if let Some(bad) = items.iter().find(|m| !MACVTAP_MODES.contains(&m.as_str())) {
                        return Err(field_err(format!(
                            "unknown mode {bad:?} (bridge, private, vepa, passthru)"
                        )));
                    }
                    p.macvtap.standalone_modes = items;
                }
                ("macvtap", "device_lower_devices") => p.macvtap.device_lower_devices = Some(items),
                ("macvtap", "tap_owners") => p.macvtap.tap_owners = ids(&items)?,
                ("macvtap", "tap_groups") => p.macvtap.tap_groups = ids(&items)?,
                ("ovs", "sockets") => {
                    let mut sockets = Vec::new();
                    for s in &items {
                        let path = s.strip_prefix("unix:").unwrap_or(s);
                        if !is_plain_absolute(path) {
                            return Err(field_err(format!(
                                "{s:?} must be an absolute path without `.`/`..` components"
                            )));
                        }
                        sockets.push(PathBuf::from(path));
                    }
                    p.ovs.sockets = sockets;
                }
                ("ovs", "bridges") => p.ovs.bridges = Some(items),
                ("ovs", "vlans") => p.ovs.vlans = Some(parse_vlans(&items).map_err(field_err)?),
                ("macvtap", "pod_resources_socket") => {
                    if !is_plain_absolute(value) {
                        return Err(field_err(format!(
                            "{value:?} must be an absolute path without `.`/`..` components"
                        )));
                    }
                    p.macvtap.pod_resources_socket = PathBuf::from(value);
                }
                ("macvtap", "require_pod_resources") => {
                    p.macvtap.require_pod_resources = parse_bool(value).map_err(field_err)?;
                }
                ("ovs", "trunk") => p.ovs.trunk = parse_bool(value).map_err(field_err)?,
                ("mac", "allowed") => {
                    p.mac.allowed = Some(parse_mac_ranges(&items).map_err(field_err)?)
                }
                ("mac", "forbidden") => {
                    p.mac.forbidden = parse_mac_ranges(&items).map_err(field_err)?
                }
                ("ovs", "min_mtu") => {
                    p.ovs.min_mtu = Some(
                        value
                            .parse::<u32>()
                            .ok()
                            .filter(|m| (68..=65535).contains(m))
                            .ok_or_else(|| {
                                field_err(format!("{value:?} is not an MTU within 68-65535"))
                            })?,
                    );
                }
                ("ovs", "max_trunk_entries") => {
                    p.ovs.max_trunk_entries = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=4094).contains(n))
                        .ok_or_else(|| {
                            field_err(format!("{value:?} is not a count within 1-4094"))
                        })?;
                }
                ("", _) => {
                    return Err(format!(
                        "{}: `{key}` outside a section (start with [macvtap] or [ovs])",
                        at()
                    ));
                }
                _ => return Err(field_err("unknown key".into())),
            }
        }
        Ok(p)
    }

    /// The refusal of `what`, naming the policy field that refused it and the file.
    pub fn refuse(&self, what: impl std::fmt::Display, section: &str, key: &str) -> CniError {
        let why = if self.present {
            format!(
                "not allowed by [{section}] {key} in node policy {}",
                self.path.display()
            )
        } else {
            format!(
                "not allowed: node policy {} does not exist, so [{section}] {key} has its default",
                self.path.display()
            )
        };
        CniError::new(ErrorCode::InvalidConfig, format!("{what}: {why}")).with_details(format!(
            "only the node's administrator can allow it, in {} ({POLICY_ENV} names another file); a network configuration cannot",
            self.path.display()
        ))
    }
}

/// The largest policy file read: a policy is a few lines; anything bigger is not one.
pub const MAX_POLICY_BYTES: u64 = 64 * 1024;

/// The text of the root-only file at `path`, `None` when it does not exist, or why
/// it cannot be trusted.
fn read_root_file(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err("is not a file path".into());
    };
    if !path.is_absolute() {
        return Err("is not an absolute path".into());
    }
    // The directories are resolved once; each must be root's and writable by root
    // only, so nobody else can swap what the path leads to between here and open.
    let dir = match std::fs::canonicalize(parent) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("failed to resolve its directory: {e}")),
    };
    for ancestor in dir.ancestors() {
        let meta = std::fs::symlink_metadata(ancestor)
            .map_err(|e| format!("failed to stat {}: {e}", ancestor.display()))?;
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.uid() != 0 || (meta.mode() & 0o022 != 0 && !sticky) {
            return Err(format!(
                "directory {} must be owned by root and writable by root only (uid {}, mode {:o}): whoever can write it can swap the policy",
                ancestor.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ));
        }
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(dir.join(name));
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err("is a symlink; the policy must be the file itself".into());
        }
        Err(e) => return Err(format!("failed to open: {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("failed to stat the open file: {e}"))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(format!("is {what}; the policy must be a regular file"));
    }
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "must be owned by root and writable by root only (uid {}, mode {:o})",
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    if meta.len() > MAX_POLICY_BYTES {
        return Err(format!(
            "is {} bytes, more than the {MAX_POLICY_BYTES} a policy may have",
            meta.len()
        ));
    }
    let mut text = String::new();
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("failed to read: {e}"))?;
    if text.len() as u64 > MAX_POLICY_BYTES {
        return Err(format!("grew beyond {MAX_POLICY_BYTES} bytes while read"));
    }
    Ok(Some(text))
}

fn parse_mac_ranges(items: &[String]) -> Result<Vec<MacRange>, String> {
    items.iter().map(|i| MacRange::parse(i)).collect()
}

/// `/a/b`, with no empty, `.` or `..` components.
pub fn is_plain_absolute(path: &str) -> bool {
    path.starts_with('/')
        && path[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

fn parse_vlans(items: &[String]) -> Result<BTreeSet<u16>, String> {
    let mut out = BTreeSet::new();
    for item in items {
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        let id = |s: &str| {
            s.parse::<u16>()
                .ok()
                .filter(|v| (1..=4094).contains(v))
                .ok_or_else(|| format!("{item:?} is not a VLAN id or range within 1-4094"))
        };
        let (lo, hi) = (id(lo)?, id(hi)?);
        if lo > hi {
            return Err(format!("{item:?}: the range is reversed"));
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, String> {
        Policy::parse(text, Path::new("/etc/secnet/plugins.conf"))
    }

    #[test]
    fn defaults_are_closed() {
        let p = Policy::default();
        assert!(!p.present);
        assert!(p.macvtap.standalone_masters.is_empty());
        assert!(!p.macvtap.standalone_modes.contains(&"passthru".to_string()));
        assert_eq!(p.ovs.sockets, vec![PathBuf::from(DEFAULT_OVS_SOCKET)]);
        assert!(!p.ovs.trunk);
        assert!(!p.macvtap.require_pod_resources);
        assert_eq!(
            p.macvtap.pod_resources_socket,
            PathBuf::from(DEFAULT_POD_RESOURCES_SOCKET)
        );
        assert_eq!(
            (p.macvtap.tap_owners[0], p.macvtap.tap_groups[0]),
            (107, 107)
        );
    }

    #[test]
    fn full_example_parses() {
        let p = parse(
            "# node policy\n[macvtap]\nstandalone_masters = ens34, bond1\nstandalone_modes = bridge passthru\n\
             device_lower_devices = ens33\ntap_owners = 107, 0\ntap_groups = 107\n\
             pod_resources_socket = /run/kubelet/pr.sock\nrequire_pod_resources = yes\n\n[ovs]\n\
             sockets = unix:/var/run/openvswitch/db.sock, /run/ovs2/db.sock\nbridges = br1\nvlans = 100, 200-202\ntrunk = true # ok\n",
        )
        .unwrap();
        assert_eq!(p.macvtap.standalone_masters, ["ens34", "bond1"]);
        assert_eq!(p.macvtap.standalone_modes, ["bridge", "passthru"]);
        assert_eq!(p.macvtap.device_lower_devices, Some(vec!["ens33".into()]));
        assert_eq!(p.macvtap.tap_owners, [107, 0]);
        assert_eq!(
            p.macvtap.pod_resources_socket,
            PathBuf::from("/run/kubelet/pr.sock")
        );
        assert!(p.macvtap.require_pod_resources);
        assert_eq!(p.ovs.sockets.len(), 2);
        assert_eq!(
            p.ovs.vlans.unwrap().into_iter().collect::<Vec<_>>(),
            [100, 200, 201, 202]
        );
        assert!(p.ovs.trunk);
        assert_eq!(
            (p.ovs.min_mtu, p.ovs.max_trunk_entries),
            (None, DEFAULT_MAX_TRUNK_ENTRIES)
        );
    }

    #[test]
    fn ovs_mtu_floor_and_trunk_cap() {
        let p = parse("[ovs]\nmin_mtu = 1500\nmax_trunk_entries = 8\n").unwrap();
        assert_eq!((p.ovs.min_mtu, p.ovs.max_trunk_entries), (Some(1500), 8));
        for bad in [
            "min_mtu = 67",
            "min_mtu = x",
            "max_trunk_entries = 0",
            "max_trunk_entries = 5000",
        ] {
            let e = parse(&format!("[ovs]\n{bad}\n")).unwrap_err();
            assert!(e.contains(bad.split(' ').next().unwrap()), "{e}");
        }
    }

    #[test]
    fn mistakes_name_file_line_and_key() {
        let e = parse("[macvtap]\nstandalone_mode = bridge\n").unwrap_err();
        assert!(
            e.contains("plugins.conf:2") && e.contains("standalone_mode"),
            "{e}"
        );
        let e = parse("[ovs]\nvlans = 0-5\n").unwrap_err();
        assert!(e.contains("[ovs] vlans"), "{e}");
        let e = parse("[ovs]\nsockets = /run/../proc/1/root/db.sock\n").unwrap_err();
        assert!(e.contains("sockets"), "{e}");
        assert!(
            parse("trunk = true\n")
                .unwrap_err()
                .contains("outside a section")
        );
        assert!(parse("[sriov]\n").unwrap_err().contains("unknown section"));
        let e = parse("[macvtap]\nrequire_pod_resources = maybe\n").unwrap_err();
        assert!(
            e.contains("require_pod_resources") && e.contains("maybe"),
            "{e}"
        );
        let e = parse("[macvtap]\npod_resources_socket = run/kubelet.sock\n").unwrap_err();
        assert!(e.contains("pod_resources_socket"), "{e}");
        assert!(
            parse("[macvtap]\nstandalone_modes = bridged\n")
                .unwrap_err()
                .contains("bridged")
        );
    }

    #[test]
    fn refusal_names_field_and_file() {
        let p = Policy::default();
        let e = p.refuse("master \"x\"", "macvtap", "standalone_masters");
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.msg.contains("[macvtap] standalone_masters"));
        assert!(e.msg.contains("/etc/secnet/plugins.conf does not exist"));
    }

    #[test]
    fn mac_ranges_allow_and_forbid() {
        let p = parse(
            "[mac]\nallowed = 02:00:00:00:00:00-02:00:00:ff:ff:ff\nforbidden = 02:00:00:00:00:01, 02:00:00:00:01:00-02:00:00:00:01:ff\n",
        )
        .unwrap();
        let mac = |s: &str| s.parse::<MacAddr>().unwrap();
        p.check_mac(mac("02:00:00:12:34:56")).unwrap();
        let e = p.check_mac(mac("02:00:00:00:00:01")).unwrap_err();
        assert!(e.msg.contains("[mac] forbidden"), "{}", e.msg);
        let e = p.check_mac(mac("02:00:00:00:01:80")).unwrap_err();
        assert!(
            e.msg.contains("02:00:00:00:01:00-02:00:00:00:01:ff"),
            "{}",
            e.msg
        );
        let e = p.check_mac(mac("52:54:00:12:34:56")).unwrap_err();
        assert!(e.msg.contains("[mac] allowed"), "{}", e.msg);
        // Off by default: any MAC.
        Policy::default()
            .check_mac(mac("52:54:00:12:34:56"))
            .unwrap();
        for bad in [
            "[mac]\nallowed = 02:00:00:00:00:09-02:00:00:00:00:01\n",
            "[mac]\nforbidden = gw\n",
        ] {
            assert!(parse(bad).unwrap_err().contains("[mac]"), "{bad}");
        }
    }

    /// A directory of this test's own under the temp dir, removed on drop.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(tag: &str) -> TestDir {
            let dir = std::env::temp_dir().join(format!("cni-kit-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TestDir(dir)
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn only_a_plain_root_file_in_root_directories_is_read() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = TestDir::new("policy-file");
        let good = dir.0.join("good.conf");
        std::fs::write(&good, "[ovs]\ntrunk = true\n").unwrap();
        assert!(Policy::load_from(&good).unwrap().ovs.trunk);

        // A FIFO must neither hang nor pass.
        let fifo = dir.0.join("fifo.conf");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let start = std::time::Instant::now();
        let e = Policy::load_from(&fifo).unwrap_err();
        assert!(e.msg.contains("FIFO"), "{}", e.msg);
        assert!(start.elapsed() < std::time::Duration::from_secs(1));

        let link = dir.0.join("link.conf");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert!(
            Policy::load_from(&link)
                .unwrap_err()
                .msg
                .contains("symlink")
        );

        let big = dir.0.join("big.conf");
        std::fs::write(&big, "#".repeat(MAX_POLICY_BYTES as usize + 1)).unwrap();
        assert!(Policy::load_from(&big).unwrap_err().msg.contains("bytes"));

        // A directory others may write (not sticky): the file could be swapped.
        let open_dir = dir.0.join("open");
        std::fs::create_dir(&open_dir).unwrap();
        std::fs::write(open_dir.join("p.conf"), "[ovs]\ntrunk = true\n").unwrap();
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = Policy::load_from(&open_dir.join("p.conf")).unwrap_err();
        assert!(
            e.msg.contains("writable by root only") && e.msg.contains("open"),
            "{}",
            e.msg
        );
        // Sticky, as /tmp: others cannot replace root's entries.
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(Policy::load_from(&open_dir.join("p.conf")).unwrap().present);

        // A directory owned by someone else.
        let theirs = dir.0.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::write(theirs.join("p.conf"), "").unwrap();
        nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(1000)), None).unwrap();
        assert!(
            Policy::load_from(&theirs.join("p.conf"))
                .unwrap_err()
                .msg
                .contains("theirs")
        );

        // Missing file or directory: the defaults.
        assert!(
            !Policy::load_from(&dir.0.join("absent/p.conf"))
                .unwrap()
                .present
        );
        assert!(Policy::load_from(Path::new("relative.conf")).is_err());
    }

    #[test]
    fn files_writable_by_others_are_refused() {
        let dir = std::env::temp_dir().join(format!("cni-kit-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("plugins.conf");
        std::fs::write(&f, "[ovs]\ntrunk = true\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        let owned_by_root = nix::unistd::geteuid().is_root();
        let r = Policy::load_from(&f);
        if owned_by_root {
            assert!(r.unwrap_err().msg.contains("writable by root only"));
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(Policy::load_from(&f).unwrap().ovs.trunk);
        }
        assert!(!Policy::load_from(&dir.join("absent")).unwrap().present);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
