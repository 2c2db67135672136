//! CNI spec versions and the negotiation rules between a config and a plugin.

use std::fmt;
use std::str::FromStr;

use crate::error::{CniError, ErrorCode};

/// A CNI spec version this code knows about. Ordered oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecVersion {
    V0_1_0,
    V0_2_0,
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl SpecVersion {
    pub const ALL: [SpecVersion; 7] = [
        SpecVersion::V0_1_0,
        SpecVersion::V0_2_0,
        SpecVersion::V0_3_0,
        SpecVersion::V0_3_1,
        SpecVersion::V0_4_0,
        SpecVersion::V1_0_0,
        SpecVersion::V1_1_0,
    ];

    /// Versions whose result format (`interfaces`/`ips`) the bundled plugins emit.
    pub const RESULT_CAPABLE: [SpecVersion; 5] = [
        SpecVersion::V0_3_0,
        SpecVersion::V0_3_1,
        SpecVersion::V0_4_0,
        SpecVersion::V1_0_0,
        SpecVersion::V1_1_0,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V0_1_0 => "0.1.0",
            SpecVersion::V0_2_0 => "0.2.0",
            SpecVersion::V0_3_0 => "0.3.0",
            SpecVersion::V0_3_1 => "0.3.1",
            SpecVersion::V0_4_0 => "0.4.0",
            SpecVersion::V1_0_0 => "1.0.0",
            SpecVersion::V1_1_0 => "1.1.0",
        }
    }

    /// CHECK exists from 0.4.0 on.
    pub fn has_check(self) -> bool {
        self >= SpecVersion::V0_4_0
    }

    /// STATUS and GC exist from 1.1.0 on.
    pub fn has_status_and_gc(self) -> bool {
        self >= SpecVersion::V1_1_0
    }

    /// Results carry `interfaces[].mtu` and drop `ips[].version` from 1.0.0 on.
    pub fn is_v1(self) -> bool {
        self >= SpecVersion::V1_0_0
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SpecVersion {
    type Err = CniError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpecVersion::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                CniError::new(
                    ErrorCode::IncompatibleVersion,
                    format!("unknown CNI spec version \"{s}\" in cniVersion"),
                )
                .with_details(format!(
                    "set cniVersion to one of {}",
                    SpecVersion::ALL.map(|v| v.as_str()).join(", ")
                ))
            })
    }
}

/// Checks that `requested` (the config's `cniVersion`) is one the plugin supports.
pub fn negotiate(requested: &str, supported: &[SpecVersion]) -> Result<SpecVersion, CniError> {
    let version: SpecVersion = requested.parse()?;
    if supported.contains(&version) {
        Ok(version)
    } else {
        Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            format!("cniVersion {version} is not supported by this plugin"),
        )
        .with_details(format!(
            "set cniVersion to one of {}",
            supported
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_ordered_and_round_trip() {
        for pair in SpecVersion::ALL.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        for v in SpecVersion::ALL {
            assert_eq!(v.as_str().parse::<SpecVersion>().unwrap(), v);
        }
    }

    #[test]
    fn unsupported_and_unknown_versions_are_code_1() {
        let err = negotiate("0.2.0", &SpecVersion::RESULT_CAPABLE).unwrap_err();
        assert_eq!(err.code, ErrorCode::IncompatibleVersion);
        assert!(err.details.contains("0.3.0"), "{}", err.details);
        let err = negotiate("9.9.9", &SpecVersion::RESULT_CAPABLE).unwrap_err();
        assert_eq!(err.code, ErrorCode::IncompatibleVersion);
        assert!(err.msg.contains("9.9.9"));
    }
}
