//! Turning the failures every plugin meets (netlink, I/O, a missing netns, a bad
//! MAC) into CNI errors with the right spec code and a message naming what failed.

use nix::errno::Errno;

use crate::error::{CniError, ErrorCode};
use crate::mac::MacAddr;
use crate::netns::{NetNs, errno};

/// A kernel refusal; busy/again map to "try again later" (code 11).
pub fn netlink(what: impl std::fmt::Display, err: rtnetlink::Error) -> CniError {
    let code = match errno(&err) {
        Some(e) if e == Errno::EBUSY as i32 || e == Errno::EAGAIN as i32 => {
            ErrorCode::TryAgainLater
        }
        _ => ErrorCode::Plugin,
    };
    CniError::new(code, format!("failed to {what}: {err}"))
}

pub fn io(what: impl std::fmt::Display, err: std::io::Error) -> CniError {
    CniError::new(ErrorCode::Io, format!("failed to {what}: {err}"))
}

/// Opens CNI_NETNS; a missing namespace is "container unknown" (code 3), the
/// node's own namespace is refused (see [`refuse_own_netns`]).
pub fn open_netns(path: &str) -> Result<NetNs, CniError> {
    let ns = NetNs::open(path).map_err(|e| {
        CniError::new(
            ErrorCode::ContainerUnknown,
            format!("failed to open network namespace {path}: {e}"),
        )
        .with_details("CNI_NETNS must name an existing network namespace file (/run/netns/<name> or /proc/<pid>/ns/net)")
    })?;
    refuse_own_netns(&ns)?;
    Ok(ns)
}

/// A container's namespace is never the plugin's own: ADD would rename and
/// configure the node's links, DEL delete them.
pub fn refuse_own_netns(ns: &NetNs) -> Result<(), CniError> {
    match ns.is_callers_own() {
        Ok(false) => Ok(()),
        Ok(true) => Err(CniError::new(
            ErrorCode::InvalidEnvironment,
            format!(
                "CNI_NETNS {} is the node's own network namespace: refused",
                ns.path().display()
            ),
        )
        .with_details("CNI_NETNS must be the container's network namespace, never the host's")),
        Err(e) => Err(io(
            format!(
                "compare {} with the node's network namespace",
                ns.path().display()
            ),
            e,
        )),
    }
}

/// A requested MAC: well-formed and unicast. `origin` names where it came from.
pub fn requested_mac(value: &str, origin: &str, code: ErrorCode) -> Result<MacAddr, CniError> {
    let mac: MacAddr = value
        .parse()
        .map_err(|e| CniError::new(code, format!("{origin}: {e}")))?;
    if mac.is_multicast() || mac.is_zero() {
        return Err(CniError::new(
            code,
            format!("{origin}: {mac} is not a unicast MAC address"),
        )
        .with_details("use a unicast address; locally administered ones start with 02:"));
    }
    Ok(mac)
}

/// The MAC a runtime asked for, first found of `runtimeConfig.mac`, `args.cni.mac`
/// and CNI_ARGS `MAC=` (the order the reference plugins use).
pub fn mac_from_sources(
    runtime_config: Option<&str>,
    args_cni: Option<&str>,
    cni_args: Option<&str>,
) -> Result<Option<MacAddr>, CniError> {
    fn present(v: Option<&str>) -> Option<&str> {
        v.filter(|s| !s.is_empty())
    }
    if let Some(m) = present(runtime_config) {
        return requested_mac(m, "runtimeConfig.mac", ErrorCode::InvalidConfig).map(Some);
    }
    if let Some(m) = present(args_cni) {
        return requested_mac(m, "args.cni.mac", ErrorCode::InvalidConfig).map(Some);
    }
    present(cni_args)
        .map(|m| requested_mac(m, "CNI_ARGS MAC", ErrorCode::InvalidEnvironment))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_sources_in_order_with_their_codes() {
        let m = mac_from_sources(
            Some("02:00:00:00:00:01"),
            Some("02:00:00:00:00:02"),
            Some("02:00:00:00:00:03"),
        )
        .unwrap();
        assert_eq!(m.unwrap().to_string(), "02:00:00:00:00:01");
        let m = mac_from_sources(Some(""), None, Some("02:00:00:00:00:03")).unwrap();
        assert_eq!(m.unwrap().to_string(), "02:00:00:00:00:03");
        assert_eq!(mac_from_sources(None, None, None).unwrap(), None);
        let e = mac_from_sources(None, None, Some("zz")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        let e = mac_from_sources(None, Some("01:00:5e:00:00:01"), None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.msg.starts_with("args.cni.mac") && e.msg.contains("unicast"));
    }
}
