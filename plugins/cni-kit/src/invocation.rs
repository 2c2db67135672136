//! One plugin invocation: the `CNI_*` environment, the config on stdin, and the
//! protocol around them (VERSION, printing results and errors, exit codes).

use std::collections::HashMap;
use std::io::{Read, Write};

use serde::Deserialize;

use crate::error::{CniError, ErrorCode};
use crate::version::{SpecVersion, negotiate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    fn parse(s: &str) -> Result<Command, CniError> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => {
                return Err(CniError::new(
                    ErrorCode::InvalidEnvironment,
                    format!("unknown CNI_COMMAND \"{other}\""),
                )
                .with_details("CNI_COMMAND must be ADD, DEL, CHECK, VERSION, STATUS or GC"));
            }
        })
    }
}

/// What the runtime handed the plugin.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub command: Command,
    pub container_id: String,
    /// `None` when `CNI_NETNS` is unset or empty (allowed for DEL).
    pub netns: Option<String>,
    pub ifname: String,
    pub args: String,
    pub path: String,
    pub config: Vec<u8>,
    pub version: SpecVersion,
}

#[derive(Deserialize)]
struct VersionOnly {
    #[serde(rename = "cniVersion", default)]
    cni_version: Option<String>,
}

/// Decodes JSON into `T`. Syntax errors are decode errors (code 6) and wrong
/// types are config errors (code 7); both name the line, column and, for the
/// latter, the field path (`mtu`, `runtimeConfig.mac`, ...).
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, CniError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            CniError::new(
                ErrorCode::InvalidConfig,
                format!("failed to decode {what}: field {path}: {inner}"),
            )
            .with_details(format!("fix the value of \"{path}\""))
        } else {
            CniError::new(
                ErrorCode::Decode,
                format!("failed to decode {what}: {inner}"),
            )
            .with_details("the network configuration must be a JSON object")
        }
    })
}

impl Invocation {
    /// An ADD of `config` with `args` into `/run/netns/x` as `net1` at CNI 1.0.0: the
    /// input of config-parsing tests and fuzz targets.
    pub fn add_for_test(config: &[u8], args: &str) -> Invocation {
        Invocation {
            command: Command::Add,
            container_id: "c1".into(),
            netns: Some("/run/netns/x".into()),
            ifname: "net1".into(),
            args: args.into(),
            path: String::new(),
            config: config.to_vec(),
            version: SpecVersion::V1_0_0,
        }
    }

    /// Builds the invocation from a variable lookup and the stdin bytes; pure so that
    /// it can be unit-tested.
    pub fn from_parts(
        env: &HashMap<String, String>,
        stdin: Vec<u8>,
        supported: &[SpecVersion],
    ) -> Result<Invocation, CniError> {
        let get = |k: &str| env.get(k).cloned().unwrap_or_default();
        let command = Command::parse(&get("CNI_COMMAND"))?;
        let mut version = *supported.last().expect("a plugin supports a version");
        if command != Command::Version {
            let v: VersionOnly = decode(&stdin, "network configuration from stdin")?;
            let requested = v.cni_version.ok_or_else(|| {
                CniError::invalid_config("network configuration has no cniVersion")
                    .with_details("add \"cniVersion\": \"1.0.0\" (or another supported version)")
            })?;
            version = negotiate(&requested, supported)?;
            let allowed = match command {
                Command::Check => version.has_check(),
                Command::Status | Command::Gc => version.has_status_and_gc(),
                _ => true,
            };
            if !allowed {
                return Err(CniError::new(
                    ErrorCode::IncompatibleVersion,
                    format!("cniVersion {version} does not define CNI_COMMAND {command:?}"),
                )
                .with_details("CHECK needs cniVersion 0.4.0 or later; STATUS and GC need 1.1.0"));
            }
        }
        let required: &[&str] = match command {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Version | Command::Status | Command::Gc => &[],
        };
        for var in required {
            if get(var).is_empty() {
                return Err(CniError::new(
                    ErrorCode::InvalidEnvironment,
                    format!("required environment variable {var} is not set"),
                )
                .with_details(format!(
                    "the runtime must set {var} for CNI_COMMAND {command:?}"
                )));
            }
        }
        if !required.is_empty() {
            check_container_id(&get("CNI_CONTAINERID"))?;
            check_ifname(&get("CNI_IFNAME"))?;
        }
        let netns = Some(get("CNI_NETNS")).filter(|s| !s.is_empty());
        Ok(Invocation {
            command,
            container_id: get("CNI_CONTAINERID"),
            netns,
            ifname: get("CNI_IFNAME"),
            args: get("CNI_ARGS"),
            path: get("CNI_PATH"),
            config: stdin,
            version,
        })
    }
}

/// CNI_CONTAINERID as libcni accepts it: a letter or digit, then letters, digits,
/// `_`, `.` and `-`. Checked before any path is built from it (an absolute or `..`
/// id would otherwise name a file anywhere on the node).
pub fn check_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && id.len() <= 1024;
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            ErrorCode::InvalidEnvironment,
            format!("CNI_CONTAINERID {id:?} has characters a container id cannot have"),
        )
        .with_details(
            "container ids are a letter or digit followed by letters, digits, '_', '.' or '-'",
        ))
    }
}

/// CNI_IFNAME as the kernel and libcni accept it: 1–15 bytes, not `.`/`..`, no `/`,
/// `:` or whitespace; and no `%`, which the kernel takes as a template (`net%d`
/// becomes the first free `net<N>`, a name nobody asked for).
pub fn check_ifname(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| matches!(c, '/' | ':' | '%') || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            ErrorCode::InvalidEnvironment,
            format!("CNI_IFNAME {name:?} is not a valid interface name"),
        )
        .with_details("interface names are 1 to 15 characters without '/', ':', '%' or whitespace"))
    }
}

/// Prints the VERSION answer.
pub fn version_json(stdin: &[u8], supported: &[SpecVersion]) -> String {
    let requested = serde_json::from_slice::<VersionOnly>(stdin)
        .ok()
        .and_then(|v| v.cni_version)
        .unwrap_or_else(|| supported.last().unwrap().as_str().to_string());
    serde_json::json!({
        "cniVersion": requested,
        "supportedVersions": supported.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
    })
    .to_string()
}

/// The whole plugin protocol: reads the environment and stdin, answers VERSION,
/// calls `handler` for the other commands, prints its output (or the error JSON) and
/// exits with 0 or 1.
pub fn run_plugin(
    about: &str,
    supported: &[SpecVersion],
    handler: impl FnOnce(&Invocation) -> Result<Option<String>, CniError>,
) -> ! {
    // A person running the binary by hand gets help, not a CNI error.
    if let Some(arg) = std::env::args().nth(1) {
        let versions: Vec<&str> = supported.iter().map(|v| v.as_str()).collect();
        match arg.as_str() {
            "-h" | "--help" => {
                let me = std::env::args().next().unwrap_or_default();
                println!(
                    "{about}\n\nA CNI plugin: the runtime runs it with CNI_COMMAND (ADD, DEL, CHECK, VERSION, STATUS, GC),\nCNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS, CNI_PATH and the network config on stdin.\nSupported CNI versions: {}.\n\nExample:\n  echo '{{\"cniVersion\":\"1.0.0\"}}' | CNI_COMMAND=VERSION {me}",
                    versions.join(", ")
                );
                std::process::exit(0);
            }
            "-V" | "--version" => {
                println!(
                    "{} (CNI {})",
                    env!("CARGO_PKG_VERSION"),
                    versions.join(", ")
                );
                std::process::exit(0);
            }
            _ => {}
        }
    }
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CNI_"))
        .collect();
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let fallback_version = serde_json::from_slice::<VersionOnly>(&stdin)
        .ok()
        .and_then(|v| v.cni_version)
        .unwrap_or_else(|| supported.last().unwrap().as_str().to_string());
    let outcome = match read {
        Err(e) => Err(CniError::new(
            ErrorCode::Io,
            format!("failed to read stdin: {e}"),
        )),
        Ok(_) if env.get("CNI_COMMAND").map(String::as_str) == Some("VERSION") => {
            Ok(Some(version_json(&stdin, supported)))
        }
        Ok(_) => Invocation::from_parts(&env, stdin, supported).and_then(|inv| handler(&inv)),
    };
    let mut out = std::io::stdout().lock();
    let code = match outcome {
        Ok(Some(text)) => {
            let _ = writeln!(out, "{text}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&fallback_version));
            1
        }
    };
    let _ = out.flush();
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ALL: [SpecVersion; 5] = SpecVersion::RESULT_CAPABLE;

    #[test]
    fn add_needs_netns() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "net1"),
        ]);
        let err =
            Invocation::from_parts(&e, br#"{"cniVersion":"1.0.0"}"#.to_vec(), &ALL).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidEnvironment);
        assert!(err.msg.contains("CNI_NETNS"));
    }

    #[test]
    fn del_without_netns_is_fine() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "net1"),
        ]);
        let inv = Invocation::from_parts(&e, br#"{"cniVersion":"0.3.1"}"#.to_vec(), &ALL).unwrap();
        assert_eq!(inv.netns, None);
        assert_eq!(inv.version, SpecVersion::V0_3_1);
    }

    #[test]
    fn check_before_040_is_refused() {
        let e = env(&[
            ("CNI_COMMAND", "CHECK"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "n"),
        ]);
        let err =
            Invocation::from_parts(&e, br#"{"cniVersion":"0.3.1"}"#.to_vec(), &ALL).unwrap_err();
        assert_eq!(err.code, ErrorCode::IncompatibleVersion);
    }

    #[test]
    fn status_needs_110() {
        let e = env(&[("CNI_COMMAND", "STATUS")]);
        assert!(Invocation::from_parts(&e, br#"{"cniVersion":"1.0.0"}"#.to_vec(), &ALL).is_err());
        assert!(Invocation::from_parts(&e, br#"{"cniVersion":"1.1.0"}"#.to_vec(), &ALL).is_ok());
    }

    #[test]
    fn bad_json_is_decode_error_with_position() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "n"),
        ]);
        let err = Invocation::from_parts(&e, b"{\"cniVersion\": \n,}".to_vec(), &ALL).unwrap_err();
        assert_eq!(err.code, ErrorCode::Decode);
        assert!(err.msg.contains("line 2"), "{}", err.msg);
    }

    #[test]
    fn container_ids_and_ifnames_are_checked_before_use() {
        for (cid, ifname) in [
            ("/etc/passwd", "net1"),
            ("../../x", "net1"),
            ("-c", "net1"),
            ("c", "../x"),
            ("c", "a/b"),
            ("c", "sixteen-chars-xx"),
            ("c", ".."),
            ("c", "net 1"),
        ] {
            let e = env(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", cid),
                ("CNI_IFNAME", ifname),
            ]);
            let err = Invocation::from_parts(&e, br#"{"cniVersion":"1.0.0"}"#.to_vec(), &ALL)
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidEnvironment, "{cid} {ifname}");
        }
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "sn12ab34-c0_1.x"),
            ("CNI_IFNAME", "net1"),
        ]);
        Invocation::from_parts(&e, br#"{"cniVersion":"1.0.0"}"#.to_vec(), &ALL).unwrap();
    }

    #[test]
    fn unknown_command_is_code_4() {
        let e = env(&[("CNI_COMMAND", "FROB")]);
        let err = Invocation::from_parts(&e, b"{}".to_vec(), &ALL).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidEnvironment);
    }

    #[test]
    fn version_answer_lists_supported() {
        let v: serde_json::Value = serde_json::from_str(&version_json(b"", &ALL)).unwrap();
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 5);
        assert_eq!(v["cniVersion"], "1.1.0");
    }
}
