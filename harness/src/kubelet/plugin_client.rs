//! The kubelet's connection to one registered plugin: its gRPC client and the
//! ListAndWatch follower that keeps the device list current.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deviceplugin_api::UNHEALTHY;
use deviceplugin_api::uds;
use deviceplugin_api::v1beta1::device_plugin_client::DevicePluginClient;
use deviceplugin_api::v1beta1::{
    AllocateRequest, AllocateResponse, ContainerAllocateRequest,
    ContainerPreferredAllocationRequest, DevicePluginOptions, Empty, PreStartContainerRequest,
    PreferredAllocationRequest, PreferredAllocationResponse,
};
use tonic::transport::Channel;

use super::{KubeletError, Shared};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A gRPC client of one plugin. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PluginClient {
    client: DevicePluginClient<Channel>,
}

impl PluginClient {
    fn rpc_error(resource: &str, call: &str, status: tonic::Status) -> KubeletError {
        KubeletError::Rpc {
            resource: resource.to_string(),
            call: call.to_string(),
            status,
        }
    }

    async fn call<T>(
        resource: &str,
        call: &str,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, KubeletError> {
        match tokio::time::timeout(CALL_TIMEOUT, fut).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(Self::rpc_error(resource, call, status)),
            Err(_) => Err(Self::rpc_error(
                resource,
                call,
                tonic::Status::deadline_exceeded(format!("no answer within {CALL_TIMEOUT:?}")),
            )),
        }
    }

    pub async fn allocate(
        &self,
        resource: &str,
        ids: &[String],
    ) -> Result<AllocateResponse, KubeletError> {
        let request = AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: ids.to_vec(),
            }],
        };
        Self::call(resource, "Allocate", self.client.clone().allocate(request)).await
    }

    pub async fn preferred_allocation(
        &self,
        resource: &str,
        request: ContainerPreferredAllocationRequest,
    ) -> Result<PreferredAllocationResponse, KubeletError> {
        let request = PreferredAllocationRequest {
            container_requests: vec![request],
        };
        Self::call(
            resource,
            "GetPreferredAllocation",
            self.client.clone().get_preferred_allocation(request),
        )
        .await
    }

    pub async fn pre_start_container(
        &self,
        resource: &str,
        ids: &[String],
    ) -> Result<(), KubeletError> {
        let request = PreStartContainerRequest {
            devices_ids: ids.to_vec(),
        };
        Self::call(
            resource,
            "PreStartContainer",
            self.client.clone().pre_start_container(request),
        )
        .await
        .map(|_| ())
    }

    pub async fn options(&self, resource: &str) -> Result<DevicePluginOptions, KubeletError> {
        Self::call(
            resource,
            "GetDevicePluginOptions",
            self.client.clone().get_device_plugin_options(Empty {}),
        )
        .await
    }
}

/// Connects to a freshly registered plugin and follows its ListAndWatch stream
/// until it ends or a newer registration of the same resource replaces it. When the
/// stream ends the devices turn Unhealthy, as the kubelet marks them.
pub async fn follow(shared: Arc<Shared>, socket: PathBuf, resource: String, generation: u64) {
    let current = |s: &super::State| s.generations.get(&resource) == Some(&generation);
    let fail = |error: String| {
        // Every teardown ends the streams: shown with -v, kept for diagnostics in
        // the resource's last_error.
        tracing::info!(resource = %resource, "{error}");
        shared.update(|s| {
            if current(s) {
                if let Some(view) = s.snapshot.resources.get_mut(&resource) {
                    view.last_error = Some(error);
                    view.streaming = false;
                    for health in view.devices.values_mut() {
                        *health = UNHEALTHY.to_string();
                    }
                }
                s.clients.remove(&resource);
            }
        });
    };
    let channel = match uds::connect(&socket, CONNECT_TIMEOUT).await {
        Ok(channel) => channel,
        Err(e) => return fail(e.to_string()),
    };
    let client = PluginClient {
        client: DevicePluginClient::new(channel),
    };
    let options = match client.options(&resource).await {
        Ok(options) => options,
        Err(e) => return fail(e.to_string()),
    };
    let mut stream = match client.client.clone().list_and_watch(Empty {}).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            return fail(format!(
                "failed to call ListAndWatch on resource {resource}: {status}"
            ));
        }
    };
    let still_current = shared.update(|s| {
        if !current(s) {
            return false;
        }
        s.clients.insert(resource.clone(), client.clone());
        if let Some(view) = s.snapshot.resources.get_mut(&resource) {
            view.options = Some(options);
            view.streaming = true;
            view.last_error = None;
        }
        true
    });
    if !still_current {
        return;
    }
    loop {
        match stream.message().await {
            Ok(Some(message)) => {
                let still_current = shared.update(|s| {
                    if !current(s) {
                        return false;
                    }
                    if let Some(view) = s.snapshot.resources.get_mut(&resource) {
                        view.devices = message
                            .devices
                            .into_iter()
                            .map(|d| (d.id, d.health))
                            .collect();
                        view.updates += 1;
                        view.updated_at = Some(Instant::now());
                    }
                    true
                });
                if !still_current {
                    return;
                }
            }
            Ok(None) => return fail(format!("ListAndWatch stream of resource {resource} ended")),
            Err(status) => {
                return fail(format!(
                    "ListAndWatch stream of resource {resource} failed: {status}"
                ));
            }
        }
    }
}
