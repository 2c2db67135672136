//! Every CNI reply checked against the spec version its call used: the ADD result's
//! shape (0.1.0/0.2.0 `ip4`/`ip6`; 0.3.x/0.4.0 `interfaces`/`ips` with
//! `ips[].version` and no `mtu`; 1.x without `ips[].version`), `cniVersion` echoed,
//! the types of the fields; VERSION's `supportedVersions`; nothing printed by a
//! successful DEL, CHECK, STATUS or GC; an error object (`code`, `msg`) from a
//! failing call. `exec_in` runs it on every call the harness makes (scenarios, the
//! netns nodes' runtime, multus delegates), so a wrong reply fails its scenario.

use serde_json::{Map, Value};

use super::{Call, Reply};

/// Result-shaped versions: `interfaces`/`ips` (0.3.0 on); before, `ip4`/`ip6`.
const LEGACY: [&str; 2] = ["0.1.0", "0.2.0"];
/// Result versions with `ips[].version` (dropped in 1.0.0) and no `interfaces[].mtu`.
const PRE_V1: [&str; 3] = ["0.3.0", "0.3.1", "0.4.0"];

/// What is wrong with `reply` to `call`, per the spec version the call used; empty
/// when nothing is.
pub(crate) fn violations(call: &Call, reply: &Reply) -> Vec<String> {
    let mut out = Vec::new();
    // A raw (deliberately broken) stdin has no version to hold the reply to.
    let version = match &call.raw_stdin {
        Some(_) => None,
        None => Some(
            call.config
                .get("cniVersion")
                .and_then(Value::as_str)
                .unwrap_or("0.1.0"),
        ),
    };
    if !reply.success {
        check_error(&reply.stdout, &mut out);
        return out;
    }
    match call.command.as_str() {
        "ADD" => {
            if let Some(v) = version {
                check_result(v, &reply.stdout, &mut out);
            }
        }
        "VERSION" => check_version(&reply.stdout, &mut out),
        "DEL" | "CHECK" | "STATUS" | "GC" if !reply.stdout.trim().is_empty() => {
            out.push(format!(
                "a successful {} prints nothing, it printed {}",
                call.command,
                excerpt(&reply.stdout)
            ));
        }
        _ => {}
    }
    out
}

/// At most 300 characters of `text`, for messages.
pub(crate) fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

fn object(what: &str, stdout: &str, out: &mut Vec<String>) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(stdout.trim()) {
        Ok(Value::Object(o)) => Some(o),
        Ok(other) => {
            out.push(format!(
                "{what} must be a JSON object, got {}",
                excerpt(&other.to_string())
            ));
            None
        }
        Err(e) => {
            out.push(format!("{what} is not JSON ({e}): {}", excerpt(stdout)));
            None
        }
    }
}

fn is_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A failing call: an error object on stdout (spec: "Error" section).
fn check_error(stdout: &str, out: &mut Vec<String>) {
    if stdout.trim().is_empty() {
        out.push("a failing call must print a CNI error object ({\"code\", \"msg\"}) on stdout; it printed nothing".into());
        return;
    }
    let Some(e) = object("the error", stdout, out) else {
        return;
    };
    if !e.get("code").is_some_and(Value::is_u64) {
        out.push(format!(
            "the error's \"code\" must be an unsigned integer, got {:?}",
            e.get("code")
        ));
    }
    if !e.get("msg").is_some_and(Value::is_string) {
        out.push(format!(
            "the error's \"msg\" must be a string, got {:?}",
            e.get("msg")
        ));
    }
    for field in ["details", "cniVersion"] {
        if e.get(field).is_some_and(|v| !v.is_string()) {
            out.push(format!(
                "the error's \"{field}\" must be a string, got {:?}",
                e[field]
            ));
        }
    }
}

/// VERSION: `cniVersion` and a non-empty `supportedVersions` of version strings.
fn check_version(stdout: &str, out: &mut Vec<String>) {
    let Some(v) = object("the VERSION answer", stdout, out) else {
        return;
    };
    if !v
        .get("cniVersion")
        .and_then(Value::as_str)
        .is_some_and(is_version)
    {
        out.push(format!(
            "VERSION's \"cniVersion\" must be a version like \"1.0.0\", got {:?}",
            v.get("cniVersion")
        ));
    }
    match v.get("supportedVersions").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => {
            for s in list {
                if !s.as_str().is_some_and(is_version) {
                    out.push(format!(
                        "VERSION's \"supportedVersions\" holds {s}, not a version string"
                    ));
                }
            }
        }
        other => out.push(format!(
            "VERSION's \"supportedVersions\" must be a non-empty array of versions, got {other:?}"
        )),
    }
}

/// An ADD result of spec `version`.
fn check_result(version: &str, stdout: &str, out: &mut Vec<String>) {
    let Some(r) = object("the ADD result", stdout, out) else {
        return;
    };
    match r.get("cniVersion").and_then(Value::as_str) {
        Some(v) if v == version => {}
        other => out.push(format!(
            "the ADD result's \"cniVersion\" must echo the call's \"{version}\", got {other:?}"
        )),
    }
    if LEGACY.contains(&version) {
        for field in ["interfaces", "ips"] {
            if r.contains_key(field) {
                out.push(format!(
                    "a {version} result has \"ip4\"/\"ip6\", not \"{field}\" (a 0.3.0+ field)"
                ));
            }
        }
        return;
    }
    for field in ["ip4", "ip6"] {
        if r.contains_key(field) {
            out.push(format!(
                "a {version} result has \"ips\", not the 0.2.0 field \"{field}\""
            ));
        }
    }
    let pre_v1 = PRE_V1.contains(&version);
    let interfaces = array(&r, "interfaces", out);
    for (i, iface) in interfaces.iter().enumerate() {
        let at = format!("interfaces[{i}]");
        if !iface.get("name").is_some_and(Value::is_string) {
            out.push(format!("{at} needs a string \"name\", got {iface}"));
        }
        for field in ["mac", "sandbox"] {
            if iface.get(field).is_some_and(|v| !v.is_string()) {
                out.push(format!(
                    "{at}.{field} must be a string, got {}",
                    iface[field]
                ));
            }
        }
        if pre_v1 && iface.get("mtu").is_some() {
            out.push(format!(
                "{at} has \"mtu\", a 1.x field: a {version} call was answered in 1.x form"
            ));
        }
    }
    for (i, ip) in array(&r, "ips", out).iter().enumerate() {
        let at = format!("ips[{i}]");
        if !ip
            .get("address")
            .and_then(Value::as_str)
            .is_some_and(|a| a.contains('/'))
        {
            out.push(format!("{at} needs an \"address\" in CIDR form, got {ip}"));
        }
        match (pre_v1, ip.get("version")) {
            (true, Some(Value::String(v))) if v == "4" || v == "6" => {}
            (true, other) => out.push(format!(
                "{at} of a {version} result needs \"version\": \"4\" or \"6\", got {other:?}"
            )),
            (false, Some(_)) => out.push(format!(
                "{at} has \"version\", dropped in 1.0.0: a {version} call was answered in 0.x form"
            )),
            (false, None) => {}
        }
        match ip.get("interface") {
            None => {}
            Some(Value::Number(n))
                if n.as_u64().is_some_and(|n| (n as usize) < interfaces.len()) => {}
            Some(other) => out.push(format!(
                "{at}.interface must index \"interfaces\" ({} entries), got {other}",
                interfaces.len()
            )),
        }
    }
    for (i, route) in array(&r, "routes", out).iter().enumerate() {
        if !route
            .get("dst")
            .and_then(Value::as_str)
            .is_some_and(|d| d.contains('/'))
        {
            out.push(format!(
                "routes[{i}] needs a \"dst\" in CIDR form, got {route}"
            ));
        }
    }
    if r.get("dns").is_some_and(|d| !d.is_object()) {
        out.push(format!("\"dns\" must be an object, got {}", r["dns"]));
    }
}

/// `r[field]` as an array (absent: empty); anything else is a violation.
fn array(r: &Map<String, Value>, field: &str, out: &mut Vec<String>) -> Vec<Value> {
    match r.get(field) {
        None => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(other) => {
            out.push(format!("\"{field}\" must be an array, got {other}"));
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(command: &str, version: &str) -> Call {
        Call::new(
            "/x/macvtap",
            command,
            json!({"cniVersion": version, "name": "n", "type": "macvtap"}),
        )
    }

    fn reply(success: bool, stdout: &str) -> Reply {
        Reply {
            success,
            stdout: stdout.into(),
            stderr: String::new(),
            elapsed: Default::default(),
            status: {
                use std::os::unix::process::ExitStatusExt as _;
                std::process::ExitStatus::from_raw(if success { 0 } else { 1 << 8 })
            },
        }
    }

    fn result(version: &str, iface: Value, ip: Value) -> String {
        json!({"cniVersion": version, "interfaces": [iface], "ips": [ip]}).to_string()
    }

    #[test]
    fn spec_shaped_results_pass() {
        let v04 = result(
            "0.4.0",
            json!({"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/proc/1/ns/net"}),
            json!({"version": "4", "address": "10.1.0.5/24", "interface": 0}),
        );
        assert!(violations(&call("ADD", "0.4.0"), &reply(true, &v04)).is_empty());
        let v1 = result(
            "1.0.0",
            json!({"name": "net1", "mtu": 1500}),
            json!({"address": "10.1.0.5/24", "interface": 0}),
        );
        assert!(violations(&call("ADD", "1.0.0"), &reply(true, &v1)).is_empty());
        let none = json!({"cniVersion": "0.3.1", "interfaces": [{"name": "net1"}]}).to_string();
        assert!(violations(&call("ADD", "0.3.1"), &reply(true, &none)).is_empty());
        assert!(violations(&call("DEL", "1.0.0"), &reply(true, "")).is_empty());
        let version = r#"{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}"#;
        assert!(violations(&call("VERSION", "1.0.0"), &reply(true, version)).is_empty());
        let error = r#"{"cniVersion":"1.0.0","code":7,"msg":"bad","details":"why"}"#;
        assert!(violations(&call("ADD", "1.0.0"), &reply(false, error)).is_empty());
    }

    #[test]
    fn a_0_4_0_call_answered_in_1_0_form_fails() {
        let v1_form = result(
            "0.4.0",
            json!({"name": "net1", "mtu": 1500}),
            json!({"address": "10.1.0.5/24"}),
        );
        let v = violations(&call("ADD", "0.4.0"), &reply(true, &v1_form));
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("\"mtu\""), "{v:?}");
        assert!(v[1].contains("needs \"version\""), "{v:?}");
        let v0_form = result(
            "1.0.0",
            json!({"name": "net1"}),
            json!({"version": "4", "address": "10.1.0.5/24"}),
        );
        let v = violations(&call("ADD", "1.0.0"), &reply(true, &v0_form));
        assert!(v[0].contains("dropped in 1.0.0"), "{v:?}");
    }

    #[test]
    fn the_version_must_be_echoed() {
        let other = json!({"cniVersion": "1.0.0", "interfaces": []}).to_string();
        let v = violations(&call("ADD", "0.4.0"), &reply(true, &other));
        assert!(v[0].contains("must echo the call's \"0.4.0\""), "{v:?}");
    }

    #[test]
    fn an_empty_version_answer_fails() {
        for answer in ["", "{}", r#"{"cniVersion":"","supportedVersions":[]}"#] {
            let v = violations(&call("VERSION", "1.0.0"), &reply(true, answer));
            assert!(!v.is_empty(), "{answer:?}");
        }
    }

    #[test]
    fn a_failure_without_an_error_object_fails() {
        for (stdout, needle) in [
            ("", "printed nothing"),
            ("oops", "not JSON"),
            (r#"{"code":"7","msg":"x"}"#, "\"code\""),
            (r#"{"code":7}"#, "\"msg\""),
        ] {
            let v = violations(&call("ADD", "1.0.0"), &reply(false, stdout));
            assert!(v.iter().any(|m| m.contains(needle)), "{stdout}: {v:?}");
        }
    }

    #[test]
    fn del_prints_nothing_and_raw_stdin_is_held_to_the_error_shape_only() {
        let v = violations(&call("DEL", "1.0.0"), &reply(true, "{}"));
        assert!(v[0].contains("prints nothing"), "{v:?}");
        let mut raw = call("ADD", "1.0.0");
        raw.raw_stdin = Some(b"{".to_vec());
        let any_result = json!({"cniVersion": "0.4.0", "interfaces": []}).to_string();
        assert!(violations(&raw, &reply(true, &any_result)).is_empty());
    }
}
