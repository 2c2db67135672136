//! Pod admission as the kubelet's device manager does it: pick free healthy devices
//! (asking the plugin's GetPreferredAllocation when it offers it), call Allocate,
//! remember them per pod and container, write the checkpoint multus reads, and
//! give them back when the pod goes.

use deviceplugin_api::HEALTHY;
use deviceplugin_api::v1beta1::{AllocateResponse, ContainerPreferredAllocationRequest};

use super::checkpoint::{self, Checkpoint, CheckpointData, PodDevicesEntry};
use super::{DeviceManager, KubeletError};

/// The pod being admitted: the checkpoint names it by UID, the pod-resources API
/// by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodId {
    pub(crate) uid: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl PodId {
    pub fn new(namespace: &str, name: &str, uid: &str) -> PodId {
        PodId {
            uid: uid.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// Devices given to one container of a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodDevices {
    pub(crate) pod: PodId,
    pub(crate) container: String,
    pub(crate) resource: String,
    pub ids: Vec<String>,
    pub(crate) response: AllocateResponse,
}

impl DeviceManager {
    /// Allocates `count` devices of `resource` to a pod's container. Fails with
    /// `Insufficient <resource>` (the pod event the scheduler/kubelet shows) when
    /// fewer free healthy devices are left.
    pub async fn admit(
        &self,
        pod: &PodId,
        container: &str,
        resource: &str,
        count: usize,
    ) -> Result<PodDevices, KubeletError> {
        // Reserve under the lock so that concurrent admissions cannot pick the same IDs.
        let (free, preferred_available) = self.shared.update(|s| {
            let view = s.snapshot.resources.get(resource);
            let free: Vec<String> = view
                .map(|v| {
                    v.devices
                        .iter()
                        .filter(|(id, health)| *health == HEALTHY && !s.in_use(resource, id))
                        .map(|(id, _)| id.clone())
                        .collect()
                })
                .unwrap_or_default();
            let preferred = view
                .and_then(|v| v.options)
                .is_some_and(|o| o.get_preferred_allocation_available);
            (free, preferred)
        });
        if free.len() < count {
            return Err(KubeletError::Insufficient {
                resource: resource.to_string(),
                wanted: count,
                free: free.len(),
            });
        }
        let mut ids: Vec<String> = free.iter().take(count).cloned().collect();
        if preferred_available {
            let request = ContainerPreferredAllocationRequest {
                available_device_i_ds: free.clone(),
                must_include_device_i_ds: Vec::new(),
                allocation_size: count as i32,
            };
            if let Ok(answer) = self.preferred_allocation(resource, request).await
                && let Some(first) = answer.container_responses.first()
                && first.device_i_ds.len() == count
                && first.device_i_ds.iter().all(|id| free.contains(id))
            {
                ids = first.device_i_ds.clone();
            }
        }
        let reserved = self.shared.update(|s| {
            if ids.iter().any(|id| s.in_use(resource, id)) {
                return false;
            }
            s.pods.push(PodDevices {
                pod: pod.clone(),
                container: container.to_string(),
                resource: resource.to_string(),
                ids: ids.clone(),
                response: AllocateResponse::default(),
            });
            true
        });
        if !reserved {
            return Err(KubeletError::Insufficient {
                resource: resource.to_string(),
                wanted: count,
                free: 0,
            });
        }
        let is_this = |p: &PodDevices| {
            p.pod.uid == pod.uid && p.container == container && p.resource == resource
        };
        match self.allocate(resource, &ids).await {
            Ok(response) => {
                let devices = self.shared.update(|s| {
                    let entry = s
                        .pods
                        .iter_mut()
                        .find(|p| is_this(p))
                        .expect("reserved entry");
                    entry.response = response;
                    entry.clone()
                });
                self.write_checkpoint()?;
                Ok(devices)
            }
            Err(e) => {
                self.shared.update(|s| s.pods.retain(|p| !is_this(p)));
                Err(e)
            }
        }
    }

    /// Gives back every device of the pod and rewrites the checkpoint.
    pub fn release(&self, pod_uid: &str) -> Result<Vec<PodDevices>, KubeletError> {
        let released = self.shared.update(|s| {
            let (gone, kept) = std::mem::take(&mut s.pods)
                .into_iter()
                .partition(|p| p.pod.uid == pod_uid);
            s.pods = kept;
            gone
        });
        self.write_checkpoint()?;
        Ok(released)
    }

    /// Gives back the devices of one container of the pod (a hot-unplugged
    /// network's allocation) and rewrites the checkpoint.
    pub fn release_container(
        &self,
        pod_uid: &str,
        container: &str,
    ) -> Result<Vec<PodDevices>, KubeletError> {
        let released = self.shared.update(|s| {
            let (gone, kept) = std::mem::take(&mut s.pods)
                .into_iter()
                .partition(|p| p.pod.uid == pod_uid && p.container == container);
            s.pods = kept;
            gone
        });
        self.write_checkpoint()?;
        Ok(released)
    }

    /// Devices held by pods right now.
    pub fn pod_devices(&self) -> Vec<PodDevices> {
        self.shared.read(|s| s.pods.clone())
    }

    /// The checkpoint as the real kubelet would write it now.
    pub fn checkpoint(&self) -> Checkpoint {
        self.shared.read(|s| Checkpoint {
            data: CheckpointData {
                pod_device_entries: s
                    .pods
                    .iter()
                    .map(|p| {
                        PodDevicesEntry::new(
                            &p.pod.uid,
                            &p.container,
                            &p.resource,
                            &p.ids,
                            &p.response,
                        )
                    })
                    .collect(),
                registered_devices: s
                    .snapshot
                    .resources
                    .iter()
                    .map(|(name, view)| (name.clone(), view.devices.keys().cloned().collect()))
                    .collect(),
            },
            checksum: 0,
        })
    }

    /// Writes `<dir>/kubelet_internal_checkpoint`.
    pub fn write_checkpoint(&self) -> Result<(), KubeletError> {
        self.checkpoint()
            .write(&self.dir.join(checkpoint::FILE_NAME))
            .map_err(KubeletError::Checkpoint)
    }
}
