//! `CNI_ARGS`: `K=V;K=V` pairs. Unknown keys are an error unless `IgnoreUnknown`
//! is set, as in the reference plugins.

use crate::error::{CniError, ErrorCode};

/// Keys a Kubernetes runtime or multus always passes; known to every plugin here.
pub const K8S_KEYS: [&str; 4] = [
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parses `raw`, refusing keys outside `known` (plus `IgnoreUnknown` and the
    /// Kubernetes keys) unless `IgnoreUnknown` is `1` or `true`.
    pub fn parse(raw: &str, known: &[&str]) -> Result<CniArgs, CniError> {
        let mut pairs = Vec::new();
        for item in raw.split(';').filter(|s| !s.is_empty()) {
            let Some((k, v)) = item.split_once('=') else {
                return Err(CniError::new(
                    ErrorCode::InvalidEnvironment,
                    format!("CNI_ARGS item \"{item}\" is not KEY=VALUE"),
                )
                .with_details("CNI_ARGS must be KEY=VALUE pairs separated by ';'"));
            };
            pairs.push((k.to_string(), v.to_string()));
        }
        let args = CniArgs { pairs };
        let ignore_unknown = args
            .get("IgnoreUnknown")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        if !ignore_unknown {
            for (k, _) in &args.pairs {
                let is_known = k == "IgnoreUnknown"
                    || known.contains(&k.as_str())
                    || K8S_KEYS.contains(&k.as_str());
                if !is_known {
                    return Err(CniError::new(
                        ErrorCode::InvalidEnvironment,
                        format!("unknown CNI_ARGS key \"{k}\""),
                    )
                    .with_details(format!(
                        "known keys are {}; add IgnoreUnknown=1 to CNI_ARGS to pass others through",
                        known.join(", ")
                    )));
                }
            }
        }
        Ok(args)
    }

    /// The last value of `key` (keys are case-sensitive, like the Go plugins').
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_k8s_keys_pass() {
        let a = CniArgs::parse("MAC=02:00:00:00:00:01;K8S_POD_NAME=p", &["MAC"]).unwrap();
        assert_eq!(a.get("MAC"), Some("02:00:00:00:00:01"));
        assert_eq!(a.get("mac"), None, "keys are case-sensitive");
    }

    #[test]
    fn unknown_key_fails_unless_ignored() {
        let err = CniArgs::parse("FOO=1", &["MAC"]).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidEnvironment);
        assert!(err.msg.contains("FOO"));
        assert!(err.details.contains("IgnoreUnknown"));
        for ignore in [
            "IgnoreUnknown=1",
            "IgnoreUnknown=true",
            "IgnoreUnknown=TRUE",
        ] {
            CniArgs::parse(&format!("FOO=1;{ignore}"), &["MAC"]).unwrap();
        }
        assert!(CniArgs::parse("FOO=1;IgnoreUnknown=0", &["MAC"]).is_err());
    }

    #[test]
    fn malformed_item_fails() {
        let err = CniArgs::parse("MAC", &["MAC"]).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidEnvironment);
    }
}
