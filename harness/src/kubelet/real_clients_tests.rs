//! The Registration server answers real device plugins whatever `:authority` their gRPC
//! stack sends over the socket: the exact bytes of grpc-go and gRPC C-core clients
//! (`deviceplugin_api::peers`), every authority form, a real Register each time.

use std::time::{Duration, Instant};

use deviceplugin_api::peers::{self, Authority, Client};
use deviceplugin_api::v1beta1::{DevicePluginOptions, RegisterRequest};
use prost::Message;

use super::DeviceManager;
use crate::lab::ScratchDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_registration_answers_grpc_go_and_c_core_with_every_authority() {
    let dir = ScratchDir::new("secnet-kubelet-authority").unwrap();
    let dm = DeviceManager::start(dir.path()).unwrap();
    let socket = dm.kubelet_socket();
    for client in [Client::GrpcGo, Client::CCore] {
        for authority in Authority::ALL {
            let case = format!("{client:?}/{authority:?}");
            let name = format!("{client:?}-{authority:?}").to_lowercase();
            let request = RegisterRequest {
                version: "v1beta1".into(),
                endpoint: format!("example.com_{name}"),
                resource_name: format!("example.com/{name}"),
                options: Some(DevicePluginOptions::default()),
            };
            let bytes = peers::request(
                client,
                "/v1beta1.Registration/Register",
                &authority.value(&socket),
                &request.encode_to_vec(),
            );
            let since = Instant::now();
            let answer = peers::call(&socket, &bytes, Duration::from_secs(5))
                .await
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(answer.status, "200", "{case}: {answer:?}");
            assert_eq!(
                answer.grpc_status.as_deref(),
                Some("0"),
                "{case}: {answer:?}"
            );
            let reg = dm
                .wait_for_registration(&request.resource_name, since, Duration::from_secs(2))
                .await
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(reg.endpoint, request.endpoint, "{case}");
        }
    }
    // A bad request still gets a gRPC answer (not a reset): the service saw it.
    let bytes = peers::request(
        Client::GrpcGo,
        "/v1beta1.Registration/Register",
        &Authority::SocketPath.value(&socket),
        &RegisterRequest::default().encode_to_vec(),
    );
    let answer = peers::call(&socket, &bytes, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer.grpc_status.as_deref(), Some("3"), "{answer:?}");
    dm.stop().await;
}
