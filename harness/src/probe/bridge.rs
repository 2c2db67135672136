//! The parser of `bridge -j fdb show …` (iproute2): what a Linux bridge has learnt.

use serde::Deserialize;

use super::ip::{ParseError, json_array, typed};

/// One forwarding entry of `bridge -j fdb show`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FdbEntry {
    pub(crate) mac: String,
    /// The port it was learnt on (or the bridge itself, for its own `self` entries).
    pub(crate) ifname: String,
    /// The bridge, for entries of a port.
    pub(crate) master: Option<String>,
    /// `self`, `extern_learn`, …
    pub(crate) flags: Vec<String>,
    /// `permanent`, `static`, or "" for a learnt entry.
    pub(crate) state: String,
}

/// The entries of `bridge -j fdb show …`.
pub fn fdb(json: &str) -> Result<Vec<FdbEntry>, ParseError> {
    typed("bridge -j fdb", json_array("bridge -j fdb", json)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdb_of_a_bridge_with_two_ports() {
        // Captured with iproute2 6.1: br0 with ports port0 and port1, veths whose
        // peers (02:00:00:00:00:0a behind port0) had pinged each other.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/ip/fabric-bridge-j-fdb.json");
        let entries = fdb(&std::fs::read_to_string(path).unwrap()).unwrap();
        let learnt: Vec<(&str, &str)> = entries
            .iter()
            .filter(|e| e.state.is_empty())
            .map(|e| (e.mac.as_str(), e.ifname.as_str()))
            .collect();
        assert_eq!(
            learnt,
            [
                ("02:00:00:00:00:0a", "port0"),
                ("56:d9:a2:e2:47:e3", "port1")
            ]
        );
        assert!(
            entries
                .iter()
                .filter(|e| e.ifname == "br0")
                .all(|e| e.master.is_none() && e.flags == ["self"] && e.state == "permanent")
        );
        let e = fdb(r#"[{"ifname":"port0","flags":[],"state":""}]"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`bridge -j fdb` entry 0 (port0): missing field `mac`"
        );
    }
}
