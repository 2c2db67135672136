//! The kubelet's pod-resources API v1 (`List`, `Get`) on its own socket, answered
//! from the device manager's admissions: which pod's containers hold which device
//! IDs of which resource. Pods holding no device are not listed (the double knows
//! only what admission recorded).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deviceplugin_api::podresources::v1::pod_resources_lister_server::{
    PodResourcesLister, PodResourcesListerServer,
};
use deviceplugin_api::podresources::v1::{
    ContainerDevices, ContainerResources, GetPodResourcesRequest, GetPodResourcesResponse,
    ListPodResourcesRequest, ListPodResourcesResponse, PodResources,
};
use deviceplugin_api::uds;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

use super::{KubeletError, PodDevices, Shared};

/// A running pod-resources server; stopping it removes its socket.
pub struct PodResourcesServer {
    socket: PathBuf,
    task: JoinHandle<()>,
}

impl PodResourcesServer {
    pub fn start(socket: &Path, shared: Arc<Shared>) -> Result<PodResourcesServer, KubeletError> {
        let listener = uds::bind(socket).map_err(|source| KubeletError::ServePodResources {
            path: socket.to_path_buf(),
            source,
        })?;
        let service = PodResourcesListerServer::new(Lister { shared });
        let task = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .serve_with_incoming(service, uds::incoming(listener))
                .await;
            if let Err(e) = served {
                tracing::warn!("kubelet pod-resources server ended: {e}");
            }
        });
        Ok(PodResourcesServer {
            socket: socket.to_path_buf(),
            task,
        })
    }

    /// Stops at once and removes the socket.
    pub fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

struct Lister {
    shared: Arc<Shared>,
}

impl Lister {
    fn pods(&self) -> Vec<PodResources> {
        self.shared.read(|s| pod_resources(&s.pods))
    }
}

#[tonic::async_trait]
impl PodResourcesLister for Lister {
    async fn list(
        &self,
        _: Request<ListPodResourcesRequest>,
    ) -> Result<Response<ListPodResourcesResponse>, Status> {
        Ok(Response::new(ListPodResourcesResponse {
            pod_resources: self.pods(),
        }))
    }

    async fn get(
        &self,
        request: Request<GetPodResourcesRequest>,
    ) -> Result<Response<GetPodResourcesResponse>, Status> {
        let r = request.into_inner();
        let pod = self
            .pods()
            .into_iter()
            .find(|p| p.namespace == r.pod_namespace && p.name == r.pod_name)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "pod {} in namespace {} not found",
                    r.pod_name, r.pod_namespace
                ))
            })?;
        Ok(Response::new(GetPodResourcesResponse {
            pod_resources: Some(pod),
        }))
    }
}

/// Admissions grouped as the API reports them: pod → container → resource → IDs,
/// in admission order.
fn pod_resources(admitted: &[PodDevices]) -> Vec<PodResources> {
    let mut pods: Vec<PodResources> = Vec::new();
    let mut pod_index: BTreeMap<&str, usize> = BTreeMap::new();
    for a in admitted {
        let i = *pod_index.entry(&a.pod.uid).or_insert_with(|| {
            pods.push(PodResources {
                name: a.pod.name.clone(),
                namespace: a.pod.namespace.clone(),
                containers: Vec::new(),
            });
            pods.len() - 1
        });
        let containers = &mut pods[i].containers;
        let container = match containers.iter().position(|c| c.name == a.container) {
            Some(c) => &mut containers[c],
            None => {
                containers.push(ContainerResources {
                    name: a.container.clone(),
                    devices: Vec::new(),
                });
                containers.last_mut().expect("just pushed")
            }
        };
        container.devices.push(ContainerDevices {
            resource_name: a.resource.clone(),
            device_ids: a.ids.clone(),
            topology: None,
        });
    }
    pods
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use deviceplugin_api::podresources::v1::pod_resources_lister_client::PodResourcesListerClient;
    use deviceplugin_api::v1beta1::AllocateResponse;

    use super::*;
    use crate::kubelet::PodId;
    use crate::lab::ScratchDir;

    fn admitted(pod: &PodId, container: &str, resource: &str, ids: &[&str]) -> PodDevices {
        PodDevices {
            pod: pod.clone(),
            container: container.into(),
            resource: resource.into(),
            ids: ids.iter().map(|s| s.to_string()).collect(),
            response: AllocateResponse::default(),
        }
    }

    /// List and Get over the socket, as the macvtap CNI and multus ask them.
    #[tokio::test]
    async fn list_and_get_answer_from_admissions_grouped_by_pod_and_container() {
        let dir = ScratchDir::new("secnet-pod-resources").unwrap();
        let socket = dir.path().join("kubelet.sock");
        let shared = Arc::new(Shared::default());
        let (a, b) = (PodId::new("ns", "a", "u1"), PodId::new("ns", "b", "u2"));
        shared.update(|s| {
            s.pods = vec![
                admitted(&a, "compute", "example.com/x", &["x0", "x1"]),
                admitted(&b, "compute", "example.com/x", &["x2"]),
                admitted(&a, "compute", "example.com/y", &["y0"]),
                admitted(&a, "sidecar", "example.com/x", &["x3"]),
            ]
        });
        let server = PodResourcesServer::start(&socket, shared).unwrap();

        let list = deviceplugin_api::podresources::list(&socket, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(list.pod_resources.len(), 2);
        let pod_a = list.pod("ns", "a").unwrap();
        assert_eq!(pod_a.containers.len(), 2, "{pod_a:?}");
        assert_eq!(pod_a.containers[0].devices.len(), 2, "two resources");
        assert_eq!(pod_a.resource_holding("x3"), Some("example.com/x"));
        assert_eq!(pod_a.resource_holding("x2"), None, "b's");
        assert!(list.pod("other", "a").is_none());

        let channel = deviceplugin_api::uds::connect(&socket, Duration::from_secs(5))
            .await
            .unwrap();
        let mut client = PodResourcesListerClient::new(channel);
        let got = client
            .get(GetPodResourcesRequest {
                pod_name: "b".into(),
                pod_namespace: "ns".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_resources
            .unwrap();
        assert_eq!(got.resource_holding("x2"), Some("example.com/x"));
        let missing = client
            .get(GetPodResourcesRequest {
                pod_name: "c".into(),
                pod_namespace: "ns".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);

        server.stop();
        assert!(!socket.exists(), "stop removes the socket");
    }
}
