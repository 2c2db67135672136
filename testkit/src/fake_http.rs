//! The fake API server on a real socket, for what needs a websocket: a hyper
//! HTTP/1.1 server on `127.0.0.1:<ephemeral>` that hands plain requests to a
//! `MockApi` (so the harness's fake scheduler can sit behind it) and upgrades
//! websocket requests:
//!
//! - `…/pods/<pod>/exec` (subprotocols `v5.channel.k8s.io`, `v4.channel.k8s.io`) to
//!   an exec closure `ExecCall -> ExecReply`, answered in the channel protocol as
//!   the kubelet answers through the API server: channel 1 stdout, 2 stderr, with
//!   v5 the close signals `[255, 1]` `[255, 2]`, then channel 3 a `Status` whose
//!   failure carries the exit code where kubectl and kube-rs read it
//!   (`details.causes[reason=ExitCode].message`).
//! - any other path ending in a registered suffix (such as KubeVirt's
//!   `/virtualmachineinstances/<vmi>/console` with `plain.kubevirt.io`) to a raw
//!   `WebSocketStream` handler, which speaks whatever that subprotocol is.
//!
//! `FakeHttp::client()` is a `kube::Client` built from a `Config` whose cluster URL
//! is the server's, so the whole client stack (hyper, the upgrade, tungstenite) runs.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tower::Service;

use crate::mock::{MockApi, MockBody, percent_decode};

/// An upgraded connection, server side.
pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

pub const EXEC_V5: &str = "v5.channel.k8s.io";
pub const EXEC_V4: &str = "v4.channel.k8s.io";
/// KubeVirt's VMI serial console subprotocol.
pub const KUBEVIRT_PLAIN: &str = "plain.kubevirt.io";

const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const CLOSE: u8 = 255;

/// One exec request as the API server got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCall {
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
    pub argv: Vec<String>,
    /// The subprotocol agreed on (`v5.channel.k8s.io` or `v4.channel.k8s.io`).
    pub protocol: String,
}

/// What the command printed and its exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecReply {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl ExecReply {
    pub fn ok(stdout: impl Into<String>) -> ExecReply {
        ExecReply {
            stdout: stdout.into(),
            ..ExecReply::default()
        }
    }

    pub fn failed(code: i32, stderr: impl Into<String>) -> ExecReply {
        ExecReply {
            stderr: stderr.into(),
            code,
            ..ExecReply::default()
        }
    }
}

type ExecFn = dyn Fn(&ExecCall) -> ExecReply + Send + Sync;

/// An upgrade request a raw handler gets with its socket.
#[derive(Debug, Clone)]
pub struct UpgradeCall {
    pub path: String,
    pub query: String,
    /// The subprotocol agreed on.
    pub protocol: String,
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type UpgradeFn = dyn Fn(UpgradeCall, Socket) -> BoxFuture + Send + Sync;

struct Route {
    suffix: String,
    protocol: String,
    handler: Arc<UpgradeFn>,
}

/// What the server routes; shared by its connections.
struct Routes {
    api: MockApi,
    /// Asked first; its 404s fall through to `api`.
    front: Option<MockApi>,
    exec: Arc<ExecFn>,
    upgrades: Vec<Route>,
    execs: Mutex<Vec<ExecCall>>,
}

pub struct FakeHttpBuilder {
    api: MockApi,
    front: Option<MockApi>,
    exec: Arc<ExecFn>,
    upgrades: Vec<Route>,
}

impl FakeHttpBuilder {
    /// Puts `front` before the API: plain requests go to it first, and what it
    /// answers with 404 goes on to the API (extra routes, such as another
    /// namespace, next to a fake that knows only its own).
    pub fn front(mut self, front: MockApi) -> Self {
        self.front = Some(front);
        self
    }

    /// Answers exec requests with `f` (default: exit 127, "not found").
    pub fn exec(mut self, f: impl Fn(&ExecCall) -> ExecReply + Send + Sync + 'static) -> Self {
        self.exec = Arc::new(f);
        self
    }

    /// Upgrades requests whose path ends in `suffix` offering `protocol` and hands
    /// the socket to `f` (which owns it until it returns).
    pub fn upgrade<F, Fut>(mut self, suffix: &str, protocol: &str, f: F) -> Self
    where
        F: Fn(UpgradeCall, Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.upgrades.push(Route {
            suffix: suffix.to_string(),
            protocol: protocol.to_string(),
            handler: Arc::new(move |call, socket| Box::pin(f(call, socket))),
        });
        self
    }

    /// Listens on an ephemeral port of 127.0.0.1 and serves until dropped.
    pub async fn start(self) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let routes = Arc::new(Routes {
            api: self.api,
            front: self.front,
            exec: self.exec,
            upgrades: self.upgrades,
            execs: Mutex::default(),
        });
        let serving = routes.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let routes = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let routes = routes.clone();
                        async move { Ok::<_, std::convert::Infallible>(routes.answer(req).await) }
                    });
                    // A client that goes away mid-request is no error of the server's.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        FakeHttp { addr, routes, task }
    }
}

/// The running server; it stops when dropped.
pub struct FakeHttp {
    pub addr: SocketAddr,
    routes: Arc<Routes>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeHttp {
    pub fn builder(api: MockApi) -> FakeHttpBuilder {
        FakeHttpBuilder {
            api,
            front: None,
            exec: Arc::new(|c: &ExecCall| {
                ExecReply::failed(127, format!("{}: not found\n", c.argv[0]))
            }),
            upgrades: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client as a kubeconfig for this server would make it.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url().parse().expect("a valid URL"));
        config.default_namespace = "default".into();
        kube::Client::try_from(config).expect("a client for the fake server")
    }

    /// The plain requests the API got, as `MockApi` recorded them (a front's are
    /// in its own log).
    pub fn requests(&self) -> Vec<crate::mock::Recorded> {
        self.routes.api.requests()
    }

    /// The exec requests, in arrival order.
    pub fn execs(&self) -> Vec<ExecCall> {
        self.routes.execs.lock().unwrap().clone()
    }
}

impl Routes {
    async fn answer(self: Arc<Self>, req: Request<Incoming>) -> Response<MockBody> {
        let wants_socket = req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if wants_socket {
            self.upgrade(req)
        } else {
            self.forward(req).await
        }
    }

    /// A plain request: to the front `MockApi`, unless it does not know it, then to
    /// the API, body and all.
    async fn forward(&self, req: Request<Incoming>) -> Response<MockBody> {
        let (parts, body) = req.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let call = |mut api: MockApi| {
            let req = Request::from_parts(parts.clone(), kube::client::Body::from(bytes.clone()));
            async move {
                match api.call(req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            }
        };
        if let Some(front) = &self.front {
            let resp = call(front.clone()).await;
            if resp.status() != StatusCode::NOT_FOUND {
                return resp;
            }
        }
        call(self.api.clone()).await
    }

    /// A websocket request: 101 with the agreed subprotocol, the socket to its handler.
    fn upgrade(self: Arc<Self>, mut req: Request<Incoming>) -> Response<MockBody> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let offered: Vec<String> = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_string())
            .collect();
        let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return plain(400, "no Sec-WebSocket-Key");
        };
        let exec = exec_target(&path);
        let (protocol, route) = if exec.is_some() {
            // As the API server: v5 when the client offers it.
            let Some(p) = [EXEC_V5, EXEC_V4]
                .into_iter()
                .find(|p| offered.iter().any(|o| o == p))
            else {
                return plain(400, "exec needs v5.channel.k8s.io or v4.channel.k8s.io");
            };
            (p.to_string(), None)
        } else {
            let Some(route) = self
                .upgrades
                .iter()
                .position(|r| path.ends_with(&r.suffix) && offered.contains(&r.protocol))
            else {
                return plain(
                    404,
                    &format!("no websocket handler for {path} ({offered:?})"),
                );
            };
            (self.upgrades[route].protocol.clone(), Some(route))
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        let routes = self.clone();
        let chosen = protocol.clone();
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let socket =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            match (exec, route) {
                (Some((namespace, pod)), _) => {
                    let call = ExecCall {
                        namespace,
                        pod,
                        container: query_values(&query, "container").into_iter().next(),
                        argv: query_values(&query, "command"),
                        protocol: chosen,
                    };
                    routes.execs.lock().unwrap().push(call.clone());
                    let reply = (routes.exec)(&call);
                    answer_exec(socket, &call, reply).await;
                }
                (None, Some(i)) => {
                    let handler = routes.upgrades[i].handler.clone();
                    handler(
                        UpgradeCall {
                            path,
                            query,
                            protocol: chosen,
                        },
                        socket,
                    )
                    .await;
                }
                (None, None) => {}
            }
        });
        let mut resp = Response::new(MockBody::Chunks(Default::default()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 is ASCII"),
        );
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(&protocol).expect("a protocol name"),
        );
        resp
    }
}

/// `(namespace, pod)` of `/api/v1/namespaces/<ns>/pods/<pod>/exec`.
fn exec_target(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (ns, rest) = rest.split_once("/pods/")?;
    let pod = rest.strip_suffix("/exec")?;
    Some((ns.to_string(), pod.to_string()))
}

/// Every value of `key` in a query string, in order (`command=a&command=b`).
fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

fn plain(status: u16, text: &str) -> Response<MockBody> {
    let mut resp = Response::new(MockBody::Chunks([Bytes::from(text.to_string())].into()));
    *resp.status_mut() = StatusCode::from_u16(status).expect("a status code");
    resp
}

/// The `Status` the API server relays on channel 3 when the command ends.
pub fn exit_status(argv: &[String], code: i32) -> serde_json::Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({"metadata": {}, "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {argv:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::binary(bytes)
}

/// Stdout, stderr, (v5) their close signals, then the status; then the server reads
/// until the client goes, as the client may still send its own stdin close.
async fn answer_exec(mut socket: Socket, call: &ExecCall, reply: ExecReply) {
    let mut frames = Vec::new();
    if !reply.stdout.is_empty() {
        frames.push(framed(STDOUT, reply.stdout.as_bytes()));
    }
    if !reply.stderr.is_empty() {
        frames.push(framed(STDERR, reply.stderr.as_bytes()));
    }
    if call.protocol == EXEC_V5 {
        frames.push(Message::binary(vec![CLOSE, STDOUT]));
        frames.push(Message::binary(vec![CLOSE, STDERR]));
    }
    let status = exit_status(&call.argv, reply.code).to_string();
    frames.push(framed(STATUS, status.as_bytes()));
    for frame in frames {
        if socket.send(frame).await.is_err() {
            return;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    let _ = socket.close(None).await;
}
