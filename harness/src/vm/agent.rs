//! The guest agent: the initramfs's `/init` loads the virtio modules, then serves
//! commands on the second serial port (ttyS1, QEMU's stdio; ttyS0 is the kernel
//! console, logged to a file).
//!
//! Protocol, one line each way, `\n`-terminated, the port in raw mode without echo:
//! - guest → host once booted: `@@SECNET-READY <kernel release>`
//! - host → guest: `<id> <shell command>` (one line; the id is a decimal number)
//! - guest → host: `@@SECNET-BEGIN <id>`, the command's stdout+stderr lines,
//!   `@@SECNET-END <id> <exit code>`.
//!
//! Lines outside a frame (there should be none) are kept as noise for diagnostics.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout};
use std::time::Duration;

use tokio::sync::mpsc;

pub const READY: &str = "@@SECNET-READY";
pub const BEGIN: &str = "@@SECNET-BEGIN";
pub const END: &str = "@@SECNET-END";

/// The guest's `/init` (busybox sh).
pub fn init_script() -> String {
    format!(
        r#"#!/bin/sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do insmod "$m" || echo "secnet-init: insmod $m failed"; done < /modules/order
ip link set lo up
stty -F /dev/ttyS1 raw -echo
exec 0</dev/ttyS1 1>/dev/ttyS1 2>&1
echo "{READY} $(uname -r)"
while read -r id cmd; do
  echo "{BEGIN} $id"
  sh -c "$cmd" </dev/null 2>&1
  echo "{END} $id $?"
done
poweroff -f
"#
    )
}

/// A request line; commands are single lines.
pub fn encode_request(id: u64, command: &str) -> Result<String, AgentError> {
    if command.contains('\n') || command.contains('\r') {
        return Err(AgentError::BadCommand(command.to_string()));
    }
    Ok(format!("{id} {command}\n"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Ready(String),
    Reply(Reply),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub id: u64,
    pub code: i32,
    pub output: String,
}

impl Reply {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Turns the guest's lines into events.
#[derive(Debug, Default)]
pub struct Framer {
    current: Option<(u64, String)>,
    pub noise: Vec<String>,
}

impl Framer {
    pub fn push(&mut self, line: &str) -> Option<Event> {
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(rest) = line.strip_prefix(READY) {
            self.current = None;
            return Some(Event::Ready(rest.trim().to_string()));
        }
        if let Some(rest) = line.strip_prefix(BEGIN)
            && let Ok(id) = rest.trim().parse()
        {
            self.current = Some((id, String::new()));
            return None;
        }
        if let Some(rest) = line.strip_prefix(END) {
            let mut parts = rest.split_whitespace();
            let id = parts.next().and_then(|s| s.parse::<u64>().ok());
            let code = parts.next().and_then(|s| s.parse::<i32>().ok());
            if let (Some(id), Some(code)) = (id, code)
                && let Some((open, output)) = self.current.take()
            {
                if open == id {
                    return Some(Event::Reply(Reply { id, code, output }));
                }
                self.noise.push(format!("END {id} while {open} was open"));
                return None;
            }
        }
        match &mut self.current {
            Some((_, output)) => {
                output.push_str(line);
                output.push('\n');
            }
            None => {
                if !line.trim().is_empty() {
                    self.noise.push(line.to_string());
                }
            }
        }
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("failed to send a command to the guest agent: it must be one line: {0:?}")]
    BadCommand(String),
    #[error("failed to write to the guest agent: {0}")]
    Write(std::io::Error),
    #[error("timed out after {0:?} waiting for the guest agent ({1})")]
    Timeout(Duration, String),
    #[error("the guest's serial port closed (QEMU exited) while waiting for {0}")]
    Closed(String),
}

/// The host end of the agent channel.
pub struct Agent {
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    framer: Framer,
    next_id: u64,
    pub kernel: Option<String>,
}

impl Agent {
    /// Reads QEMU's stdout (ttyS1) on a thread of its own.
    pub fn new(stdin: ChildStdin, stdout: ChildStdout) -> Agent {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                if tx
                    .send(String::from_utf8_lossy(&line).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
        Agent {
            stdin,
            lines: rx,
            framer: Framer::default(),
            next_id: 1,
            kernel: None,
        }
    }

    async fn next_event(
        &mut self,
        deadline: tokio::time::Instant,
        what: &str,
    ) -> Result<Event, AgentError> {
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .map_err(|_| {
                    AgentError::Timeout(
                        deadline.saturating_duration_since(tokio::time::Instant::now()),
                        what.to_string(),
                    )
                })?
                .ok_or_else(|| AgentError::Closed(what.to_string()))?;
            if let Some(e) = self.framer.push(&line) {
                return Ok(e);
            }
        }
    }

    /// Waits for the READY line.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<String, AgentError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.next_event(deadline, "the agent's READY line").await {
                Ok(Event::Ready(k)) => {
                    self.kernel = Some(k.clone());
                    return Ok(k);
                }
                Ok(Event::Reply(_)) => continue,
                Err(AgentError::Timeout(_, w)) => return Err(AgentError::Timeout(timeout, w)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs a shell command in the guest.
    pub async fn exec(&mut self, command: &str, timeout: Duration) -> Result<Reply, AgentError> {
        let id = self.next_id;
        self.next_id += 1;
        let line = encode_request(id, command)?;
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|_| self.stdin.flush())
            .map_err(AgentError::Write)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.next_event(deadline, command).await {
                Ok(Event::Reply(r)) if r.id == id => return Ok(r),
                Ok(_) => continue,
                Err(AgentError::Timeout(_, w)) => return Err(AgentError::Timeout(timeout, w)),
                Err(e) => return Err(e),
            }
        }
    }

    pub fn noise(&self) -> &[String] {
        &self.framer.noise
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_replies_and_keeps_noise() {
        let mut f = Framer::default();
        assert_eq!(f.push("garbage before boot"), None);
        assert_eq!(
            f.push("@@SECNET-READY 6.1.0-56-amd64\r"),
            Some(Event::Ready("6.1.0-56-amd64".into()))
        );
        assert_eq!(f.push("@@SECNET-BEGIN 7"), None);
        assert_eq!(f.push("1: lo: <LOOPBACK,UP>"), None);
        assert_eq!(f.push(""), None);
        assert_eq!(
            f.push("@@SECNET-END 7 0"),
            Some(Event::Reply(Reply {
                id: 7,
                code: 0,
                output: "1: lo: <LOOPBACK,UP>\n\n".into()
            }))
        );
        assert_eq!(f.push("@@SECNET-BEGIN 8"), None);
        assert_eq!(
            f.push("@@SECNET-END 8 1"),
            Some(Event::Reply(Reply {
                id: 8,
                code: 1,
                output: String::new()
            }))
        );
        // An END for another frame is noise, not a reply.
        assert_eq!(f.push("@@SECNET-BEGIN 9"), None);
        assert_eq!(f.push("@@SECNET-END 10 0"), None);
        assert_eq!(f.noise.len(), 2, "{:?}", f.noise);
    }

    #[test]
    fn requests_are_one_line() {
        assert_eq!(encode_request(3, "ip -o link").unwrap(), "3 ip -o link\n");
        assert!(encode_request(3, "a\nb").is_err());
    }

    #[test]
    fn init_script_speaks_the_protocol() {
        let s = init_script();
        assert!(s.starts_with("#!/bin/sh\n"));
        for needle in [
            READY,
            BEGIN,
            END,
            "/dev/ttyS1",
            "/modules/order",
            "raw -echo",
        ] {
            assert!(s.contains(needle), "{needle}");
        }
    }
}
