//! The DevicePlugin gRPC service of one resource.

use std::sync::Arc;
use std::time::Instant;

use deviceplugin_api::v1beta1::device_plugin_server::DevicePlugin;
use deviceplugin_api::v1beta1::{
    AllocateRequest, AllocateResponse, ContainerAllocateResponse,
    ContainerPreferredAllocationRequest, ContainerPreferredAllocationResponse, Device,
    DevicePluginOptions, DeviceSpec, Empty, ListAndWatchResponse, PreStartContainerRequest,
    PreStartContainerResponse, PreferredAllocationRequest, PreferredAllocationResponse,
};
use deviceplugin_api::{HEALTHY, UNHEALTHY};
use rtnetlink::Handle;
use tokio::sync::{Mutex, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::allocate::{AllocateError, TapIndex, create_tap, device_ids};
use crate::config::ResourceConfig;
use crate::links::LinkWatch;

/// A deliberate defect for the harness's own tests, never for a node: with
/// `never-free`, every device once allocated is reported Unhealthy from then on, as
/// a plugin that keeps its own books and never hears a pod is gone. Proves that a
/// scenario catches a device that does not come back.
pub const DEFECT_ENV: &str = "SECNET_DEVICEPLUGIN_DEFECT";

/// The resource prefix upstream uses.
pub const RESOURCE_PREFIX: &str = "macvtap.network.kubevirt.io";

/// One configured (or discovered) resource and what serving it needs.
#[derive(Debug)]
pub struct Resource {
    pub config: ResourceConfig,
    links: LinkWatch,
    netlink: Handle,
    tap_index: TapIndex,
    /// Allocations of one resource run one at a time: re-allocating an ID deletes
    /// and recreates its link, which must not interleave with itself.
    allocating: Mutex<()>,
    /// Devices held for ever under the `never-free` defect ([`DEFECT_ENV`]).
    held: watch::Sender<std::collections::BTreeSet<String>>,
    never_free: bool,
}

impl Resource {
    pub fn new(
        config: ResourceConfig,
        links: LinkWatch,
        netlink: Handle,
        tap_index: TapIndex,
    ) -> Resource {
        Resource {
            config,
            links,
            netlink,
            tap_index,
            allocating: Mutex::new(()),
            held: watch::Sender::new(Default::default()),
            never_free: std::env::var(DEFECT_ENV).as_deref() == Ok("never-free"),
        }
    }

    /// `macvtap.network.kubevirt.io/<name>`.
    pub fn resource_name(&self) -> String {
        format!("{RESOURCE_PREFIX}/{}", self.config.name)
    }

    /// The socket file name, relative to the device-plugin directory.
    pub fn endpoint(&self) -> String {
        format!("{RESOURCE_PREFIX}_{}", self.config.name)
    }

    fn healthy(&self, links: &crate::links::Links) -> bool {
        links.is_up(&self.config.lower_device)
    }

    fn devices(
        &self,
        healthy: bool,
        held: &std::collections::BTreeSet<String>,
    ) -> ListAndWatchResponse {
        ListAndWatchResponse {
            devices: device_ids(&self.config)
                .into_iter()
                .map(|id| Device {
                    health: if healthy && !held.contains(&id) {
                        HEALTHY
                    } else {
                        UNHEALTHY
                    }
                    .to_string(),
                    id,
                    topology: None,
                })
                .collect(),
        }
    }
}

/// The service as served by one gRPC server instance; `stop` ends its streams so
/// the server can shut down.
#[derive(Debug, Clone)]
pub struct DevicePluginService {
    resource: Arc<Resource>,
    stop: watch::Receiver<bool>,
    /// tonic runs handlers on its own tasks: log under the resource's span explicitly.
    span: tracing::Span,
}

impl DevicePluginService {
    pub fn new(resource: Arc<Resource>, stop: watch::Receiver<bool>) -> DevicePluginService {
        DevicePluginService {
            resource,
            stop,
            span: tracing::Span::current(),
        }
    }
}

fn status_of(err: &AllocateError) -> Status {
    let message = err.to_string();
    match err {
        AllocateError::UnknownDevice { .. } => Status::invalid_argument(message),
        AllocateError::LowerMissing { .. } => Status::failed_precondition(message),
        AllocateError::Netlink { .. }
        | AllocateError::Vanished { .. }
        | AllocateError::TapNode { .. } => Status::internal(message),
    }
}

#[tonic::async_trait]
impl DevicePlugin for DevicePluginService {
    type ListAndWatchStream = ReceiverStream<Result<ListAndWatchResponse, Status>>;

    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(DevicePluginOptions::default()))
    }

    /// The full device list now, and again each time the lower device's health
    /// changes: all Healthy while it exists and is up, all Unhealthy otherwise.
    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let resource = self.resource.clone();
        let mut links = resource.links.clone();
        let mut stop = self.stop.clone();
        let lower = resource.config.lower_device.clone();
        let mut held = resource.held.subscribe();
        tokio::spawn(
            async move {
                let mut sent: Option<(bool, std::collections::BTreeSet<String>)> = None;
                loop {
                    let healthy = resource.healthy(&links.borrow_and_update());
                    let held_now = held.borrow_and_update().clone();
                    if sent.as_ref().map(|(h, _)| *h) != Some(healthy) {
                        if healthy {
                            tracing::info!(lower = %lower, "lower device is up: devices Healthy");
                        } else {
                            tracing::warn!(lower = %lower, "lower device is down or missing: devices Unhealthy");
                        }
                    }
                    let now = (healthy, held_now);
                    if sent.as_ref() != Some(&now) {
                        if tx.send(Ok(resource.devices(now.0, &now.1))).await.is_err() {
                            return;
                        }
                        sent = Some(now);
                    }
                    tokio::select! {
                        changed = links.changed() => if changed.is_err() { return },
                        changed = held.changed() => if changed.is_err() { return },
                        _ = stop.wait_for(|s| *s) => return,
                        _ = tx.closed() => return,
                    }
                }
            }
            .instrument(self.span.clone()),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    /// Devices that must be included first, then the available ones in order,
    /// without duplicates, as many as asked (never fewer than must be included).
    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let container_responses = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(preferred)
            .collect();
        Ok(Response::new(PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let span = self.span.clone();
        self.allocate_all(request.into_inner())
            .instrument(span)
            .await
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

impl DevicePluginService {
    async fn allocate_all(
        &self,
        request: AllocateRequest,
    ) -> Result<Response<AllocateResponse>, Status> {
        let _serial = self.resource.allocating.lock().await;
        let mut container_responses = Vec::new();
        for container in request.container_requests {
            let mut devices = Vec::new();
            for id in &container.devices_ids {
                let start = Instant::now();
                let tap = create_tap(
                    &self.resource.netlink,
                    &self.resource.config,
                    id,
                    self.resource.tap_index,
                )
                .await
                .map_err(|e| {
                    tracing::error!(device = %id, "{e}");
                    status_of(&e)
                })?;
                tracing::info!(
                    device = %id,
                    link = %tap.link_name,
                    tap = %tap.dev_path.display(),
                    elapsed_us = start.elapsed().as_micros() as u64,
                    "allocated"
                );
                let path = tap.dev_path.display().to_string();
                devices.push(DeviceSpec {
                    container_path: path.clone(),
                    host_path: path,
                    permissions: "rw".to_string(),
                });
            }
            if self.resource.never_free {
                tracing::warn!(defect = DEFECT_ENV, devices = ?container.devices_ids, "never-free: held for ever");
                self.resource
                    .held
                    .send_modify(|h| h.extend(container.devices_ids.iter().cloned()));
            }
            container_responses.push(ContainerAllocateResponse {
                devices,
                ..Default::default()
            });
        }
        Ok(Response::new(AllocateResponse {
            container_responses,
        }))
    }
}

fn preferred(request: ContainerPreferredAllocationRequest) -> ContainerPreferredAllocationResponse {
    let size = usize::try_from(request.allocation_size).unwrap_or(0);
    let mut ids: Vec<String> = Vec::new();
    for id in request.must_include_device_i_ds {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let wanted = size.max(ids.len());
    for id in request.available_device_i_ds {
        if ids.len() >= wanted {
            break;
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ContainerPreferredAllocationResponse { device_i_ds: ids }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        available: &[&str],
        must: &[&str],
        size: i32,
    ) -> ContainerPreferredAllocationRequest {
        ContainerPreferredAllocationRequest {
            available_device_i_ds: available.iter().map(|s| s.to_string()).collect(),
            must_include_device_i_ds: must.iter().map(|s| s.to_string()).collect(),
            allocation_size: size,
        }
    }

    #[test]
    fn preferred_allocation_puts_required_first_and_fills_up() {
        let got = preferred(request(&["a0", "a1", "a2", "a3"], &["a2"], 3)).device_i_ds;
        assert_eq!(got, vec!["a2", "a0", "a1"]);
    }

    #[test]
    fn preferred_allocation_never_fails_on_odd_input() {
        assert!(preferred(request(&[], &[], 5)).device_i_ds.is_empty());
        assert!(preferred(request(&["a0"], &[], -1)).device_i_ds.is_empty());
        assert_eq!(
            preferred(request(&["a0"], &["a1", "a1"], 0)).device_i_ds,
            vec!["a1"]
        );
        assert_eq!(
            preferred(request(&["a0", "a0", "a1"], &[], 2)).device_i_ds,
            vec!["a0", "a1"]
        );
    }
}
