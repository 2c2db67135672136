//! QEMU's machine protocol (QMP) over the guest's unix socket: what virt-launcher
//! uses to drive a live migration (`migrate`, `query-migrate`) and to plug NICs
//! (`netdev_add`, `device_add`, `device_del`). One JSON object per line each way;
//! asynchronous events (`STOP`, `RESUME`, `DEVICE_DELETED`, …) interleave with the
//! replies and are kept with QEMU's own timestamps.

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
    pub name: String,
    pub at: SystemTime,
    pub data: Value,
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
        let mut request = json!({ "execute": command });
        if arguments.as_object().is_some_and(|a| !a.is_empty()) {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|source| QmpError::Io {
                path: self.path.display().to_string(),
                source,
            })?;
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
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self.events.iter().find(|e| e.name == name) {
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
