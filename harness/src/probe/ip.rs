//! The one parser of each `ip` output secnet reads:
//!
//! - `ip -j [-d] link show …` and `ip -j addr show …` (iproute2 JSON): typed as
//!   [`LinkFacts`] and [`AddrFacts`]. A field the kernel always reports (`ifname`,
//!   `mtu`, …) that is missing or of the wrong type is a [`ParseError::Field`]
//!   naming the command, the entry and the field, never a silent default.
//! - `ip -o link show …` (one line per link): what iproute2 *and* busybox print, so
//!   the only form available in pod images on real clusters and in the VM guest.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("`{what}` did not print JSON ({source}); it printed: {output}")]
    Json {
        what: &'static str,
        output: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{what}` printed {output}, not a JSON array")]
    NotArray { what: &'static str, output: String },
    #[error("`{what}` entry {entry} ({ifname}){}: {message}", at(field))]
    Field {
        what: &'static str,
        /// The entry's position in the array.
        entry: usize,
        /// Its `ifname`, or `?` where even that is missing.
        ifname: String,
        /// The field's path inside the entry (`.` for the entry itself).
        field: String,
        message: String,
    },
}

fn at(field: &str) -> String {
    match field {
        "." | "" => String::new(),
        path => format!(" field {path}"),
    }
}

/// How much of an unparsable output an error quotes.
const QUOTE: usize = 300;

fn quoted(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(QUOTE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

pub(super) fn json_array(what: &'static str, text: &str) -> Result<Vec<Value>, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(|source| ParseError::Json {
        what,
        output: quoted(text),
        source,
    })?;
    match value {
        Value::Array(items) => Ok(items),
        other => Err(ParseError::NotArray {
            what,
            output: quoted(&other.to_string()),
        }),
    }
}

/// Every entry of an `ip -j` (or `bridge -j`) array as `T`; the first that does not
/// fit names itself.
pub(super) fn typed<T: serde::de::DeserializeOwned>(
    what: &'static str,
    items: Vec<Value>,
) -> Result<Vec<T>, ParseError> {
    items
        .into_iter()
        .enumerate()
        .map(|(entry, item)| {
            let ifname = item["ifname"].as_str().unwrap_or("?").to_string();
            serde_path_to_error::deserialize(item).map_err(|e| ParseError::Field {
                what,
                entry,
                ifname,
                field: e.path().to_string(),
                message: e.into_inner().to_string(),
            })
        })
        .collect()
}

/// The links of `ip -j [-d] link show …` (empty when none matched).
pub fn links(json: &str) -> Result<Vec<LinkFacts>, ParseError> {
    typed("ip -j link", json_array("ip -j link", json)?)
}

/// The entries (one per interface, each with its addresses) of `ip -j addr show …`.
/// Older iproute2 prints `{}` for an interface without an address of the asked
/// family (`-4`, `-6`): such entries are dropped.
pub fn addrs(json: &str) -> Result<Vec<AddrFacts>, ParseError> {
    let items = json_array("ip -j addr", json)?
        .into_iter()
        .filter(|item| item.as_object().is_none_or(|o| !o.is_empty()))
        .collect();
    typed("ip -j addr", items)
}

/// `ifname` of every link.
pub fn link_names(links: &[LinkFacts]) -> Vec<String> {
    links.iter().map(|l| l.name.clone()).collect()
}

/// One link of `ip -j [-d] link show`, typed: what the scenarios and the plugins'
/// cross-checks read. The fields the kernel always reports are required; the ones
/// that depend on the link (a lower device, a master, `-d`'s `linkinfo`) are options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawLink")]
pub struct LinkFacts {
    /// `ifname`.
    pub(crate) name: String,
    /// `ifindex`.
    pub index: u32,
    /// `link_index`: the lower device's (or veth peer's) index where it lives in
    /// another namespace (with [`LinkFacts::lower_netnsid`]).
    pub(crate) lower_index: Option<u32>,
    /// `link`: the lower device's (or veth peer's) name where it is in this namespace.
    pub(crate) lower: Option<String>,
    /// `link_netnsid`: the namespace of the lower device, as this namespace numbers it.
    pub(crate) lower_netnsid: Option<i32>,
    /// `linkinfo.info_kind` (`macvtap`, `veth`, …; "" for a plain device or without `-d`).
    pub kind: String,
    /// `linkinfo.info_data.mode` of a macvlan, macvtap or ipvlan (`bridge`, `vepa`, …).
    pub mode: Option<String>,
    /// `linkinfo.info_data.id` of a VLAN link.
    pub(crate) vlan_id: Option<u16>,
    /// The link-layer address (`address`), if it has one.
    pub mac: Option<String>,
    pub mtu: u32,
    /// `operstate` (`UP`, `DOWN`, `LOWERLAYERDOWN`, …).
    pub(crate) operstate: String,
    /// `UP`, `PROMISC`, … as iproute2 prints them.
    pub(crate) flags: Vec<String>,
    /// `master`: the bridge (or bond) the link is a port of.
    pub(crate) master: Option<String>,
    /// `promiscuity` (with `-d`): how many holders keep it promiscuous.
    pub(crate) promiscuity: Option<u32>,
    /// `ifalias` (`ip link set X alias …`), where a device plugin marks its links.
    pub alias: Option<String>,
}

impl LinkFacts {
    /// Whether iproute2 lists `flag` (`UP`, `PROMISC`, …) among the link's flags.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The MAC as messages show it: `none` for a link without one.
    pub fn shown_mac(&self) -> &str {
        self.mac.as_deref().unwrap_or("none")
    }
}

/// `ip -j link`'s own shape; [`LinkFacts`] is what secnet reads of it.
#[derive(Deserialize)]
struct RawLink {
    ifindex: u32,
    ifname: String,
    flags: Vec<String>,
    mtu: u32,
    operstate: String,
    address: Option<String>,
    link: Option<String>,
    link_index: Option<u32>,
    link_netnsid: Option<i32>,
    master: Option<String>,
    promiscuity: Option<u32>,
    ifalias: Option<String>,
    linkinfo: Option<RawLinkInfo>,
}

#[derive(Deserialize)]
struct RawLinkInfo {
    info_kind: Option<String>,
    /// Its shape depends on the kind (a bridge's has dozens of fields): read below
    /// only for the kinds whose fields secnet checks.
    info_data: Option<Value>,
}

/// The kinds whose `info_data.mode` is the link's mode.
const MODED: [&str; 4] = ["macvlan", "macvtap", "ipvlan", "ipvtap"];

impl TryFrom<RawLink> for LinkFacts {
    type Error = String;

    fn try_from(raw: RawLink) -> Result<LinkFacts, String> {
        let (kind, data) = match raw.linkinfo {
            Some(info) => (info.info_kind.unwrap_or_default(), info.info_data),
            None => (String::new(), None),
        };
        let data = data.unwrap_or(Value::Null);
        let mode = match (MODED.contains(&kind.as_str()), &data["mode"]) {
            (false, _) | (true, Value::Null) => None,
            (true, Value::String(mode)) => Some(mode.clone()),
            (true, other) => return Err(format!("linkinfo.info_data.mode of a {kind} is {other}")),
        };
        let vlan_id = match (kind == "vlan", &data["id"]) {
            (false, _) | (true, Value::Null) => None,
            (true, id) => Some(
                id.as_u64()
                    .and_then(|id| u16::try_from(id).ok())
                    .ok_or_else(|| format!("linkinfo.info_data.id of a vlan is {id}"))?,
            ),
        };
        Ok(LinkFacts {
            name: raw.ifname,
            index: raw.ifindex,
            lower_index: raw.link_index,
            lower: raw.link,
            lower_netnsid: raw.link_netnsid,
            kind,
            mode,
            vlan_id,
            mac: raw.address,
            mtu: raw.mtu,
            operstate: raw.operstate,
            flags: raw.flags,
            master: raw.master,
            promiscuity: raw.promiscuity,
            alias: raw.ifalias,
        })
    }
}

impl std::fmt::Display for LinkFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (index {}, kind {:?}, mac {}, {})",
            self.name,
            self.index,
            self.kind,
            self.shown_mac(),
            self.operstate
        )
    }
}

/// Owner (uid, gid) of `/dev/tap<ifindex>` for a macvtap link.
pub fn tap_owner(link: &LinkFacts) -> std::io::Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(format!("/dev/tap{}", link.index))?;
    Ok((meta.uid(), meta.gid()))
}

/// One interface of `ip -j [-d] addr show`: the link (as `ip -j link` has it, less
/// the MAC under `-4`/`-6`) and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AddrFacts {
    #[serde(flatten)]
    pub link: LinkFacts,
    /// `addr_info`, in the kernel's order.
    #[serde(rename = "addr_info")]
    pub addrs: Vec<IfAddr>,
}

/// One element of `addr_info`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IfAddr {
    /// `inet` or `inet6`.
    pub family: String,
    /// The address itself.
    pub local: IpAddr,
    pub(crate) prefixlen: u8,
    /// `global`, `link`, `host`.
    pub(crate) scope: String,
    /// Still in duplicate address detection (IPv6).
    #[serde(default)]
    pub(crate) tentative: bool,
    /// Duplicate address detection found it in use (IPv6).
    #[serde(default)]
    pub(crate) dadfailed: bool,
    /// Added with `nodad` (IPv6).
    #[serde(default)]
    pub(crate) nodad: bool,
}

impl std::fmt::Display for IfAddr {
    /// `local/prefixlen`, as `ip addr` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.local, self.prefixlen)
    }
}

/// Every address of an `ip -j addr` output, in order.
pub fn if_addrs(addrs: &[AddrFacts]) -> Vec<IfAddr> {
    addrs.iter().flat_map(|a| a.addrs.iter().cloned()).collect()
}

/// Every address of an `ip -j addr` output as `local/prefixlen`, in order.
pub fn cidrs(addrs: &[AddrFacts]) -> Vec<String> {
    if_addrs(addrs).iter().map(IfAddr::to_string).collect()
}

/// One line of `ip -o link`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnelineLink {
    /// Without the `@peer` part.
    pub(crate) name: String,
    /// The `link/ether` address; None for loopback, tunnels, …
    pub(crate) mac: Option<String>,
    pub(crate) mtu: Option<u32>,
    /// `UP` among the flags (administratively up).
    pub(crate) up: bool,
}

/// Every link `ip -o link [show …]` printed (iproute2 or busybox).
pub fn oneline_links(text: &str) -> Vec<OnelineLink> {
    text.lines().filter_map(oneline_link).collect()
}

fn oneline_link(line: &str) -> Option<OnelineLink> {
    let name = line.split(": ").nth(1)?.split('@').next()?.trim();
    let flags = line.split_once('<')?.1.split_once('>')?.0;
    let mut words = line.split_whitespace();
    let (mut mtu, mut mac) = (None, None);
    while let Some(w) = words.next() {
        match w {
            "mtu" => mtu = words.next().and_then(|m| m.parse().ok()),
            "link/ether" => mac = words.next().map(str::to_string),
            _ => {}
        }
    }
    Some(OnelineLink {
        name: name.to_string(),
        mac,
        mtu,
        up: flags.split(',').any(|f| f == "UP"),
    })
}

/// One address line of `ip -o addr show …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnelineAddr {
    pub(crate) ifname: String,
    pub(crate) local: IpAddr,
    pub(crate) prefixlen: u8,
    /// Still in duplicate address detection (IPv6).
    pub(crate) tentative: bool,
}

impl OnelineAddr {
    /// An IPv6 link-local address (`fe80::…`), which every IPv6 link has.
    pub fn is_link_local(&self) -> bool {
        matches!(self.local, IpAddr::V6(a) if a.segments()[0] == 0xfe80)
    }
}

/// Every address `ip -o addr [show …]` printed (iproute2 or busybox): the lines that
/// read `N: <ifname> inet|inet6 <address>/<prefix> … [tentative] …`.
pub fn oneline_addrs(text: &str) -> Vec<OnelineAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip(1);
            let ifname = words.next()?;
            let _family = words.next().filter(|f| *f == "inet" || *f == "inet6")?;
            let (local, prefixlen) = words.next()?.split_once('/')?;
            Some(OnelineAddr {
                ifname: ifname.to_string(),
                local: local.parse().ok()?,
                prefixlen: prefixlen.parse().ok()?,
                tentative: words.any(|w| w == "tentative"),
            })
        })
        .collect()
}

/// An Ethernet interface as `ip -o link show dev X` prints it (see [`oneline_links`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIface {
    pub(crate) mac: String,
    pub(crate) mtu: u32,
    pub(crate) up: bool,
}

/// The first Ethernet link of an `ip -o link show dev X` output.
pub fn parse_ip_link_oneline(text: &str) -> Option<PodIface> {
    oneline_links(text).into_iter().find_map(|l| {
        Some(PodIface {
            mac: l.mac?,
            mtu: l.mtu?,
            up: l.up,
        })
    })
}

/// (name, MAC) of every Ethernet link of an `ip -o link` output.
pub fn ether_links(text: &str) -> Vec<(String, String)> {
    oneline_links(text)
        .into_iter()
        .filter_map(|l| Some((l.name, l.mac?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ip -o link` captured from iproute2 6.1 and busybox 1.35 in a namespace with a
    // veth pair v0/v1 (v0 at MTU 9000) and a macvtap mvt0 on v0.
    const O_LINK_IPROUTE2: &str = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n\
        3: v0@v1: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 9000 qdisc noqueue state LOWERLAYERDOWN mode DEFAULT group default qlen 1000\\    link/ether 72:be:4d:35:ec:ae brd ff:ff:ff:ff:ff:ff\n\
        4: mvt0@v0: <BROADCAST,MULTICAST> mtu 9000 qdisc noop state DOWN mode DEFAULT group default qlen 500\\    link/ether 56:e8:18:39:e9:56 brd ff:ff:ff:ff:ff:ff\n";
    const O_LINK_BUSYBOX: &str = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n\
        3: v0@v1: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 9000 qdisc noqueue qlen 1000\\    link/ether 72:be:4d:35:ec:ae brd ff:ff:ff:ff:ff:ff\n\
        4: mvt0@v0: <BROADCAST,MULTICAST> mtu 9000 qdisc noop qlen 500\\    link/ether 56:e8:18:39:e9:56 brd ff:ff:ff:ff:ff:ff\n";

    /// `ip -j …` outputs captured with iproute2 6.1 (see fixtures/ip/README.md).
    fn captured(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/ip")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn named<'a>(links: &'a [LinkFacts], name: &str) -> &'a LinkFacts {
        links.iter().find(|l| l.name == name).unwrap()
    }

    #[test]
    fn j_d_link_of_a_node_types_every_kind() {
        let links = links(&captured("node-j-d-link.json")).unwrap();
        assert_eq!(
            link_names(&links),
            ["lo", "v1", "v0", "mvt0", "mvl0", "br0", "vpod"]
        );
        let lo = named(&links, "lo");
        assert_eq!((lo.kind.as_str(), lo.mtu), ("", 65536));
        assert!(lo.has_flag("UP") && !lo.has_flag("PROMISC"));
        let v1 = named(&links, "v1");
        assert_eq!(v1.kind, "veth");
        assert_eq!(v1.master.as_deref(), Some("br0"));
        assert_eq!(v1.lower.as_deref(), Some("v0"));
        assert_eq!((v1.lower_index, v1.lower_netnsid), (None, None));
        let mvt = named(&links, "mvt0");
        assert_eq!(mvt.kind, "macvtap");
        assert_eq!(mvt.mode.as_deref(), Some("bridge"));
        assert_eq!(mvt.mac.as_deref(), Some("ba:d5:af:70:6d:76"));
        assert_eq!((mvt.mtu, mvt.operstate.as_str()), (9000, "DOWN"));
        assert!(mvt.has_flag("PROMISC") && !mvt.has_flag("UP"));
        assert_eq!(mvt.promiscuity, Some(1));
        let mvl = named(&links, "mvl0");
        assert_eq!(
            (mvl.kind.as_str(), mvl.mode.as_deref()),
            ("macvlan", Some("private"))
        );
        let br = named(&links, "br0");
        assert_eq!((br.kind.as_str(), br.mode.as_deref()), ("bridge", None));
        // The veth's peer moved to another namespace: an index and a netns id.
        let vpod = named(&links, "vpod");
        assert_eq!(
            (vpod.lower.as_deref(), vpod.lower_index, vpod.lower_netnsid),
            (None, Some(8), Some(0))
        );
        assert!(links.iter().all(|l| l.vlan_id.is_none()));
    }

    #[test]
    fn j_d_link_of_a_pod_sees_its_lower_device_by_index() {
        let all = links(&captured("pod-j-d-link.json")).unwrap();
        let net1 = named(&all, "net1");
        assert_eq!(net1.kind, "macvtap");
        assert_eq!((net1.mtu, net1.index), (1400, 9));
        assert_eq!(net1.mac.as_deref(), Some("02:5e:c0:00:00:01"));
        assert_eq!((net1.lower_index, net1.lower_netnsid), (Some(3), Some(0)));
        assert_eq!(
            net1.to_string(),
            "net1 (index 9, kind \"macvtap\", mac 02:5e:c0:00:00:01, UP)"
        );
        assert_eq!(named(&all, "eth0").lower_index, Some(7));
    }

    #[test]
    fn j_link_without_d_has_no_kind() {
        let all = links(&captured("node-j-link.json")).unwrap();
        assert!(all.iter().all(|l| l.kind.is_empty() && l.mode.is_none()));
        assert_eq!(named(&all, "v0").mtu, 9000);
        assert!(links("[]").unwrap().is_empty());
    }

    #[test]
    fn j_link_errors_quote_what_ip_printed() {
        let e = links("Device \"net9\" does not exist.").unwrap_err();
        assert!(matches!(e, ParseError::Json { .. }), "{e:?}");
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        let e = links(r#"{"ifname":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("not a JSON array"), "{e}");
    }

    #[test]
    fn j_link_errors_name_the_entry_and_the_field() {
        let mut all: Vec<Value> = serde_json::from_str(&captured("pod-j-d-link.json")).unwrap();
        all[1].as_object_mut().unwrap().remove("mtu");
        let e = links(&Value::Array(all.clone()).to_string()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`ip -j link` entry 1 (eth0): missing field `mtu`"
        );
        all[1]["mtu"] = "1500".into();
        let e = links(&Value::Array(all.clone()).to_string()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("`ip -j link` entry 1 (eth0) field mtu: invalid type: string"),
            "{e}"
        );
        all[1]["mtu"] = 1500.into();
        all[2]["linkinfo"]["info_data"]["mode"] = 1.into();
        let e = links(&Value::Array(all).to_string()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`ip -j link` entry 2 (net1): linkinfo.info_data.mode of a macvtap is 1"
        );
    }

    #[test]
    fn j_addr_types_ipv4_and_ipv6_addresses() {
        let node = addrs(&captured("node-j-addr.json")).unwrap();
        let v0 = node.iter().find(|a| a.link.name == "v0").unwrap();
        assert_eq!((v0.link.index, v0.link.mtu), (3, 9000));
        let [v4, global, local] = &v0.addrs[..] else {
            panic!("{v0:?}")
        };
        assert_eq!(
            (
                v4.family.as_str(),
                v4.local,
                v4.prefixlen,
                v4.scope.as_str()
            ),
            ("inet", "10.9.0.1".parse().unwrap(), 24, "global")
        );
        assert_eq!(global.local, "fd00:9::1".parse::<IpAddr>().unwrap());
        assert!(global.nodad && !global.tentative && !global.dadfailed);
        assert_eq!((local.scope.as_str(), local.nodad), ("link", false));
        assert!(
            node.iter()
                .any(|a| a.link.name == "mvt0" && a.addrs.is_empty())
        );
        assert_eq!(
            cidrs(&addrs(&captured("pod-j-4-addr-eth0.json")).unwrap()),
            ["10.9.3.5/24"]
        );
        let pod = addrs(&captured("pod-j-addr.json")).unwrap();
        let net1 = pod.iter().find(|a| a.link.name == "net1").unwrap();
        assert_eq!(net1.link.mac.as_deref(), Some("02:5e:c0:00:00:01"));
        assert_eq!(net1.addrs[0].to_string(), "fd00:9::7/64");
        let v6 = addrs(&captured("node-j-6-addr.json")).unwrap();
        assert!(if_addrs(&v6).iter().all(|a| a.family == "inet6"));
    }

    #[test]
    fn j_addr_of_no_address_is_empty() {
        assert!(
            addrs(&captured("pod-j-4-addr-net1.json"))
                .unwrap()
                .is_empty()
        );
        // What older iproute2 prints for an interface without an IPv4 address.
        assert!(cidrs(&addrs("[{}]").unwrap()).is_empty());
        let mut all: Vec<Value> = serde_json::from_str(&captured("pod-j-addr.json")).unwrap();
        all[2].as_object_mut().unwrap().remove("mtu");
        let e = addrs(&Value::Array(all.clone()).to_string()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`ip -j addr` entry 2 (net1): missing field `mtu`"
        );
        all[2]["mtu"] = 1400.into();
        all[2]["addr_info"][0]["local"] = "fd00:9::".into();
        assert!(addrs(&Value::Array(all.clone()).to_string()).is_ok());
        all[2]["addr_info"][0]["local"] = "fd00:9:::7".into();
        let e = addrs(&Value::Array(all).to_string()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("`ip -j addr` entry 2 (net1) field addr_info[0].local: invalid"),
            "{e}"
        );
    }

    #[test]
    fn o_link_reads_the_same_from_iproute2_and_busybox() {
        let a = oneline_links(O_LINK_IPROUTE2);
        assert_eq!(a, oneline_links(O_LINK_BUSYBOX));
        assert_eq!(
            a[1],
            OnelineLink {
                name: "v0".into(),
                mac: Some("72:be:4d:35:ec:ae".into()),
                mtu: Some(9000),
                up: true,
            }
        );
        assert_eq!((a[0].name.as_str(), a[0].mac.as_ref()), ("lo", None));
        assert!(!a[2].up);
        assert_eq!(
            ether_links(O_LINK_BUSYBOX),
            [
                ("v0".to_string(), "72:be:4d:35:ec:ae".to_string()),
                ("mvt0".to_string(), "56:e8:18:39:e9:56".to_string())
            ]
        );
    }

    // `ip -o addr show dev v0` with 10.9.0.1/24, fd00:9::1/64 nodad and fd00:9::2/64
    // just added (tentative), captured from iproute2 6.1 and busybox 1.35.
    const O_ADDR_IPROUTE2: &str = "3: v0    inet 10.9.0.1/24 scope global v0\\       valid_lft forever preferred_lft forever\n\
        3: v0    inet6 fd00:9::2/64 scope global tentative \\       valid_lft forever preferred_lft forever\n\
        3: v0    inet6 fd00:9::1/64 scope global nodad \\       valid_lft forever preferred_lft forever\n\
        3: v0    inet6 fe80::ec7c:21ff:fe18:ad88/64 scope link \\       valid_lft forever preferred_lft forever\n";
    const O_ADDR_BUSYBOX: &str = "3: v0    inet 10.9.0.1/24 scope global v0\\       valid_lft forever preferred_lft forever\n\
        3: v0    inet6 fd00:9::2/64 scope global tentative \\       valid_lft forever preferred_lft forever\n\
        3: v0    inet6 fd00:9::1/64 scope global flags 02 \\       valid_lft forever preferred_lft forever\n\
        3: v0    inet6 fe80::ec7c:21ff:fe18:ad88/64 scope link \\       valid_lft forever preferred_lft forever\n";

    #[test]
    fn o_addr_reads_the_same_from_iproute2_and_busybox() {
        let a = oneline_addrs(O_ADDR_IPROUTE2);
        assert_eq!(a, oneline_addrs(O_ADDR_BUSYBOX));
        let shown: Vec<(String, u8, bool, bool)> = a
            .iter()
            .map(|a| {
                let local = a.local.to_string();
                (local, a.prefixlen, a.tentative, a.is_link_local())
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("10.9.0.1".to_string(), 24, false, false),
                ("fd00:9::2".to_string(), 64, true, false),
                ("fd00:9::1".to_string(), 64, false, false),
                ("fe80::ec7c:21ff:fe18:ad88".to_string(), 64, false, true),
            ]
        );
        assert!(a.iter().all(|a| a.ifname == "v0"));
        assert!(oneline_addrs("Device \"net1\" does not exist.").is_empty());
    }

    #[test]
    fn o_link_of_one_device() {
        let one = O_LINK_BUSYBOX.lines().nth(2).unwrap();
        assert_eq!(
            parse_ip_link_oneline(one),
            Some(PodIface {
                mac: "56:e8:18:39:e9:56".into(),
                mtu: 9000,
                up: false
            })
        );
        assert_eq!(
            parse_ip_link_oneline("Device \"net1\" does not exist."),
            None
        );
    }
}
