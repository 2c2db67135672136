//! Commands the real-cluster providers run (`kind`, the container engine, `curl`),
//! built as data first (`Cmd`) so tests snapshot exactly what would run, and a
//! `Runner` that runs them. Both `kind` and `components` use it; neither owns it.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

pub use crate::lab::command::CommandError;

/// How long one command may take (`kind create cluster` pulls node images).
const TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// One command line: program and argument vector (never a shell string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
}

impl Cmd {
    pub fn new(program: &str, args: &[&str]) -> Self {
        Cmd {
            program: program.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program)?;
        for a in &self.args {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$\\;&|".contains(c)) {
                write!(f, " '{}'", a.replace('\'', "'\\''"))?;
            } else {
                write!(f, " {a}")?;
            }
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
        crate::lab::command::Cmd::new(&cmd.program)
            .args(&cmd.args)
            .timeout(TIMEOUT)
            .run()
    }
}
