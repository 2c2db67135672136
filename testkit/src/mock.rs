//! A hand-written mocked API server: a `tower::Service` behind `kube::Client::new`.
//! It records every request (method, path, query, content type, JSON body) and
//! answers from a routing closure; watch answers can stay open forever so that
//! waits run into their deadline.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content_type: String,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub body: Value,
}

impl Recorded {
    pub fn query_has(&self, pair: &str) -> bool {
        self.query.split('&').any(|p| p == pair)
    }
}

pub enum Reply {
    Json(u16, Value),
    Text(u16, String),
    /// Watch events (one JSON line each), then the stream stays open.
    WatchOpen(Vec<Value>),
}

pub fn not_found(what: &str) -> Reply {
    Reply::Json(
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("{what} not found"), "reason": "NotFound", "code": 404}),
    )
}

pub fn list(kind: &str, items: Vec<Value>) -> Reply {
    Reply::Json(
        200,
        json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "10"}, "items": items}),
    )
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

#[derive(Clone)]
pub struct MockApi {
    log: Arc<Mutex<Vec<Recorded>>>,
    handler: Arc<Handler>,
}

impl MockApi {
    pub fn new(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        MockApi {
            log: Arc::default(),
            handler: Arc::new(handler),
        }
    }

    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }
}

pub enum MockBody {
    Chunks(VecDeque<Bytes>),
    /// Sends its chunks, then never ends.
    Open(VecDeque<Bytes>),
}

impl http_body::Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            MockBody::Chunks(c) => Poll::Ready(c.pop_front().map(|b| Ok(Frame::data(b)))),
            MockBody::Open(c) => match c.pop_front() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Poll::Pending,
            },
        }
    }
}

impl tower::Service<Request<kube::client::Body>> for MockApi {
    type Response = Response<MockBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let rec = Recorded {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or("").to_string(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let reply = (this.handler)(&rec);
            this.log.lock().unwrap().push(rec);
            let (status, body) = match reply {
                Reply::Json(s, v) => (
                    s,
                    MockBody::Chunks(VecDeque::from([Bytes::from(v.to_string())])),
                ),
                Reply::Text(s, t) => (s, MockBody::Chunks(VecDeque::from([Bytes::from(t)]))),
                Reply::WatchOpen(events) => (
                    200,
                    MockBody::Open(
                        events
                            .into_iter()
                            .map(|e| Bytes::from(format!("{e}\n")))
                            .collect(),
                    ),
                ),
            };
            Ok(Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body)
                .unwrap())
        })
    }
}

/// `%3D` → `=`, `+` → ` `: a query parameter as the client encoded it.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}
