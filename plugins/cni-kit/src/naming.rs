//! Host-side macvtap link names and marks for device IDs: the macvtap CNI, the device
//! plugin and the harness (which finds the links the plugins made) name them alike.

use crate::policy::DEVICE_PLUGIN_ALIAS_PREFIX;
use xxhash_rust::xxh64::xxh64;

/// `mvt` + 12 lowercase hex digits of the low 48 bits of XXH64(deviceID, seed 0):
/// always 15 characters, so long resource names cannot overflow IFNAMSIZ.
pub fn hashed_link_name(device_id: &str) -> String {
    format!(
        "mvt{:012x}",
        xxh64(device_id.as_bytes(), 0) & 0xffff_ffff_ffff
    )
}

/// The mark (ifalias) the device plugin sets on every macvtap it makes for
/// `device_id`: the CNI takes a link under the raw deviceID name only with it.
pub fn device_plugin_mark(device_id: &str) -> String {
    format!("{DEVICE_PLUGIN_ALIAS_PREFIX}{device_id}")
}

/// Temporary name of a macvtap created in standalone mode, unique per attachment.
pub fn standalone_temp_name(container_id: &str, ifname: &str) -> String {
    let key = format!("{container_id}/{ifname}");
    format!("mvs{:012x}", xxh64(key.as_bytes(), 0) & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_upstream_vectors() {
        assert_eq!(hashed_link_name("eth0Mvp0"), "mvtf2644cc3624e");
        assert_eq!(hashed_link_name("dataplaneMvp0"), "mvtcc7b47d9091b");
        assert_eq!(hashed_link_name("lower0Mvp0"), "mvt0000b9aa07ae");
    }

    #[test]
    fn names_fit_ifnamsiz() {
        assert_eq!(hashed_link_name("a-very-long-resource-nameMvp99").len(), 15);
        assert_eq!(standalone_temp_name("c0ffee", "net1").len(), 15);
        assert_ne!(
            standalone_temp_name("c1", "net1"),
            standalone_temp_name("c1", "net2")
        );
    }
}
