//! Commands the real-cluster providers run (`kind`, the container engine, `curl`),
//! built as data first (`Cmd`) so tests snapshot exactly what would run, and a
//! `Runner` that runs them. Both `kind` and `components` use it; neither owns it.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

pub use crate::lab::command::CommandError;

/// How long one command may take (`kind create cluster` pulls node images).
const TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// One command line: environment additions, program and argument vector (never a
/// shell string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cmd {
    /// Set for this command only, on top of secnet's own environment
    /// (`KIND_EXPERIMENTAL_PROVIDER=podman`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) env: Vec<(String, String)>,
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
}

impl Cmd {
    pub fn new(program: &str, args: &[&str]) -> Self {
        Cmd {
            env: Vec::new(),
            program: program.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// A word as a POSIX shell reads it back: quoted only when it has to be.
fn shell_word(f: &mut fmt::Formatter<'_>, word: &str) -> fmt::Result {
    if word.is_empty() || word.contains(|c: char| c.is_whitespace() || "'\"$\\;&|".contains(c)) {
        write!(f, "'{}'", word.replace('\'', "'\\''"))
    } else {
        write!(f, "{word}")
    }
}

/// As a shell line: `KEY=value program args...`, pasteable into a terminal.
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.env {
            write!(f, "{key}=")?;
            shell_word(f, value)?;
            write!(f, " ")?;
        }
        write!(f, "{}", self.program)?;
        for a in &self.args {
            write!(f, " ")?;
            shell_word(f, a)?;
        }
        Ok(())
    }
}

/// Runs commands; returns stdout, or an error carrying the status and stderr.
pub trait Runner {
    fn run(&self, cmd: &Cmd) -> Result<String, CommandError>;
}

/// The real runner (blocking: call from `spawn_blocking` in async code).
pub struct HostRunner;

impl Runner for HostRunner {
    fn run(&self, cmd: &Cmd) -> Result<String, CommandError> {
        // Through secnet's one command runner: both pipes read as it runs, its
        // process group killed on timeout.
        let mut run = crate::lab::command::Cmd::new(&cmd.program).args(&cmd.args);
        for (key, value) in &cmd.env {
            run = run.env(key, value);
        }
        run.timeout(TIMEOUT)
            .run()
            .map_err(|e| with_cmdline(e, cmd.to_string()))
    }
}

/// The error naming the command as the plan shows it (its environment included), so
/// it can be pasted into a shell to try again.
fn with_cmdline(e: CommandError, shown: String) -> CommandError {
    match e {
        CommandError::Spawn { source, .. } => CommandError::Spawn {
            cmdline: shown,
            source,
        },
        CommandError::Timeout {
            timeout,
            stdout,
            stderr,
            ..
        } => CommandError::Timeout {
            cmdline: shown,
            timeout,
            stdout,
            stderr,
        },
        CommandError::Cancelled { .. } => CommandError::Cancelled { cmdline: shown },
        CommandError::Failed {
            status,
            stdout,
            stderr,
            ..
        } => CommandError::Failed {
            cmdline: shown,
            status,
            stdout,
            stderr,
        },
    }
}
