//! Frames on a pod's interface as the node sees them (`tcpdump -e`, link-level
//! headers): tcpdump runs on this machine in the pod's network namespace. Started
//! before the traffic, stopped after it.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Child;

use crate::cluster::ClusterError;
use crate::cluster::ability::{Fut, RunningCapture, node_error};
use crate::lab::Ns;
use crate::lab::enter::Enter;

/// A running tcpdump; `stop` it to read what it saw.
#[derive(Debug)]
pub struct LocalCapture(Child);

fn failed(node: &str, message: impl std::fmt::Display) -> ClusterError {
    node_error(node, "tcpdump", message)
}

impl LocalCapture {
    /// tcpdump on this machine in `ns`; returns once it listens.
    pub async fn start(
        node: &str,
        ns: &Ns,
        iface: &str,
        filter: &str,
    ) -> Result<LocalCapture, ClusterError> {
        let mut cmd = tokio::process::Command::new("tcpdump");
        cmd.args(["-nn", "-e", "-l", "-i", iface, filter])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        Enter::net(ns.path())
            .and_then(|e| e.apply(&mut cmd))
            .map_err(|e| failed(node, format!("failed to enter {}: {e}", ns.name)))?;
        let mut child = cmd.spawn().map_err(|e| {
            failed(
                node,
                format!("failed to run tcpdump (apt-get install tcpdump): {e}"),
            )
        })?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| failed(node, "tcpdump's stderr is not piped"))?;
        let mut lines = BufReader::new(stderr).lines();
        let listening = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening on") {
                    return true;
                }
            }
            false
        })
        .await;
        match listening {
            Ok(true) => Ok(LocalCapture(child)),
            Ok(false) => Err(failed(node, "tcpdump exited before listening")),
            Err(_) => Err(failed(node, "tcpdump did not start listening within 10 s")),
        }
    }
}

impl<'a> RunningCapture<'a> for LocalCapture {
    /// Stops tcpdump (it flushes on SIGINT); the lines it printed.
    fn stop(self: Box<Self>) -> Fut<'a, String> {
        let mut child = self.0;
        Box::pin(async move {
            // The last frames of the traffic are still on their way.
            tokio::time::sleep(Duration::from_millis(300)).await;
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGINT,
                );
            }
            let mut out = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                let read = stdout.read_to_string(&mut out);
                let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
            }
            let _ = child.kill().await;
            Ok(out)
        })
    }
}
