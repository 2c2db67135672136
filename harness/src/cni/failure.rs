//! A plugin call that failed, told so that its developer can act on it: the
//! binary, the command, how it exited, the CNI error it printed (code, msg,
//! details) or that it printed none, the config it was given and what it wrote,
//! each bounded so that a chatty plugin does not bury the message.

use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

use super::{Call, Reply};

/// How much of the config, stdout and stderr a message keeps.
pub const EXCERPT_BYTES: usize = 1024;

/// The CNI error object a failed plugin prints on stdout (spec: code, msg, details).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub(crate) code: Option<u64>,
    pub(crate) msg: String,
    pub(crate) details: String,
}

#[derive(Debug, Clone)]
pub struct PluginFailure {
    pub(crate) plugin: PathBuf,
    /// What `plugin` links to, when it is a link (a run links each `--plugin` binary
    /// into its own bin dir): the path the user gave.
    pub(crate) target: Option<PathBuf>,
    pub(crate) command: String,
    /// "exit status 1", "killed by signal 9".
    pub(crate) exit: String,
    /// The error object, when stdout held one.
    pub(crate) error: Option<CniError>,
    pub(crate) config: String,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl PluginFailure {
    /// What `reply` to `call` says, bounded.
    pub fn of(call: &Call, reply: &Reply) -> PluginFailure {
        let config = match &call.raw_stdin {
            Some(raw) => String::from_utf8_lossy(raw).into_owned(),
            None => call.config.to_string(),
        };
        PluginFailure {
            plugin: call.plugin.clone(),
            target: std::fs::read_link(&call.plugin).ok(),
            command: call.command.clone(),
            exit: reply.exit_text(),
            error: cni_error(&reply.stdout),
            config: bounded(&config),
            stdout: bounded(reply.stdout.trim()),
            stderr: bounded(reply.stderr.trim()),
        }
    }
}

/// The spec's error object in `stdout`, if it holds one.
pub fn cni_error(stdout: &str) -> Option<CniError> {
    let v: Value = serde_json::from_str(stdout.trim()).ok()?;
    let text = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default();
    if v.get("code").is_none() && v.get("msg").is_none() {
        return None;
    }
    Some(CniError {
        code: v.get("code").and_then(Value::as_u64),
        msg: text("msg").to_string(),
        details: text("details").to_string(),
    })
}

/// `text` cut at `EXCERPT_BYTES` (on a character boundary), saying how much was left out.
pub fn bounded(text: &str) -> String {
    if text.len() <= EXCERPT_BYTES {
        return text.to_string();
    }
    let mut end = EXCERPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}

impl fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Some(target) => write!(
                f,
                "CNI plugin {} (linked as {}) {} failed ({})",
                target.display(),
                self.plugin.display(),
                self.command,
                self.exit
            )?,
            None => write!(
                f,
                "CNI plugin {} {} failed ({})",
                self.plugin.display(),
                self.command,
                self.exit
            )?,
        }
        match &self.error {
            Some(e) => {
                let code = e
                    .code
                    .map_or("no code".to_string(), |c| format!("code {c}"));
                write!(f, ": CNI error {code}: {:?}", e.msg)?;
                if !e.details.is_empty() {
                    write!(f, " (details: {:?})", e.details)?;
                }
            }
            None => f.write_str(
                ": no CNI error object on stdout (the spec asks for {\"code\", \"msg\"})",
            )?,
        }
        let or_empty = |s: &str| {
            if s.is_empty() {
                "(empty)".to_string()
            } else {
                s.to_string()
            }
        };
        write!(f, "\n  config given: {}", self.config)?;
        write!(f, "\n  stdout: {}", or_empty(&self.stdout))?;
        write!(f, "\n  stderr: {}", or_empty(&self.stderr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: Option<i32>, stdout: &str, stderr: &str) -> Reply {
        use std::os::unix::process::ExitStatusExt as _;
        Reply {
            success: code == Some(0),
            stdout: stdout.into(),
            stderr: stderr.into(),
            elapsed: std::time::Duration::ZERO,
            status: match code {
                Some(c) => std::process::ExitStatus::from_raw(c << 8),
                None => std::process::ExitStatus::from_raw(9),
            },
        }
    }

    fn call() -> Call {
        Call::new(
            "/bin/false",
            "ADD",
            serde_json::json!({"type": "macvtap", "name": "net"}),
        )
    }

    #[test]
    fn a_silent_failure_names_binary_exit_status_config_and_empty_output() {
        let text = PluginFailure::of(&call(), &reply(Some(1), "", "")).to_string();
        assert!(
            text.starts_with("CNI plugin /bin/false ADD failed (exit status 1)"),
            "{text}"
        );
        assert!(text.contains("no CNI error object"), "{text}");
        assert!(
            text.contains(r#"config given: {"name":"net","type":"macvtap"}"#),
            "{text}"
        );
        assert!(text.contains("stdout: (empty)"), "{text}");
        assert!(text.contains("stderr: (empty)"), "{text}");
    }

    #[test]
    fn a_cni_error_is_quoted_with_code_msg_details_and_a_signal_is_named() {
        let out = r#"{"cniVersion":"1.0.0","code":7,"msg":"bad mac","details":"aa:bb"}"#;
        let text = PluginFailure::of(&call(), &reply(Some(7), out, "warn")).to_string();
        assert!(
            text.contains(r#"(exit status 7): CNI error code 7: "bad mac" (details: "aa:bb")"#),
            "{text}"
        );
        assert!(text.contains("stderr: warn"), "{text}");
        let killed = PluginFailure::of(&call(), &reply(None, "", "")).to_string();
        assert!(killed.contains("(killed by signal 9)"), "{killed}");
    }

    #[test]
    fn a_linked_plugin_is_named_by_the_path_it_links_to() {
        let dir = crate::lab::ScratchDir::new("secnet-failure-link").unwrap();
        let link = dir.path().join("macvtap");
        std::os::unix::fs::symlink("/bin/false", &link).unwrap();
        let call = Call::new(&link, "ADD", serde_json::json!({}));
        let text = PluginFailure::of(&call, &reply(Some(1), "", "")).to_string();
        assert!(
            text.starts_with(&format!(
                "CNI plugin /bin/false (linked as {}) ADD failed (exit status 1)",
                link.display()
            )),
            "{text}"
        );
    }

    #[test]
    fn long_output_is_bounded_on_a_character_boundary() {
        let long = "é".repeat(EXCERPT_BYTES);
        let b = bounded(&long);
        assert!(b.len() < long.len(), "{}", b.len());
        assert!(
            b.ends_with(&format!("({} more bytes)", EXCERPT_BYTES)),
            "{b}"
        );
        assert_eq!(bounded("short"), "short");
    }
}
