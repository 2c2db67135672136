//! The plugin's configuration: upstream's `DP_MACVTAP_CONF` JSON array of
//! `{name, lowerDevice, mode, capacity}` (plus optional `owner`/`group` for
//! `/dev/tapN`). Everything is checked at start-up, and every problem names the
//! entry, the field and the fix: upstream accepts most mistakes silently and the
//! node then shows no resource, or fails only at Allocate time.

use serde_json::{Map, Value};

/// Upstream's default when `capacity` is missing.
pub const DEFAULT_CAPACITY: u32 = 100;
/// An upper bound that keeps one ListAndWatch message far below gRPC's 4 MiB limit.
pub const MAX_CAPACITY: u32 = 10_000;
/// The largest config accepted: a ConfigMap holds at most 1 MiB.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
/// The most resources one plugin serves (each is a socket, a gRPC server and a
/// registration; a node has a handful of lower devices).
pub const MAX_RESOURCES: usize = 512;
/// Linux interface names are at most 15 bytes (IFNAMSIZ 16 with the NUL).
pub const IFNAME_MAX: usize = 15;
/// Kubernetes limits the name part of an extended resource name to 63 characters.
pub const RESOURCE_NAME_MAX: usize = 63;

const KNOWN_KEYS: &[&str] = &[
    "name",
    "lowerDevice",
    "master",
    "mode",
    "capacity",
    "owner",
    "group",
];

/// macvtap modes, as the kernel names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bridge,
    Private,
    Vepa,
    Passthru,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s {
            "" | "bridge" => Some(Mode::Bridge),
            "private" => Some(Mode::Private),
            "vepa" => Some(Mode::Vepa),
            "passthru" => Some(Mode::Passthru),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::Private => "private",
            Mode::Vepa => "vepa",
            Mode::Passthru => "passthru",
        }
    }
}

/// One resource: `capacity` macvtaps on `lower_device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceConfig {
    pub name: String,
    pub lower_device: String,
    pub mode: Mode,
    pub capacity: u32,
    /// Owner and group of `/dev/tapN` after Allocate; `None` leaves the kernel's root.
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

impl ResourceConfig {
    /// A resource for an auto-discovered link: named after it, upstream's defaults.
    pub fn discovered(ifname: &str) -> ResourceConfig {
        ResourceConfig {
            name: ifname.to_string(),
            lower_device: ifname.to_string(),
            mode: Mode::Bridge,
            capacity: DEFAULT_CAPACITY,
            owner: None,
            group: None,
        }
    }
}

/// What the plugin serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Config {
    /// The listed resources.
    Explicit(Vec<ResourceConfig>),
    /// `[]`: one resource per physical or bond link, following links as they come and go.
    Discover,
}

/// A parsed config and the warnings it deserves.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub config: Config,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "failed to parse macvtap config from {origin}: {message} at line {line} column {column}\n{excerpt}\nfix: {fix}"
    )]
    Syntax {
        origin: String,
        message: String,
        line: usize,
        column: usize,
        excerpt: String,
        fix: String,
    },
    #[error(
        "failed to read macvtap config from {origin}: expected a JSON array of resources, found {found}; fix: wrap the entries in [ ... ] (an empty [] auto-discovers physical and bond links)"
    )]
    NotAnArray { origin: String, found: String },
    #[error(
        "failed to read macvtap config from {origin}: it has more than {MAX_CONFIG_BYTES} bytes; fix: list only the lower devices of this node (a ConfigMap holds at most 1 MiB)"
    )]
    TooLarge {
        origin: String,
        /// At least this many (a file is read only up to one byte past the limit).
        bytes: usize,
    },
    #[error(
        "failed to read macvtap config from {origin}: it lists {count} resources, more than {MAX_RESOURCES}; fix: list only the lower devices of this node, one entry each"
    )]
    TooManyEntries { origin: String, count: usize },
    #[error(
        "failed to read macvtap config from {origin}: {entry}: field \"{field}\": {problem}; fix: {fix}"
    )]
    Entry {
        origin: String,
        /// `entry <1-based index>`, plus ` ("name")` when it has a readable name.
        entry: String,
        field: String,
        problem: String,
        fix: String,
    },
}

/// Parses and checks the config text. `origin` says where it came from
/// (`DP_MACVTAP_CONF`, a file path) for the error messages.
pub fn parse(text: &str, origin: &str) -> Result<Parsed, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            origin: origin.to_string(),
            bytes: text.len(),
        });
    }
    let value: Value = serde_json::from_str(text).map_err(|e| syntax_error(text, origin, &e))?;
    let Value::Array(entries) = value else {
        return Err(ConfigError::NotAnArray {
            origin: origin.to_string(),
            found: json_type(&value).to_string(),
        });
    };
    if entries.is_empty() {
        return Ok(Parsed {
            config: Config::Discover,
            warnings: Vec::new(),
        });
    }
    if entries.len() > MAX_RESOURCES {
        return Err(ConfigError::TooManyEntries {
            origin: origin.to_string(),
            count: entries.len(),
        });
    }
    let mut warnings = Vec::new();
    let mut resources: Vec<ResourceConfig> = Vec::with_capacity(entries.len());
    // Name → 1-based entry index, for duplicates in O(n).
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = EntryAt {
            origin,
            index: i + 1,
            name: entry
                .get("name")
                .and_then(Value::as_str)
                .map(|n| format!(" (\"{n}\")"))
                .unwrap_or_default(),
        };
        let resource = parse_entry(entry, &at, &mut warnings)?;
        if let Some(first) = seen.insert(resource.name.clone(), i + 1) {
            return Err(at.error(
                "name",
                format!("\"{}\" is already the name of entry {first}", resource.name),
                "give every entry its own name: each name is a separate resource",
            ));
        }
        resources.push(resource);
    }
    Ok(Parsed {
        config: Config::Explicit(resources),
        warnings,
    })
}

/// Where an entry is, for its error messages.
struct EntryAt<'a> {
    origin: &'a str,
    index: usize,
    name: String,
}

impl EntryAt<'_> {
    fn error(
        &self,
        field: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Entry {
            origin: self.origin.to_string(),
            entry: format!("entry {}{}", self.index, self.name),
            field: field.to_string(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

fn parse_entry(
    entry: &Value,
    at: &EntryAt,
    warnings: &mut Vec<String>,
) -> Result<ResourceConfig, ConfigError> {
    let Value::Object(map) = entry else {
        return Err(at.error(
            "(entry)",
            format!("expected an object, found {}", json_type(entry)),
            "write each entry as {\"name\": ..., \"lowerDevice\": ..., \"mode\": ..., \"capacity\": ...}",
        ));
    };
    if let Some(key) = map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
        return Err(at.error(
            key,
            "unknown key",
            format!(
                "remove it or correct the spelling; known keys are {}",
                KNOWN_KEYS
                    .iter()
                    .filter(|k| **k != "master")
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }

    let name = required_string(map, "name", at)?;
    check_resource_name(&name, at)?;

    let lower_device = match (
        optional_string(map, "lowerDevice", at)?,
        optional_string(map, "master", at)?,
    ) {
        (Some(_), Some(_)) => {
            return Err(at.error(
                "master",
                "both \"lowerDevice\" and its old name \"master\" are set",
                "keep only \"lowerDevice\"",
            ));
        }
        (Some(lower), None) => lower,
        (None, Some(master)) => {
            warnings.push(format!(
                "entry {}{}: \"master\" is the old name of \"lowerDevice\" (upstream ignores it and the node shows no resource); using \"{master}\" as lowerDevice; rename the key to \"lowerDevice\"",
                at.index, at.name
            ));
            master
        }
        (None, None) => {
            return Err(at.error(
                "lowerDevice",
                "missing",
                "set \"lowerDevice\" to the host interface the macvtaps sit on, e.g. \"eth0\"",
            ));
        }
    };
    check_ifname(&lower_device, at)?;

    let mode = match optional_string(map, "mode", at)? {
        None => Mode::Bridge,
        Some(m) => Mode::parse(&m).ok_or_else(|| {
            at.error(
                "mode",
                format!("unknown mode \"{m}\""),
                "use one of \"bridge\" (the default), \"private\", \"vepa\", \"passthru\"",
            )
        })?,
    };

    let capacity = match map.get("capacity") {
        None | Some(Value::Null) => DEFAULT_CAPACITY,
        Some(v) => {
            match v.as_i64() {
                Some(c) if c <= 0 => {
                    return Err(at.error(
                    "capacity",
                    format!("{c} is not a usable capacity (upstream silently turns it into {DEFAULT_CAPACITY})"),
                    format!("set a capacity from 1 to {MAX_CAPACITY}, or leave it out for {DEFAULT_CAPACITY}"),
                ));
                }
                Some(c) if c > i64::from(MAX_CAPACITY) => {
                    return Err(at.error(
                        "capacity",
                        format!("{c} is more than {MAX_CAPACITY}"),
                        format!("set a capacity from 1 to {MAX_CAPACITY}"),
                    ));
                }
                Some(c) => c as u32,
                None => {
                    return Err(at.error(
                    "capacity",
                    format!("expected a whole number, found {}", describe(v)),
                    format!("write it as a number without quotes, e.g. \"capacity\": {DEFAULT_CAPACITY}"),
                ));
                }
            }
        }
    };

    Ok(ResourceConfig {
        name,
        lower_device,
        mode,
        capacity,
        owner: optional_id(map, "owner", at)?,
        group: optional_id(map, "group", at)?,
    })
}

fn required_string(
    map: &Map<String, Value>,
    field: &str,
    at: &EntryAt,
) -> Result<String, ConfigError> {
    optional_string(map, field, at)?.ok_or_else(|| {
        at.error(
            field,
            "missing",
            format!(
                "set \"{field}\"; it becomes the resource macvtap.network.kubevirt.io/<{field}>"
            ),
        )
    })
}

fn optional_string(
    map: &Map<String, Value>,
    field: &str,
    at: &EntryAt,
) -> Result<Option<String>, ConfigError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(at.error(
            field,
            format!("expected a string, found {}", describe(v)),
            format!(
                "write it in quotes, e.g. \"{field}\": \"{}\"",
                v.to_string().trim_matches('"')
            ),
        )),
    }
}

fn optional_id(
    map: &Map<String, Value>,
    field: &str,
    at: &EntryAt,
) -> Result<Option<u32>, ConfigError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(id) => Ok(Some(id)),
            None => Err(at.error(
                field,
                format!("expected a numeric id, found {}", describe(v)),
                format!(
                    "write the numeric {} id of /dev/tapN, e.g. \"{field}\": 107",
                    if field == "owner" { "user" } else { "group" }
                ),
            )),
        },
    }
}

/// The name ends up in the resource name and in a socket file name: keep it to the
/// characters Kubernetes allows in a resource name.
fn check_resource_name(name: &str, at: &EntryAt) -> Result<(), ConfigError> {
    let fix = "use letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters";
    if name.is_empty() {
        return Err(at.error("name", "is empty", fix));
    }
    if name.len() > RESOURCE_NAME_MAX {
        return Err(at.error(
            "name",
            format!("\"{name}\" has {} characters", name.len()),
            fix,
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !name.chars().all(allowed) || !edge_ok(name.chars().next()) || !edge_ok(name.chars().last())
    {
        return Err(at.error(
            "name",
            format!("\"{name}\" is not a valid resource name"),
            fix,
        ));
    }
    Ok(())
}

/// `lowerDevice` names a Linux interface: at most 15 bytes, no '/', ':' or spaces.
fn check_ifname(ifname: &str, at: &EntryAt) -> Result<(), ConfigError> {
    if ifname.is_empty() {
        return Err(at.error(
            "lowerDevice",
            "is empty",
            "set it to a host interface name, e.g. \"eth0\"",
        ));
    }
    if ifname.len() > IFNAME_MAX {
        return Err(at.error(
            "lowerDevice",
            format!("\"{ifname}\" has {} characters, more than an interface name can have ({IFNAME_MAX})", ifname.len()),
            "use the interface's real name as `ip link` shows it",
        ));
    }
    if ifname
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
        || ifname == "."
        || ifname == ".."
    {
        return Err(at.error(
            "lowerDevice",
            format!("\"{ifname}\" cannot be an interface name"),
            "use the interface's real name as `ip link` shows it",
        ));
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn describe(v: &Value) -> String {
    format!("{} ({v})", json_type(v))
}

/// A syntax error with its position, moved onto the offending comma for trailing
/// commas (serde_json reports the bracket after it), and the line shown with a caret.
fn syntax_error(text: &str, origin: &str, err: &serde_json::Error) -> ConfigError {
    let message = err.to_string();
    // serde_json appends " at line L column C"; we print the position ourselves.
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m)
        .to_string();
    let (mut line, mut column) = (err.line().max(1), err.column().max(1));
    let mut fix = "correct the JSON at the position shown".to_string();
    if message.starts_with("trailing comma") {
        if let Some((l, c)) =
            offset_of(text, line, column).and_then(|end| previous_comma(text, end))
        {
            (line, column) = (l, c);
        }
        fix = "remove the comma after the last entry (JSON allows no trailing comma)".to_string();
    } else if err.is_eof() {
        fix = "the text ends too early: close every [ and { that is open".to_string();
    }
    ConfigError::Syntax {
        origin: origin.to_string(),
        message,
        line,
        column,
        excerpt: excerpt(text, line, column),
        fix,
    }
}

/// Byte offset of a 1-based (line, column) position; serde_json counts columns in bytes.
fn offset_of(text: &str, line: usize, column: usize) -> Option<usize> {
    let start: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let offset = start + column.saturating_sub(1);
    (offset <= text.len()).then_some(offset)
}

/// The (line, column) of the last non-blank character before `end` if it is a comma.
fn previous_comma(text: &str, end: usize) -> Option<(usize, usize)> {
    let before = text.get(..end)?;
    let (offset, c) = before
        .char_indices()
        .rev()
        .find(|(_, c)| !c.is_whitespace())?;
    if c != ',' {
        return None;
    }
    let line = before[..offset].matches('\n').count() + 1;
    let line_start = before[..offset].rfind('\n').map_or(0, |i| i + 1);
    Some((line, offset - line_start + 1))
}

fn excerpt(text: &str, line: usize, column: usize) -> String {
    let content = text.lines().nth(line - 1).unwrap_or("");
    let caret_at = content
        .get(..column.saturating_sub(1))
        .map_or(0, |p| p.chars().count());
    format!("  {line:>3} | {content}\n      | {}^", " ".repeat(caret_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_WITH_MASTER_AND_TRAILING_COMMA: &str = "[\n    {\n        \"name\"     : \"dataplane\",\n        \"master\"   : \"ens33\",\n        \"mode\"     : \"bridge\",\n        \"capacity\" : 50\n    },\n]\n";

    fn entry_error(text: &str) -> (String, String) {
        match parse(text, "test").unwrap_err() {
            ConfigError::Entry { field, problem, .. } => (field, problem),
            other => panic!("expected an entry error, got {other}"),
        }
    }

    #[test]
    fn seed_explicit_config_parses() {
        let text = r#"[ {
        "name" : "dataplane",
        "lowerDevice" : "ens33",
        "mode": "bridge",
        "capacity" : 50
     } ]"#;
        let parsed = parse(text, "test").unwrap();
        assert!(parsed.warnings.is_empty());
        assert_eq!(
            parsed.config,
            Config::Explicit(vec![ResourceConfig {
                name: "dataplane".into(),
                lower_device: "ens33".into(),
                mode: Mode::Bridge,
                capacity: 50,
                owner: None,
                group: None,
            }])
        );
    }

    #[test]
    fn trailing_comma_points_at_the_comma() {
        let err = parse(SEED_WITH_MASTER_AND_TRAILING_COMMA, "DP_MACVTAP_CONF").unwrap_err();
        let ConfigError::Syntax {
            line,
            column,
            ref fix,
            ..
        } = err
        else {
            panic!("expected a syntax error, got {err}");
        };
        assert_eq!(
            (line, column),
            (7, 6),
            "the comma in the line of the closing brace"
        );
        assert!(fix.contains("remove the comma"), "{fix}");
        let text = err.to_string();
        assert!(text.contains("line 7 column 6"), "{text}");
        assert!(
            text.contains("      |      ^"),
            "caret under the comma:\n{text}"
        );
    }

    #[test]
    fn other_syntax_errors_have_a_position() {
        let err = parse("[{\"name\": \"a\" \"lowerDevice\": \"x\"}]", "f.json").unwrap_err();
        let ConfigError::Syntax { line, column, .. } = err else {
            panic!("{err}")
        };
        assert_eq!((line, column), (1, 15));
        let err = parse("[{\"name\": \"a\"", "f.json").unwrap_err();
        assert!(err.to_string().contains("close every"), "{err}");
    }

    #[test]
    fn master_is_an_alias_with_a_warning() {
        let text = SEED_WITH_MASTER_AND_TRAILING_COMMA.replace("},\n]", "}\n]");
        let parsed = parse(&text, "test").unwrap();
        let Config::Explicit(resources) = parsed.config else {
            panic!()
        };
        assert_eq!(resources[0].lower_device, "ens33");
        assert_eq!(parsed.warnings.len(), 1);
        assert!(parsed.warnings[0].contains("rename the key to \"lowerDevice\""));
        let (field, _) = entry_error(r#"[{"name":"a","master":"x","lowerDevice":"y"}]"#);
        assert_eq!(field, "master");
    }

    #[test]
    fn empty_array_means_discovery() {
        assert_eq!(parse(" [ ] ", "test").unwrap().config, Config::Discover);
    }

    #[test]
    fn defaults() {
        let parsed = parse(r#"[{"name":"a","lowerDevice":"eth0"}]"#, "test").unwrap();
        let Config::Explicit(r) = parsed.config else {
            panic!()
        };
        assert_eq!((r[0].mode, r[0].capacity), (Mode::Bridge, DEFAULT_CAPACITY));
        let parsed = parse(
            r#"[{"name":"a","lowerDevice":"eth0","mode":"","owner":107,"group":107}]"#,
            "test",
        )
        .unwrap();
        let Config::Explicit(r) = parsed.config else {
            panic!()
        };
        assert_eq!(
            (r[0].mode, r[0].owner, r[0].group),
            (Mode::Bridge, Some(107), Some(107))
        );
    }

    #[test]
    fn every_mode() {
        for (text, mode) in [
            ("private", Mode::Private),
            ("vepa", Mode::Vepa),
            ("passthru", Mode::Passthru),
        ] {
            let parsed = parse(
                &format!(r#"[{{"name":"a","lowerDevice":"eth0","mode":"{text}"}}]"#),
                "t",
            )
            .unwrap();
            let Config::Explicit(r) = parsed.config else {
                panic!()
            };
            assert_eq!(r[0].mode, mode);
            assert_eq!(mode.as_str(), text);
        }
    }

    #[test]
    fn errors_name_the_entry_field_and_fix() {
        let cases = [
            (
                r#"[{"name":"a","lowerDevice":"eth0","capcity":5}]"#,
                "capcity",
                "unknown key",
            ),
            (
                r#"[{"name":"a","lowerDevice":"eth0","mode":"brigde"}]"#,
                "mode",
                "unknown mode \"brigde\"",
            ),
            (
                r#"[{"name":"a","lowerDevice":"eth0","capacity":0}]"#,
                "capacity",
                "0 is not a usable capacity",
            ),
            (
                r#"[{"name":"a","lowerDevice":"eth0","capacity":-3}]"#,
                "capacity",
                "-3 is not a usable capacity",
            ),
            (
                r#"[{"name":"a","lowerDevice":"eth0","capacity":"5"}]"#,
                "capacity",
                "expected a whole number",
            ),
            (
                r#"[{"name":"a","lowerDevice":"eth0","capacity":1.5}]"#,
                "capacity",
                "expected a whole number",
            ),
            (
                r#"[{"name":"a","lowerDevice":"eth0","capacity":20000}]"#,
                "capacity",
                "more than",
            ),
            (
                r#"[{"name":"a","lowerDevice":"a-very-long-ifname"}]"#,
                "lowerDevice",
                "18 characters",
            ),
            (
                r#"[{"name":"a","lowerDevice":"eth0/1"}]"#,
                "lowerDevice",
                "cannot be an interface name",
            ),
            (r#"[{"name":"a"}]"#, "lowerDevice", "missing"),
            (r#"[{"lowerDevice":"eth0"}]"#, "name", "missing"),
            (
                r#"[{"name":"a b","lowerDevice":"eth0"}]"#,
                "name",
                "not a valid resource name",
            ),
            (
                r#"[{"name":5,"lowerDevice":"eth0"}]"#,
                "name",
                "expected a string",
            ),
            (
                r#"[{"name":"a","lowerDevice":"eth0","owner":-1}]"#,
                "owner",
                "expected a numeric id",
            ),
            (r#"[5]"#, "(entry)", "expected an object"),
        ];
        for (text, want_field, want_problem) in cases {
            let (field, problem) = entry_error(text);
            assert_eq!(field, want_field, "{text}");
            assert!(problem.contains(want_problem), "{text}: {problem}");
        }
    }

    #[test]
    fn duplicate_names_name_both_entries() {
        let text = r#"[{"name":"a","lowerDevice":"eth0"},{"name":"b","lowerDevice":"eth1"},{"name":"a","lowerDevice":"eth2"}]"#;
        let err = parse(text, "DP_MACVTAP_CONF").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("entry 3 (\"a\")"), "{msg}");
        assert!(msg.contains("already the name of entry 1"), "{msg}");
        assert!(msg.contains("DP_MACVTAP_CONF"), "{msg}");
    }

    #[test]
    fn not_an_array() {
        let err = parse(r#"{"name":"a"}"#, "t").unwrap_err();
        assert!(matches!(err, ConfigError::NotAnArray { .. }), "{err}");
    }

    fn entries(n: usize) -> String {
        let list: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"name":"r{i}","lowerDevice":"eth0","capacity":1}}"#))
            .collect();
        format!("[{}]", list.join(","))
    }

    #[test]
    fn size_and_entry_count_are_bounded() {
        let ok = parse(&entries(MAX_RESOURCES), "DP_MACVTAP_CONF").unwrap();
        assert!(matches!(ok.config, Config::Explicit(ref r) if r.len() == MAX_RESOURCES));
        let err = parse(&entries(MAX_RESOURCES + 1), "DP_MACVTAP_CONF").unwrap_err();
        assert_eq!(
            err,
            ConfigError::TooManyEntries {
                origin: "DP_MACVTAP_CONF".into(),
                count: MAX_RESOURCES + 1
            }
        );
        assert!(err.to_string().contains("fix: list only"), "{err}");
        // 20,000 entries (the attack in issue 14) are refused as a whole.
        assert!(matches!(
            parse(&entries(20_000), "x").unwrap_err(),
            ConfigError::TooManyEntries { count: 20_000, .. }
        ));
        // More than 1 MiB: refused before any JSON is parsed.
        let huge = format!("[{}{{}}]", " ".repeat(MAX_CONFIG_BYTES));
        let err = parse(&huge, "f.json").unwrap_err();
        assert!(matches!(err, ConfigError::TooLarge { bytes, .. } if bytes == huge.len()));
        assert!(err.to_string().contains("more than 1048576"), "{err}");
    }

    #[test]
    fn duplicate_names_are_found_in_linear_time() {
        // The last entry repeats the first: found, with both positions.
        let mut list: Vec<String> = (0..MAX_RESOURCES - 1)
            .map(|i| format!(r#"{{"name":"r{i}","lowerDevice":"eth0"}}"#))
            .collect();
        list.push(r#"{"name":"r0","lowerDevice":"eth1"}"#.into());
        let err = parse(&format!("[{}]", list.join(",")), "x").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("entry {MAX_RESOURCES} (\"r0\")"))
                && msg.contains("already the name of entry 1"),
            "{msg}"
        );
    }
}
