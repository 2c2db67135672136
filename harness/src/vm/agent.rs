//! The guest agent: the initramfs's `/init` loads the virtio modules, then serves
//! commands on a serial port: ttyS1 under secnet's QEMU (its stdio; ttyS0 is the
//! kernel console, logged to a file), or the port `secnet.agent=<tty>` on the kernel
//! command line names (ttyS0 under KubeVirt, whose serial console is the only port).
//! The host end reads any byte stream ([`Agent::new`]): QEMU's stdio pipes, or the
//! KubeVirt console websocket.
//!
//! Protocol, one line each way, `\n`-terminated, the port in raw mode without echo:
//! - guest → host once booted: `@@SECNET-READY <kernel release>`
//! - host → guest: `<id> <shell command>` (one line; the id is a decimal number)
//! - guest → host: `@@SECNET-BEGIN <id>`, the command's stdout+stderr lines,
//!   `@@SECNET-END <id> <exit code>`.
//!
//! Lines outside a frame (there should be none) are kept as noise for diagnostics.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
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
port=ttyS1
for arg in $(cat /proc/cmdline); do
  case "$arg" in secnet.agent=*) port="${{arg#secnet.agent=}}";; esac
done
# Sharing the kernel console: only emergencies may interrupt a reply.
[ "$port" = ttyS0 ] && dmesg -n 1
stty -F /dev/$port raw -echo
exec 0</dev/$port 1>/dev/$port 2>&1
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
    pub(crate) id: u64,
    pub(crate) code: i32,
    pub(crate) output: String,
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
    pub(crate) noise: Vec<String>,
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
    #[error(
        "the guest's serial port closed (QEMU exited or the console went away) while waiting for {0}"
    )]
    Closed(String),
}

/// How much of the stream the agent keeps for failure reports.
const TRANSCRIPT_BYTES: usize = 6000;

/// The last lines the guest sent, whatever they were (a console that shares the
/// agent's port has nothing else to show when the boot fails).
#[derive(Debug, Default)]
struct Transcript {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Transcript {
    fn push(&mut self, line: &str) {
        self.bytes += line.len() + 1;
        self.lines.push_back(line.to_string());
        while self.bytes > TRANSCRIPT_BYTES && self.lines.len() > 1 {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len() + 1;
            }
        }
    }
}

type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// The host end of the agent channel.
pub struct Agent {
    writer: Writer,
    lines: mpsc::UnboundedReceiver<String>,
    transcript: Arc<Mutex<Transcript>>,
    framer: Framer,
    next_id: u64,
    /// Ask instead of waiting for the READY line, every this often: a console
    /// attached after the guest booted has missed it.
    poke: Option<Duration>,
    pub(crate) kernel: Option<String>,
}

impl Agent {
    /// Reads the guest's lines from `reader` on a task of its own; requests go to
    /// `writer`. Needs a tokio runtime.
    pub fn new(
        reader: impl AsyncRead + Send + Unpin + 'static,
        writer: impl AsyncWrite + Send + Unpin + 'static,
    ) -> Agent {
        let (tx, rx) = mpsc::unbounded_channel();
        let transcript = Arc::new(Mutex::new(Transcript::default()));
        let keep = transcript.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).split(b'\n');
            while let Ok(Some(line)) = lines.next_segment().await {
                let line = String::from_utf8_lossy(&line).into_owned();
                keep.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(line.trim_end_matches('\r'));
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Agent {
            writer: Box::new(writer),
            lines: rx,
            transcript,
            framer: Framer::default(),
            next_id: 1,
            poke: None,
            kernel: None,
        }
    }

    /// One bidirectional stream (a console websocket's bytes).
    pub fn over(stream: impl AsyncRead + AsyncWrite + Send + 'static) -> Agent {
        let (r, w) = tokio::io::split(stream);
        Agent::new(r, w)
    }

    /// `wait_ready` asks the guest (`uname -r`) every `every` instead of waiting for
    /// a READY line it may have sent before the host was listening.
    pub fn poking(mut self, every: Duration) -> Agent {
        self.poke = Some(every);
        self
    }

    /// The last lines the guest sent (up to a few KB), kernel messages included when
    /// they share the port.
    pub fn transcript(&self) -> String {
        let t = self.transcript.lock().unwrap_or_else(|p| p.into_inner());
        let text: Vec<&str> = t.lines.iter().map(String::as_str).collect();
        text.join("\n")
    }

    async fn send(&mut self, id: u64, command: &str) -> Result<(), AgentError> {
        let line = encode_request(id, command)?;
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(AgentError::Write)?;
        self.writer.flush().await.map_err(AgentError::Write)
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

    /// Waits for the READY line (or, when poking, for the first answer).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<String, AgentError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pokes = Vec::new();
        loop {
            let until = match self.poke {
                Some(every) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.send(id, "uname -r").await?;
                    pokes.push(id);
                    deadline.min(tokio::time::Instant::now() + every)
                }
                None => deadline,
            };
            let ready = match self.next_event(until, "the agent's READY line").await {
                Ok(Event::Ready(k)) => k,
                Ok(Event::Reply(r)) if pokes.contains(&r.id) => r.output.trim().to_string(),
                Ok(Event::Reply(_)) => continue,
                Err(AgentError::Timeout(..)) if tokio::time::Instant::now() < deadline => {
                    continue;
                }
                Err(AgentError::Timeout(_, w)) => return Err(AgentError::Timeout(timeout, w)),
                Err(e) => return Err(e),
            };
            self.kernel = Some(ready.clone());
            return Ok(ready);
        }
    }

    /// Runs a shell command in the guest.
    pub async fn exec(&mut self, command: &str, timeout: Duration) -> Result<Reply, AgentError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(id, command).await?;
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
            "port=ttyS1",
            "/modules/order",
            "raw -echo",
            "secnet.agent=",
        ] {
            assert!(s.contains(needle), "{needle}");
        }
    }

    /// A guest on the far end of a byte stream that booted before the host listened:
    /// kernel noise, no READY line, then it answers whatever it is asked.
    async fn late_guest(stream: tokio::io::DuplexStream) {
        let (r, mut w) = tokio::io::split(stream);
        w.write_all(b"[    0.9] Run /init as init process\r\n")
            .await
            .unwrap();
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let (id, cmd) = line.split_once(' ').unwrap();
            let (out, code) = match cmd {
                "uname -r" => ("6.1.0-test\n", 0),
                "false" => ("", 1),
                _ => ("?\n", 127),
            };
            let reply = format!("{BEGIN} {id}\r\n{out}{END} {id} {code}\r\n");
            w.write_all(reply.as_bytes()).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_late_console_pokes_the_guest_and_keeps_a_transcript() {
        let (host, guest) = tokio::io::duplex(4096);
        tokio::spawn(late_guest(guest));
        let mut agent = Agent::over(host).poking(Duration::from_millis(50));
        let kernel = agent.wait_ready(Duration::from_secs(5)).await.unwrap();
        assert_eq!(kernel, "6.1.0-test");
        let r = agent.exec("false", Duration::from_secs(5)).await.unwrap();
        assert_eq!((r.code, r.output.as_str()), (1, ""));
        let t = agent.transcript();
        assert!(t.starts_with("[    0.9] Run /init"), "{t}");
        assert!(t.contains(&format!("{END} 2 1")), "{t}");
    }

    #[tokio::test]
    async fn without_poking_a_silent_guest_times_out() {
        let (host, _guest) = tokio::io::duplex(64);
        let mut agent = Agent::over(host);
        let err = agent
            .wait_ready(Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, AgentError::Timeout(..)), "{err}");
    }
}
