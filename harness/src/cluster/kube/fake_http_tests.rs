//! The websocket-capable fake API server (`secnet_testkit::fake_http`) against the
//! harness's kube client stack: exec in the channel protocol, upgrades, the fake
//! scheduler behind it.

use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Response, header};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::fake_http::*;
use crate::cluster::Cluster;
use crate::cluster::kube::fake::fake_api_server;
use crate::cluster::kube::{KubeCluster, KubeOptions};

/// `sh -c` for the few scripts the tests run: what they print and their exit code.
fn shell(call: &ExecCall) -> ExecReply {
    match call.argv.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["echo", ref rest @ ..] => ExecReply::ok(format!("{}\n", rest.join(" "))),
        ["sh", "-c", "echo oops >&2; exit 3"] => ExecReply::failed(3, "oops\n"),
        ["sh", "-c", "echo both; echo warn >&2"] => ExecReply {
            stdout: "both\n".into(),
            stderr: "warn\n".into(),
            code: 0,
        },
        _ => ExecReply::failed(127, format!("{}: not found\n", call.argv[0])),
    }
}

async fn cluster(server: &FakeHttp) -> KubeCluster {
    KubeCluster::connect(server.client(), "kind", "sn0f0f0f", KubeOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn plain_requests_reach_the_mock_api() {
    let (api, _) = fake_api_server(false);
    let server = FakeHttp::builder(api).start().await;
    let c = cluster(&server).await;
    assert_eq!(c.nodes(), ["node-a", "node-b"]);
    let listed = server.requests();
    assert_eq!(listed[0].method, "GET");
    assert_eq!(listed[0].path, "/api/v1/nodes");
}

#[tokio::test]
async fn exec_over_the_channel_protocol() {
    let (api, _) = fake_api_server(false);
    let server = FakeHttp::builder(api).exec(shell).start().await;
    let c = cluster(&server).await;

    let out = c
        .exec("default", "p", &["echo", "hello", "world"])
        .await
        .unwrap();
    assert!(out.success);
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("hello world\n", "")
    );

    let out = c
        .exec("default", "p", &["sh", "-c", "echo both; echo warn >&2"])
        .await
        .unwrap();
    assert!(out.success);
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("both\n", "warn\n")
    );

    let out = c
        .exec("ns1", "q", &["sh", "-c", "echo oops >&2; exit 3"])
        .await
        .unwrap();
    assert!(!out.success, "exit 3 is a failure");
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", "oops\n"));

    let calls = server.execs();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[2].namespace, "ns1");
    assert_eq!(calls[2].pod, "q");
    assert_eq!(calls[2].argv, ["sh", "-c", "echo oops >&2; exit 3"]);
    // kube-rs offers v5 first; the server takes it.
    assert!(calls.iter().all(|c| c.protocol == EXEC_V5), "{calls:?}");
}

#[tokio::test]
async fn a_failed_exec_carries_its_exit_code_as_kube_reads_it() {
    let (api, _) = fake_api_server(false);
    let server = FakeHttp::builder(api).exec(shell).start().await;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(server.client(), "default");
    let ap = kube::api::AttachParams::default().stderr(true);
    let mut proc = pods.exec("p", ["no-such-program"], &ap).await.unwrap();
    let status = proc.take_status().unwrap().await.unwrap();
    proc.join().await.unwrap();
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let causes = status.details.unwrap().causes.unwrap();
    assert_eq!(causes[0].reason.as_deref(), Some("ExitCode"));
    assert_eq!(causes[0].message.as_deref(), Some("127"));
}

/// A websocket client's handshake to `path` offering `protocol`.
async fn ws_connect(
    server: &FakeHttp,
    path: &str,
    protocol: &'static str,
) -> Result<
    (
        WebSocketStream<tokio::net::TcpStream>,
        Response<Option<Vec<u8>>>,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}{path}", server.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol),
    );
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio_tungstenite::client_async(request, tcp).await
}

#[tokio::test]
async fn other_upgrades_go_to_their_raw_handler() {
    let (api, _) = fake_api_server(false);
    // An echo console, wired as a VMI's serial console would be.
    let server = FakeHttp::builder(api)
        .upgrade("/console", KUBEVIRT_PLAIN, |call, mut socket| async move {
            assert_eq!(call.protocol, KUBEVIRT_PLAIN);
            assert!(call.path.ends_with("/vm1/console") && call.query.is_empty());
            while let Some(Ok(Message::Binary(b))) = socket.next().await {
                let _ = socket.send(Message::binary(b)).await;
            }
        })
        .start()
        .await;
    let console =
        "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/vm1/console";
    let (mut ws, resp) = ws_connect(&server, console, KUBEVIRT_PLAIN).await.unwrap();
    assert_eq!(
        resp.headers().get(header::SEC_WEBSOCKET_PROTOCOL).unwrap(),
        KUBEVIRT_PLAIN
    );
    ws.send(Message::binary(b"login:".to_vec())).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_data().as_ref(), b"login:");

    // No handler for the path, or not for the offered subprotocol: refused.
    let attach = "/api/v1/namespaces/default/pods/p/attach";
    assert!(ws_connect(&server, attach, EXEC_V5).await.is_err());
    assert!(
        ws_connect(&server, console, "binary.kubevirt.io")
            .await
            .is_err()
    );
}
