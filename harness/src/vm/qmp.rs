//! QEMU's machine protocol (QMP) over the guest's unix socket: what virt-launcher
//! uses to drive a live migration (`migrate`, `query-migrate`) and to plug NICs
//! (`netdev_add`, `device_add`, `device_del`). One JSON object per line each way;
//! asynchronous events (`STOP`, `RESUME`, `DEVICE_DELETED`, …) interleave with the
//! replies and are kept with QEMU's own timestamps.

use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("failed to connect to QMP at {path} within {waited:?}: {source}")]
    Connect {
        path: String,
        waited: Duration,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP at {path} closed while waiting for {what}")]
    Closed { path: String, what: String },
    #[error("QMP at {path}: {what} got no answer within {timeout:?}")]
    Timeout {
        path: String,
        what: String,
        timeout: Duration,
    },
    #[error("QMP at {path}: `{command}` failed: {class}: {desc}")]
    Command {
        path: String,
        command: String,
        class: String,
        desc: String,
    },
    #[error("QMP at {path}: unreadable line {line:?}: {source}")]
    Json {
        path: String,
        line: String,
        #[source]
        source: serde_json::Error,
    },
}

/// An asynchronous QMP event, stamped by QEMU.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub(crate) name: String,
    pub(crate) at: SystemTime,
    pub(crate) data: Value,
}

pub struct Qmp {
    path: PathBuf,
    reader: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
    events: Vec<Event>,
}

const ANSWER: Duration = Duration::from_secs(10);

impl Qmp {
    /// Connects (QEMU creates the socket a moment after it starts), reads the
    /// greeting and leaves capabilities negotiation.
    pub async fn connect(path: &Path) -> Result<Qmp, QmpError> {
        let start = std::time::Instant::now();
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e) if start.elapsed() < Duration::from_secs(10) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(source) => {
                    return Err(QmpError::Connect {
                        path: path.display().to_string(),
                        waited: start.elapsed(),
                        source,
                    });
                }
            }
        };
        let (r, w) = stream.into_split();
        let mut qmp = Qmp {
            path: path.to_path_buf(),
            reader: BufReader::new(r).lines(),
            writer: w,
            events: Vec::new(),
        };
        qmp.next("the QMP greeting").await?;
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    async fn next(&mut self, what: &str) -> Result<Value, QmpError> {
        let line = tokio::time::timeout(ANSWER, self.reader.next_line())
            .await
            .map_err(|_| QmpError::Timeout {
                path: self.path.display().to_string(),
                what: what.to_string(),
                timeout: ANSWER,
            })?
            .map_err(|source| QmpError::Io {
                path: self.path.display().to_string(),
                source,
            })?
            .ok_or_else(|| QmpError::Closed {
                path: self.path.display().to_string(),
                what: what.to_string(),
            })?;
        serde_json::from_str(&line).map_err(|source| QmpError::Json {
            path: self.path.display().to_string(),
            line,
            source,
        })
    }

    /// Runs `command`; its `return` value. Events read meanwhile are kept.
    pub async fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        let line = request(command, arguments);
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|source| QmpError::Io {
                path: self.path.display().to_string(),
                source,
            })?;
        self.reply(command).await
    }

    /// Runs `command` with `fd` passed along (SCM_RIGHTS), as `getfd` wants it: how
    /// virt-launcher hands a hot-plugged macvtap's `/dev/tapN` to a running QEMU.
    pub async fn execute_with_fd(
        &mut self,
        command: &str,
        arguments: Value,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<Value, QmpError> {
        let line = request(command, arguments);
        let io = |source| QmpError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let sock: &UnixStream = self.writer.as_ref();
        loop {
            sock.writable().await.map_err(io)?;
            match sock.try_io(tokio::io::Interest::WRITABLE, || {
                send_with_fd(sock.as_raw_fd(), line.as_bytes(), fd.as_raw_fd())
            }) {
                Ok(n) if n == line.len() => break,
                Ok(n) => {
                    return Err(io(std::io::Error::other(format!(
                        "sent {n} of {} bytes with the fd",
                        line.len()
                    ))));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(io(e)),
            }
        }
        self.reply(command).await
    }

    async fn reply(&mut self, command: &str) -> Result<Value, QmpError> {
        loop {
            let v = self.next(command).await?;
            if let Some(name) = v["event"].as_str() {
                self.events.push(event(name, &v));
                continue;
            }
            if let Some(err) = v.get("error") {
                return Err(QmpError::Command {
                    path: self.path.display().to_string(),
                    command: command.to_string(),
                    class: err["class"].as_str().unwrap_or("?").to_string(),
                    desc: err["desc"].as_str().unwrap_or("?").to_string(),
                });
            }
            if let Some(ret) = v.get("return") {
                return Ok(ret.clone());
            }
        }
    }

    /// The events seen so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Waits up to `timeout` for event `name` (or returns the one already seen).
    pub async fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<Event, QmpError> {
        self.wait_event_where(name, |_| true, timeout).await
    }

    /// Waits up to `timeout` for event `name` whose data `matches` (or returns the
    /// one already seen).
    pub async fn wait_event_where(
        &mut self,
        name: &str,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Event, QmpError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self
                .events
                .iter()
                .find(|e| e.name == name && matches(&e.data))
            {
                return Ok(e.clone());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let line = tokio::time::timeout(left, self.reader.next_line())
                .await
                .map_err(|_| QmpError::Timeout {
                    path: self.path.display().to_string(),
                    what: format!("event {name}"),
                    timeout,
                })?
                .map_err(|source| QmpError::Io {
                    path: self.path.display().to_string(),
                    source,
                })?
                .ok_or_else(|| QmpError::Closed {
                    path: self.path.display().to_string(),
                    what: format!("event {name}"),
                })?;
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && let Some(n) = v["event"].as_str()
            {
                self.events.push(event(n, &v));
            }
        }
    }
}

/// One QMP request line.
fn request(command: &str, arguments: Value) -> String {
    let mut request = json!({ "execute": command });
    if arguments.as_object().is_some_and(|a| !a.is_empty()) {
        request["arguments"] = arguments;
    }
    let mut line = request.to_string();
    line.push('\n');
    line
}

/// `data` on the unix socket `sock` with `fd` as SCM_RIGHTS ancillary data.
fn send_with_fd(sock: RawFd, data: &[u8], fd: RawFd) -> std::io::Result<usize> {
    use nix::libc;
    let fd_len = std::mem::size_of::<RawFd>() as u32;
    // u64s: the control buffer must be aligned for cmsghdr.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: every pointer handed to sendmsg points into the live locals above,
    // and the control buffer is larger than CMSG_SPACE of one fd.
    let sent = unsafe {
        let space = libc::CMSG_SPACE(fd_len) as usize;
        debug_assert!(space <= std::mem::size_of_val(&control));
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fd_len) as _;
        std::ptr::copy_nonoverlapping(
            (&fd as *const RawFd).cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            fd_len as usize,
        );
        libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

fn event(name: &str, v: &Value) -> Event {
    let secs = v["timestamp"]["seconds"].as_u64().unwrap_or(0);
    let micros = v["timestamp"]["microseconds"].as_u64().unwrap_or(0);
    Event {
        name: name.to_string(),
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros),
        data: v["data"].clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_qemus_timestamp() {
        let v: Value = serde_json::from_str(
            r#"{"timestamp": {"seconds": 1700000000, "microseconds": 250000}, "event": "STOP"}"#,
        )
        .unwrap();
        let e = event("STOP", &v);
        assert_eq!(
            e.at.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_700_000_000_250)
        );
    }
}
