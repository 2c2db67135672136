//! The kubelet's device-manager checkpoint, `<dir>/kubelet_internal_checkpoint`,
//! in the format the real kubelet writes and multus reads to map a pod's resources
//! to device IDs.
//!
//! `Checksum` is the kubelet's FNV-32a over a Go-specific dump of the data; readers
//! such as multus ignore it, and so do we: we write 0 and never verify it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use deviceplugin_api::v1beta1::AllocateResponse;
use prost::Message;
use serde::{Deserialize, Serialize};

/// The checkpoint's file name inside the device-plugin directory.
pub const FILE_NAME: &str = "kubelet_internal_checkpoint";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("failed to read checkpoint {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to parse checkpoint {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("failed to write checkpoint {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to decode AllocResp of pod {pod_uid} container {container}: {reason}")]
    AllocResp {
        pod_uid: String,
        container: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(rename = "Data")]
    pub data: CheckpointData,
    #[serde(rename = "Checksum", default)]
    pub(crate) checksum: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointData {
    #[serde(
        rename = "PodDeviceEntries",
        default,
        deserialize_with = "null_as_default"
    )]
    pub pod_device_entries: Vec<PodDevicesEntry>,
    /// Resource name → device IDs the plugin advertised.
    #[serde(
        rename = "RegisteredDevices",
        default,
        deserialize_with = "null_as_default"
    )]
    pub registered_devices: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodDevicesEntry {
    #[serde(rename = "PodUID")]
    pub pod_uid: String,
    #[serde(rename = "ContainerName")]
    pub(crate) container_name: String,
    #[serde(rename = "ResourceName")]
    pub(crate) resource_name: String,
    /// NUMA node (as a string, `-1` when unknown) → device IDs.
    #[serde(rename = "DeviceIDs")]
    pub(crate) device_ids: BTreeMap<String, Vec<String>>,
    /// The plugin's AllocateResponse, protobuf-encoded and base64'd (Go `[]byte`).
    #[serde(rename = "AllocResp")]
    pub(crate) alloc_resp: String,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The NUMA key the kubelet uses for devices without topology.
pub const NO_NUMA: &str = "-1";

impl PodDevicesEntry {
    pub fn new(
        pod_uid: &str,
        container_name: &str,
        resource_name: &str,
        ids: &[String],
        response: &AllocateResponse,
    ) -> PodDevicesEntry {
        PodDevicesEntry {
            pod_uid: pod_uid.to_string(),
            container_name: container_name.to_string(),
            resource_name: resource_name.to_string(),
            device_ids: BTreeMap::from([(NO_NUMA.to_string(), ids.to_vec())]),
            alloc_resp: base64::engine::general_purpose::STANDARD.encode(response.encode_to_vec()),
        }
    }

    /// Every device ID of the entry, whatever NUMA node it is listed under.
    pub fn all_device_ids(&self) -> Vec<String> {
        self.device_ids.values().flatten().cloned().collect()
    }

    pub fn allocate_response(&self) -> Result<AllocateResponse, CheckpointError> {
        let fail = |reason: String| CheckpointError::AllocResp {
            pod_uid: self.pod_uid.clone(),
            container: self.container_name.clone(),
            reason,
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.alloc_resp)
            .map_err(|e| fail(e.to_string()))?;
        AllocateResponse::decode(bytes.as_slice()).map_err(|e| fail(e.to_string()))
    }
}

impl Checkpoint {
    pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let text = std::fs::read_to_string(path).map_err(|source| CheckpointError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| CheckpointError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes atomically (temp file + rename), so a reader never sees half a file.
    pub fn write(&self, path: &Path) -> Result<(), CheckpointError> {
        let write_err = |source| CheckpointError::Write {
            path: path.to_path_buf(),
            source,
        };
        let temp = path.with_extension("tmp");
        let text = serde_json::to_vec(self).expect("checkpoint serializes");
        std::fs::write(&temp, text).map_err(write_err)?;
        std::fs::rename(&temp, path).map_err(write_err)
    }

    /// Device IDs of `resource` held by `pod_uid`, in checkpoint order.
    pub fn pod_devices(&self, pod_uid: &str, resource: &str) -> Vec<String> {
        self.data
            .pod_device_entries
            .iter()
            .filter(|e| e.pod_uid == pod_uid && e.resource_name == resource)
            .flat_map(PodDevicesEntry::all_device_ids)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deviceplugin_api::v1beta1::{ContainerAllocateResponse, DeviceSpec};

    /// A checkpoint as the kubelet writes it (the shape the kubelet writes; AllocResp is
    /// the protobuf of one DeviceSpec /dev/tap12 rw).
    const KUBELET_WRITTEN: &str = r#"{"Data":{"PodDeviceEntries":[{"PodUID":"8b0c2d5e-1","ContainerName":"compute","ResourceName":"macvtap.network.kubevirt.io/dataplane","DeviceIDs":{"-1":["dataplaneMvp3"]},"AllocResp":"Ch4aHAoKL2Rldi90YXAxMhIKL2Rldi90YXAxMhoCcnc="}],"RegisteredDevices":{"macvtap.network.kubevirt.io/dataplane":["dataplaneMvp0","dataplaneMvp1"]}},"Checksum":1234}"#;

    #[test]
    fn reads_the_kubelet_format_and_decodes_alloc_resp() {
        let cp: Checkpoint = serde_json::from_str(KUBELET_WRITTEN).unwrap();
        assert_eq!(
            cp.pod_devices("8b0c2d5e-1", "macvtap.network.kubevirt.io/dataplane"),
            vec!["dataplaneMvp3"]
        );
        let resp = cp.data.pod_device_entries[0].allocate_response().unwrap();
        assert_eq!(
            resp.container_responses[0].devices[0].host_path,
            "/dev/tap12"
        );
        assert_eq!(cp.checksum, 1234);
    }

    #[test]
    fn entries_round_trip() {
        let response = AllocateResponse {
            container_responses: vec![ContainerAllocateResponse {
                devices: vec![DeviceSpec {
                    container_path: "/dev/tap12".into(),
                    host_path: "/dev/tap12".into(),
                    permissions: "rw".into(),
                }],
                ..Default::default()
            }],
        };
        let entry =
            PodDevicesEntry::new("uid", "compute", "r/x", &["xMvp0".to_string()], &response);
        assert_eq!(entry.allocate_response().unwrap(), response);
        let cp = Checkpoint {
            data: CheckpointData {
                pod_device_entries: vec![entry],
                registered_devices: BTreeMap::from([(
                    "r/x".to_string(),
                    vec!["xMvp0".to_string()],
                )]),
            },
            checksum: 0,
        };
        let text = serde_json::to_string(&cp).unwrap();
        assert!(text.contains(r#""DeviceIDs":{"-1":["xMvp0"]}"#), "{text}");
        assert_eq!(serde_json::from_str::<Checkpoint>(&text).unwrap(), cp);
        let empty: Checkpoint = serde_json::from_str(
            r#"{"Data":{"PodDeviceEntries":null,"RegisteredDevices":{}},"Checksum":0}"#,
        )
        .unwrap();
        assert!(empty.data.pod_device_entries.is_empty());
    }
}
