//! The one parser of each `ip` output secnet reads:
//!
//! - `ip -j [-d] link show …` and `ip -j addr show …` (iproute2 JSON): an array of
//!   objects, kept as JSON because scenarios compare raw fields (`link_index`,
//!   `linkinfo`, …); the accessors below read the common ones.
//! - `ip -o link show …` (one line per link): what iproute2 *and* busybox print, so
//!   the only form available in pod images on real clusters and in the VM guest.

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("`ip {what}` did not print JSON ({source}); it printed: {output}")]
    Json {
        what: &'static str,
        output: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("`ip {what}` printed {output}, not a JSON array")]
    NotArray { what: &'static str, output: String },
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

fn json_array(what: &'static str, text: &str) -> Result<Vec<Value>, ParseError> {
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

/// The links of `ip -j [-d] link show …` (empty when none matched).
pub fn links(json: &str) -> Result<Vec<Value>, ParseError> {
    json_array("-j link", json)
}

/// The entries (one per interface, each with `addr_info`) of `ip -j addr show …`.
pub fn addrs(json: &str) -> Result<Vec<Value>, ParseError> {
    json_array("-j addr", json)
}

/// `ifname` of every link.
pub fn link_names(links: &[Value]) -> Vec<String> {
    links
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// `linkinfo.info_kind` of an `ip -j -d` link ("" without `-d` or for a plain device).
pub fn link_kind(link: &Value) -> &str {
    link["linkinfo"]["info_kind"].as_str().unwrap_or("")
}

/// The flags of an `ip -j` link (`UP`, `PROMISC`, ...).
pub fn link_flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// One link of `ip -j -d link show`, typed: the fields the scenarios check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u64,
    /// `link_index`: the lower device's (or veth peer's) index, if any.
    pub lower_index: Option<u64>,
    /// `linkinfo.info_kind` ("" for a plain device or without `-d`).
    pub kind: String,
    /// The link-layer address (`address`), if it has one.
    pub mac: Option<String>,
    pub mtu: Option<u64>,
    /// `operstate` (`UP`, `DOWN`, `LOWERLAYERDOWN`, …).
    pub operstate: String,
    /// `UP`, `PROMISC`, … as iproute2 prints them.
    pub flags: Vec<String>,
}

impl Link {
    /// The typed form of one element of `ip -j -d link show`'s array.
    pub fn from_json(link: &Value) -> Link {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Link {
            name: text(&link["ifname"]),
            index: link["ifindex"].as_u64().unwrap_or_default(),
            lower_index: link["link_index"].as_u64(),
            kind: link_kind(link).to_string(),
            mac: link["address"].as_str().map(str::to_string),
            mtu: link["mtu"].as_u64(),
            operstate: text(&link["operstate"]),
            flags: link_flags(link),
        }
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (index {}, kind {:?}, mac {}, {})",
            self.name,
            self.index,
            self.kind,
            self.mac.as_deref().unwrap_or("none"),
            self.operstate
        )
    }
}

/// Owner (uid, gid) of `/dev/tap<ifindex>` for an `ip -j` macvtap link.
pub fn tap_owner(link: &Value) -> std::io::Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(format!("/dev/tap{}", link["ifindex"]))?;
    Ok((meta.uid(), meta.gid()))
}

/// Every address of an `ip -j addr` output as `local/prefixlen`, in order.
pub fn cidrs(addrs: &[Value]) -> Vec<String> {
    addrs
        .iter()
        .flat_map(|entry| entry["addr_info"].as_array().into_iter().flatten())
        .filter_map(|a| {
            Some(format!(
                "{}/{}",
                a["local"].as_str()?,
                a["prefixlen"].as_u64()?
            ))
        })
        .collect()
}

/// One line of `ip -o link`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnelineLink {
    /// Without the `@peer` part.
    pub name: String,
    /// The `link/ether` address; None for loopback, tunnels, …
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    /// `UP` among the flags (administratively up).
    pub up: bool,
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

/// An Ethernet interface as `ip -o link show dev X` prints it (see [`oneline_links`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIface {
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
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

    // Captured from iproute2 6.1 and busybox 1.35 in a namespace with a veth pair
    // v0/v1 (v0 at MTU 9000 with 10.9.0.1/24) and a macvtap mvt0 on v0.
    const J_D_LINK: &str = r#"[{"ifindex":4,"link":"v0","ifname":"mvt0","flags":["BROADCAST","MULTICAST"],"mtu":9000,"qdisc":"noop","operstate":"DOWN","linkmode":"DEFAULT","group":"default","txqlen":500,"link_type":"ether","address":"56:e8:18:39:e9:56","broadcast":"ff:ff:ff:ff:ff:ff","promiscuity":0,"allmulti":0,"min_mtu":68,"max_mtu":65535,"linkinfo":{"info_kind":"macvtap","info_data":{"mode":"bridge","bcqueuelen":1000,"usedbcqueuelen":1000}},"inet6_addr_gen_mode":"eui64","num_tx_queues":1,"num_rx_queues":1,"gso_max_size":65536,"gso_max_segs":65535,"tso_max_size":524280,"tso_max_segs":65535,"gro_max_size":65536}]"#;
    const J_LINK: &str = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"qdisc":"noqueue","operstate":"UNKNOWN","linkmode":"DEFAULT","group":"default","txqlen":1000,"link_type":"loopback","address":"00:00:00:00:00:00","broadcast":"00:00:00:00:00:00"},{"ifindex":2,"link":"v0","ifname":"v1","flags":["BROADCAST","MULTICAST"],"mtu":1500,"qdisc":"noop","operstate":"DOWN","linkmode":"DEFAULT","group":"default","txqlen":1000,"link_type":"ether","address":"9e:d6:08:fb:0d:17","broadcast":"ff:ff:ff:ff:ff:ff"},{"ifindex":3,"link":"v1","ifname":"v0","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP","M-DOWN"],"mtu":9000,"qdisc":"noqueue","operstate":"LOWERLAYERDOWN","linkmode":"DEFAULT","group":"default","txqlen":1000,"link_type":"ether","address":"72:be:4d:35:ec:ae","broadcast":"ff:ff:ff:ff:ff:ff"}]"#;
    const J_ADDR: &str = r#"[{"ifindex":3,"link":"v1","ifname":"v0","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP","M-DOWN"],"mtu":9000,"qdisc":"noqueue","operstate":"LOWERLAYERDOWN","group":"default","txqlen":1000,"addr_info":[{"family":"inet","local":"10.9.0.1","prefixlen":24,"scope":"global","label":"v0","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"#;
    const O_LINK_IPROUTE2: &str = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n\
        3: v0@v1: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 9000 qdisc noqueue state LOWERLAYERDOWN mode DEFAULT group default qlen 1000\\    link/ether 72:be:4d:35:ec:ae brd ff:ff:ff:ff:ff:ff\n\
        4: mvt0@v0: <BROADCAST,MULTICAST> mtu 9000 qdisc noop state DOWN mode DEFAULT group default qlen 500\\    link/ether 56:e8:18:39:e9:56 brd ff:ff:ff:ff:ff:ff\n";
    const O_LINK_BUSYBOX: &str = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n\
        3: v0@v1: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 9000 qdisc noqueue qlen 1000\\    link/ether 72:be:4d:35:ec:ae brd ff:ff:ff:ff:ff:ff\n\
        4: mvt0@v0: <BROADCAST,MULTICAST> mtu 9000 qdisc noop qlen 500\\    link/ether 56:e8:18:39:e9:56 brd ff:ff:ff:ff:ff:ff\n";

    #[test]
    fn j_link_is_read_with_kind_flags_and_names() {
        let mvt = links(J_D_LINK).unwrap();
        assert_eq!(link_kind(&mvt[0]), "macvtap");
        assert_eq!(link_flags(&mvt[0]), ["BROADCAST", "MULTICAST"]);
        let all = links(J_LINK).unwrap();
        assert_eq!(link_names(&all), ["lo", "v1", "v0"]);
        assert_eq!(link_kind(&all[2]), "", "no linkinfo without -d");
        assert!(link_flags(&all[2]).contains(&"UP".to_string()));
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
    fn j_addr_gives_cidrs() {
        assert_eq!(cidrs(&addrs(J_ADDR).unwrap()), ["10.9.0.1/24"]);
        assert!(cidrs(&addrs("[{}]").unwrap()).is_empty());
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
