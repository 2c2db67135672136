//! The kubelet's pod-resources API v1 (`v1.PodResourcesLister` on
//! `/var/lib/kubelet/pod-resources/kubelet.sock`): which device IDs each container of
//! each pod on the node holds. secnet's kubelet double serves it; the macvtap CNI asks
//! it whether a deviceID belongs to the pod it is attaching.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::uds::{self, UdsError};

/// Generated from `proto/podresources.proto` (package `v1`).
#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("v1");
}

use v1::pod_resources_lister_client::PodResourcesListerClient;
use v1::{ListPodResourcesRequest, ListPodResourcesResponse, PodResources};

/// Where the kubelet serves the API.
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

#[derive(Debug, thiserror::Error)]
pub enum PodResourcesError {
    #[error(transparent)]
    Connect(#[from] UdsError),
    #[error("failed to list pod resources on {path}: {status}")]
    Call {
        path: PathBuf,
        status: tonic::Status,
    },
    #[error("failed to list pod resources on {path}: no answer within {timeout:?}")]
    Timeout { path: PathBuf, timeout: Duration },
}

impl PodResourcesError {
    /// The kubelet's rate limit (`ResourceExhausted`, "rejected by rate limit"):
    /// worth calling again shortly.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, PodResourcesError::Call { status, .. } if status.code() == tonic::Code::ResourceExhausted)
    }
}

/// Calls `List` on the kubelet at `socket`; connecting and the call together take
/// at most `timeout`.
pub async fn list(
    socket: &Path,
    timeout: Duration,
) -> Result<ListPodResourcesResponse, PodResourcesError> {
    let call = async {
        let channel = uds::connect(socket, timeout).await?;
        PodResourcesListerClient::new(channel)
            .list(ListPodResourcesRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| PodResourcesError::Call {
                path: socket.to_path_buf(),
                status,
            })
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(PodResourcesError::Timeout {
                path: socket.to_path_buf(),
                timeout,
            })
        })
}

impl ListPodResourcesResponse {
    /// The pod `namespace/name`, if the kubelet lists it.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodResources> {
        self.pod_resources
            .iter()
            .find(|p| p.namespace == namespace && p.name == name)
    }
}

impl PodResources {
    /// The resource through which some container of this pod holds `device_id`.
    pub fn resource_holding(&self, device_id: &str) -> Option<&str> {
        self.containers
            .iter()
            .flat_map(|c| &c.devices)
            .find(|d| d.device_ids.iter().any(|id| id == device_id))
            .map(|d| d.resource_name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::v1::{ContainerDevices, ContainerResources};
    use super::*;
    use prost::Message;

    fn pod(namespace: &str, name: &str, devices: &[(&str, &[&str])]) -> PodResources {
        PodResources {
            name: name.into(),
            namespace: namespace.into(),
            containers: vec![ContainerResources {
                name: "compute".into(),
                devices: devices
                    .iter()
                    .map(|(resource, ids)| ContainerDevices {
                        resource_name: resource.to_string(),
                        device_ids: ids.iter().map(|s| s.to_string()).collect(),
                        topology: None,
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn finds_the_pod_and_the_resource_holding_a_device() {
        let list = ListPodResourcesResponse {
            pod_resources: vec![
                pod(
                    "ns",
                    "a",
                    &[("macvtap.network.kubevirt.io/dp", &["dpMvp0"])],
                ),
                pod(
                    "ns2",
                    "a",
                    &[("macvtap.network.kubevirt.io/dp", &["dpMvp1"])],
                ),
            ],
        };
        let a = list.pod("ns", "a").unwrap();
        assert_eq!(
            a.resource_holding("dpMvp0"),
            Some("macvtap.network.kubevirt.io/dp")
        );
        assert_eq!(a.resource_holding("dpMvp1"), None);
        assert!(list.pod("ns", "b").is_none());
    }

    /// A ListPodResourcesResponse as the real kubelet encodes it, field numbers and
    /// all, including the container fields we leave out of our proto (cpu_ids = 3,
    /// memory = 4): written by hand from the wire format, decoded by our messages.
    #[test]
    fn decodes_the_kubelets_wire_bytes() {
        fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
            let mut out = vec![(number << 3) | 2, bytes.len() as u8];
            out.extend_from_slice(bytes);
            out
        }
        let devices = [
            field(1, b"macvtap.network.kubevirt.io/dp"),
            field(2, b"dpMvp3"),
            field(2, b"dpMvp4"),
            field(3, &field(1, &[0x08, 0x01])), // topology { nodes { ID: 1 } }
        ]
        .concat();
        let container = [
            field(1, b"compute"),
            field(2, &devices),
            vec![0x18, 0x05],               // cpu_ids: 5 (varint)
            field(4, &field(1, b"memory")), // memory { memory_type }
        ]
        .concat();
        let pod = [field(1, b"vm-a"), field(2, b"tenant"), field(3, &container)].concat();
        let bytes = field(1, &pod);

        let decoded = ListPodResourcesResponse::decode(bytes.as_slice()).unwrap();
        let p = decoded.pod("tenant", "vm-a").expect("pod decoded");
        assert_eq!(p.containers[0].name, "compute");
        assert_eq!(p.containers[0].devices[0].device_ids, ["dpMvp3", "dpMvp4"]);
        assert_eq!(
            p.containers[0].devices[0].topology.as_ref().unwrap().nodes[0].id,
            1
        );
        assert_eq!(
            p.resource_holding("dpMvp4"),
            Some("macvtap.network.kubevirt.io/dp")
        );
        // And what we encode is what we decode (the kubelet double's answers).
        assert_eq!(
            ListPodResourcesResponse::decode(decoded.encode_to_vec().as_slice()).unwrap(),
            decoded
        );
    }
}
