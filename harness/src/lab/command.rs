//! External commands: an argument vector, a timeout, and the output in the error.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("failed to run {cmdline}: {source}")]
    Spawn {
        cmdline: String,
        source: std::io::Error,
    },
    #[error("{cmdline} timed out after {timeout:?}")]
    Timeout { cmdline: String, timeout: Duration },
    #[error("{cmdline} failed ({status}): {stderr}")]
    Failed {
        cmdline: String,
        status: String,
        stderr: String,
    },
}

/// Runs `program args…`, returning stdout; stderr goes into the error on failure.
pub fn run(program: &str, args: &[&str], timeout: Duration) -> Result<String, CommandError> {
    let cmdline = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn {
            cmdline: cmdline.clone(),
            source,
        })?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CommandError::Timeout { cmdline, timeout });
            }
            Err(source) => return Err(CommandError::Spawn { cmdline, source }),
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    if status.success() {
        Ok(stdout)
    } else {
        Err(CommandError::Failed {
            cmdline,
            status: status.to_string(),
            stderr: stderr.trim().to_string(),
        })
    }
}
