//! A small OVSDB client (RFC 7047): JSON-RPC 1.0 over a Unix stream socket, the
//! `transact` method, and the datum encodings (`["uuid", …]`, `["set", […]]`,
//! `["map", […]]`) the plugin needs. No `ovs-vsctl` subprocess.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The database every Open vSwitch ovsdb-server serves.
pub const DATABASE: &str = "Open_vSwitch";

/// How long one request may take before the server counts as unresponsive.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The largest message accepted from the server: far above what this plugin's
/// selects return on a busy node, far below what would exhaust memory.
pub const MAX_MESSAGE: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OvsdbError {
    #[error("failed to connect to ovsdb-server at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to talk to ovsdb-server: {0}")]
    Io(#[from] std::io::Error),
    #[error("ovsdb-server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("ovsdb-server closed the connection")]
    Closed,
    #[error("ovsdb-server sent something that is not JSON: {0}")]
    Garbage(String),
    #[error("refusing {path}: {why}")]
    Untrusted { path: PathBuf, why: String },
    #[error("ovsdb-server refused the request: {0}")]
    Rpc(String),
    /// Operation `index` of a transaction failed (`error`, `details` from the server).
    #[error("operation {index} of the transaction failed: {error}{}", details.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Operation {
        index: usize,
        error: String,
        details: Option<String>,
    },
}

/// `socket_file` as ovs-cni users write it: `unix:/path` or a bare `/path`
/// (upstream documents the prefix as optional but fails without it).
pub fn socket_path(socket_file: &str) -> Result<PathBuf, String> {
    let path = socket_file.strip_prefix("unix:").unwrap_or(socket_file);
    if let Some((scheme, _)) = path.split_once(':')
        && !scheme.contains('/')
    {
        return Err(format!(
            "socket_file \"{socket_file}\": only unix sockets are supported (scheme {scheme}:)"
        ));
    }
    if !path.starts_with('/') {
        return Err(format!(
            "socket_file \"{socket_file}\" is not an absolute path"
        ));
    }
    Ok(PathBuf::from(path))
}

// ---- datum encodings ----

/// A UUID atom.
pub fn uuid(id: &str) -> Value {
    json!(["uuid", id])
}

/// A reference to a row inserted earlier in the same transaction.
pub fn named_uuid(name: &str) -> Value {
    json!(["named-uuid", name])
}

/// A set datum.
pub fn set(items: impl IntoIterator<Item = Value>) -> Value {
    json!(["set", items.into_iter().collect::<Vec<_>>()])
}

/// A string→string map datum.
pub fn map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let pairs: Vec<Value> = pairs.into_iter().map(|(k, v)| json!([k, v])).collect();
    json!(["map", pairs])
}

/// The members of a set column as returned by the server: a bare atom is a set of
/// one, `["set", […]]` a set of any size.
pub fn set_members(datum: &Value) -> Vec<Value> {
    match datum.as_array().map(Vec::as_slice) {
        Some([tag, items]) if tag == "set" => items.as_array().cloned().unwrap_or_default(),
        _ if datum.is_null() => Vec::new(),
        _ => vec![datum.clone()],
    }
}

/// The string of a `["uuid", "…"]` atom.
pub fn uuid_of(atom: &Value) -> Option<&str> {
    match atom.as_array().map(Vec::as_slice) {
        Some([tag, id]) if tag == "uuid" => id.as_str(),
        _ => None,
    }
}

/// A `["map", [[k, v], …]]` datum with string keys and values.
pub fn map_of(datum: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some([tag, pairs]) = datum.as_array().map(Vec::as_slice)
        && tag == "map"
    {
        for pair in pairs.as_array().into_iter().flatten() {
            if let Some([k, v]) = pair.as_array().map(Vec::as_slice) {
                let text = |x: &Value| {
                    x.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| x.to_string())
                };
                out.insert(text(k), text(v));
            }
        }
    }
    out
}

/// An integer column that may be empty (`["set", []]`) or hold one integer.
pub fn optional_int(datum: &Value) -> Option<i64> {
    set_members(datum).first().and_then(Value::as_i64)
}

/// The `transact` request (RFC 7047 §4.1.3).
pub fn transact_request(id: u64, operations: &[Value]) -> Value {
    let mut params = vec![json!(DATABASE)];
    params.extend(operations.iter().cloned());
    json!({"method": "transact", "params": params, "id": id})
}

/// Checks a `transact` reply's result: the server returns one result per operation,
/// an `{"error": …}` object for the first failed one, and a last extra error object
/// when a commit-time constraint fails.
pub fn check_results(results: &Value, operations: usize) -> Result<Vec<Value>, OvsdbError> {
    let list = results
        .as_array()
        .ok_or_else(|| OvsdbError::Garbage(format!("transact result is not a list: {results}")))?;
    for (index, r) in list.iter().enumerate() {
        if let Some(error) = r.get("error").and_then(Value::as_str) {
            return Err(OvsdbError::Operation {
                index,
                error: error.to_string(),
                details: r.get("details").and_then(Value::as_str).map(str::to_string),
            });
        }
    }
    if list.len() < operations {
        return Err(OvsdbError::Garbage(format!(
            "{} results for {operations} operations: {results}",
            list.len()
        )));
    }
    Ok(list.clone())
}

/// A connection to ovsdb-server.
pub struct Client {
    stream: UnixStream,
    framer: Framer,
    next_id: u64,
}

/// Checks the socket before and after connecting: a socket file itself (not a
/// symlink), outside `/proc` (another container's root), and served by root.
fn check_socket_file(path: &Path) -> Result<(), OvsdbError> {
    use std::os::unix::fs::FileTypeExt;
    let untrusted = |why: String| OvsdbError::Untrusted {
        path: path.to_path_buf(),
        why,
    };
    let meta = std::fs::symlink_metadata(path).map_err(|source| OvsdbError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(untrusted("it is a symlink".into()));
    }
    if !meta.file_type().is_socket() {
        return Err(untrusted("it is not a Unix socket".into()));
    }
    let real_dir = path
        .parent()
        .and_then(|d| std::fs::canonicalize(d).ok())
        .ok_or_else(|| untrusted("its directory cannot be resolved".into()))?;
    if path.starts_with("/proc") || real_dir.starts_with("/proc") || through_proc(path) {
        return Err(untrusted(
            "it lives under /proc (another process's root)".into(),
        ));
    }
    Ok(())
}

/// Whether a symlink on the way to `path` points into `/proc` (`/proc/<pid>/root`
/// resolves to another container's file system, and `canonicalize` hides that).
fn through_proc(path: &Path) -> bool {
    let mut prefix = PathBuf::from("/");
    for component in path.components().skip(1) {
        prefix.push(component);
        if let Ok(target) = std::fs::read_link(&prefix) {
            let mut resolved = prefix.parent().map(Path::to_path_buf).unwrap_or_default();
            for part in target.components() {
                match part {
                    std::path::Component::RootDir => resolved = PathBuf::from("/"),
                    std::path::Component::ParentDir => {
                        resolved.pop();
                    }
                    std::path::Component::Normal(n) => resolved.push(n),
                    _ => {}
                }
            }
            if resolved.starts_with("/proc") {
                return true;
            }
        }
    }
    false
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Client, OvsdbError> {
        check_socket_file(path)?;
        let stream = tokio::time::timeout(TIMEOUT, UnixStream::connect(path))
            .await
            .map_err(|_| OvsdbError::Timeout(TIMEOUT))?
            .map_err(|source| OvsdbError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        // SO_PEERCRED: the process that listens must be root's, as ovsdb-server is.
        let peer = stream.peer_cred().map_err(OvsdbError::Io)?;
        if peer.uid() != 0 {
            return Err(OvsdbError::Untrusted {
                path: path.to_path_buf(),
                why: format!("its server runs as uid {}, not root", peer.uid()),
            });
        }
        Ok(Client {
            stream,
            framer: Framer::default(),
            next_id: 1,
        })
    }

    /// Runs `operations` as one transaction; `Ok` only when every one succeeded.
    pub async fn transact(&mut self, operations: &[Value]) -> Result<Vec<Value>, OvsdbError> {
        let id = self.next_id;
        self.next_id += 1;
        let result = self.call(id, transact_request(id, operations)).await?;
        check_results(&result, operations.len())
    }

    /// `echo` (RFC 7047 §4.1.11): is the server alive and answering?
    pub async fn echo(&mut self) -> Result<(), OvsdbError> {
        let id = self.next_id;
        self.next_id += 1;
        self.call(
            id,
            json!({"method": "echo", "params": ["secnet"], "id": id}),
        )
        .await
        .map(|_| ())
    }

    async fn call(&mut self, id: u64, request: Value) -> Result<Value, OvsdbError> {
        tokio::time::timeout(TIMEOUT, self.call_inner(id, request))
            .await
            .map_err(|_| OvsdbError::Timeout(TIMEOUT))?
    }

    async fn call_inner(&mut self, id: u64, request: Value) -> Result<Value, OvsdbError> {
        let bytes = serde_json::to_vec(&request).expect("requests serialize");
        self.stream.write_all(&bytes).await?;
        loop {
            let msg = self.next_message().await?;
            // The server may ask us to echo (keepalive) before it answers.
            if msg.get("method").and_then(Value::as_str) == Some("echo") {
                let reply = json!({"result": msg["params"], "error": null, "id": msg["id"]});
                self.stream
                    .write_all(&serde_json::to_vec(&reply).expect("serializes"))
                    .await?;
                continue;
            }
            if msg.get("id").and_then(Value::as_u64) != Some(id) {
                continue; // a notification or a stale reply
            }
            if let Some(err) = msg.get("error").filter(|e| !e.is_null()) {
                return Err(OvsdbError::Rpc(err.to_string()));
            }
            return Ok(msg.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    /// One JSON value from the stream (messages are concatenated, not delimited).
    async fn next_message(&mut self) -> Result<Value, OvsdbError> {
        loop {
            if let Some(value) = self.framer.next_value()? {
                return Ok(value);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(OvsdbError::Closed);
            }
            self.framer.push(&chunk[..n]);
        }
    }
}

/// Splits a byte stream of concatenated JSON texts into values, scanning each byte
/// once (nesting depth, strings and escapes carried across reads) and parsing a
/// value only once its closing bracket arrived; a value above [`MAX_MESSAGE`] bytes
/// is refused instead of buffered.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned.
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Framer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete value, `None` when more bytes are needed.
    pub fn next_value(&mut self) -> Result<Option<Value>, OvsdbError> {
        while self.scanned < self.buf.len() {
            let b = self.buf[self.scanned];
            self.scanned += 1;
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' if self.depth > 0 => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let end = self.scanned;
                        let value = serde_json::from_slice(&self.buf[..end])
                            .map_err(|e| OvsdbError::Garbage(e.to_string()))?;
                        self.buf.drain(..end);
                        self.scanned = 0;
                        return Ok(Some(value));
                    }
                }
                b' ' | b'\t' | b'\r' | b'\n' if self.depth == 0 => {}
                _ if self.depth == 0 => {
                    return Err(OvsdbError::Garbage(format!(
                        "a message must be a JSON object, it starts with {:?}",
                        b as char
                    )));
                }
                _ => {}
            }
        }
        if self.buf.len() > MAX_MESSAGE {
            return Err(OvsdbError::Garbage(format!(
                "a message exceeds {MAX_MESSAGE} bytes"
            )));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transact_request_has_database_first() {
        let req = transact_request(
            7,
            &[json!({"op": "select", "table": "Bridge", "where": []})],
        );
        assert_eq!(req["method"], "transact");
        assert_eq!(req["id"], 7);
        assert_eq!(req["params"][0], "Open_vSwitch");
        assert_eq!(req["params"][1]["op"], "select");
        assert_eq!(req["params"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn datum_encodings() {
        assert_eq!(uuid("a-b"), json!(["uuid", "a-b"]));
        assert_eq!(named_uuid("port"), json!(["named-uuid", "port"]));
        assert_eq!(set([json!(1), json!(2)]), json!(["set", [1, 2]]));
        assert_eq!(set([]), json!(["set", []]));
        assert_eq!(
            map([("owner", "x"), ("contIface", "net1")]),
            json!(["map", [["owner", "x"], ["contIface", "net1"]]])
        );
    }

    #[test]
    fn datum_decodings() {
        assert_eq!(set_members(&json!(5)), vec![json!(5)]);
        assert_eq!(
            set_members(&json!(["set", [1, 2]])),
            vec![json!(1), json!(2)]
        );
        assert!(set_members(&json!(["set", []])).is_empty());
        assert_eq!(
            set_members(&json!(["uuid", "u"])),
            vec![json!(["uuid", "u"])],
            "a single uuid is a set of one"
        );
        assert_eq!(uuid_of(&json!(["uuid", "u1"])), Some("u1"));
        assert_eq!(uuid_of(&json!("u1")), None);
        let m = map_of(&json!(["map", [["a", "1"], ["b", "2"]]]));
        assert_eq!(m.get("b").map(String::as_str), Some("2"));
        assert_eq!(optional_int(&json!(["set", []])), None);
        assert_eq!(optional_int(&json!(100)), Some(100));
    }

    #[test]
    fn results_with_an_error_fail_with_its_index() {
        let r = json!([{"rows": []}, {"error": "timed out", "details": "wait"}]);
        match check_results(&r, 2) {
            Err(OvsdbError::Operation { index, error, .. }) => {
                assert_eq!((index, error.as_str()), (1, "timed out"))
            }
            other => panic!("{other:?}"),
        }
        // A commit failure comes as an extra object after the operations' results.
        let r = json!([{}, {"uuid": ["uuid", "x"]}, {"error": "referential integrity violation"}]);
        assert!(matches!(
            check_results(&r, 2),
            Err(OvsdbError::Operation { index: 2, .. })
        ));
        assert_eq!(check_results(&json!([{}, {}]), 2).unwrap().len(), 2);
        assert!(check_results(&json!([{}]), 2).is_err());
    }

    #[test]
    fn messages_split_at_value_boundaries_across_reads() {
        let mut f = Framer::default();
        f.push(br#" {"id":1,"result":["a}\"]"]}{"id":2,"res"#);
        assert_eq!(f.next_value().unwrap().unwrap()["result"][0], "a}\"]");
        assert_eq!(f.next_value().unwrap(), None, "partial message");
        f.push(br#"ult":[]}"#);
        assert_eq!(f.next_value().unwrap().unwrap()["id"], 2);
        assert_eq!(f.next_value().unwrap(), None);
        let mut f = Framer::default();
        f.push(b"}garbage");
        assert!(f.next_value().is_err());
    }

    #[test]
    fn sockets_reached_through_proc_are_refused() {
        let dir = std::env::temp_dir().join(format!("ovs-cni-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("ovs");
        std::os::unix::fs::symlink("/proc/1/root/run", &link).unwrap();
        assert!(through_proc(&link.join("db.sock")));
        let rel = dir.join("rel");
        std::os::unix::fs::symlink("../../proc/self/root/tmp", &rel).unwrap();
        assert!(through_proc(&rel.join("db.sock")));
        assert!(!through_proc(&dir.join("db.sock")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn oversized_messages_are_refused_without_rescanning() {
        let mut f = Framer::default();
        f.push(b"{\"id\":1,\"result\":\"");
        let chunk = vec![b'x'; 1 << 20];
        let mut refused = false;
        for _ in 0..20 {
            f.push(&chunk);
            if f.next_value().is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "a message above MAX_MESSAGE must be refused");
    }

    #[test]
    fn socket_file_with_or_without_prefix() {
        assert_eq!(
            socket_path("unix:/var/run/openvswitch/db.sock").unwrap(),
            PathBuf::from("/var/run/openvswitch/db.sock")
        );
        assert_eq!(
            socket_path("/tmp/x/db.sock").unwrap(),
            PathBuf::from("/tmp/x/db.sock")
        );
        assert!(
            socket_path("tcp:127.0.0.1:6640")
                .unwrap_err()
                .contains("unix")
        );
        assert!(socket_path("db.sock").unwrap_err().contains("absolute"));
    }
}
