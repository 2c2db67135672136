//! Every device-plugin answer the harness's kubelet takes, checked against the
//! kubelet API (v1beta1) as the real kubelet and KubeVirt rely on it: one container
//! response per request, device specs with absolute paths and `rwm` permissions,
//! device IDs unique and health `Healthy`/`Unhealthy`; and a `/dev/tapN` handed out
//! for a macvtap is the tap of a macvtap of ifindex N in the node's namespace, by
//! device number (devtmpfs is one for all namespaces: the path alone proves nothing).

use std::path::Path;

use cni_kit::netns::NetNs;
use cni_kit::tapdev::{self, DevNum};
use deviceplugin_api::v1beta1::AllocateResponse;
use deviceplugin_api::{HEALTHY, UNHEALTHY};

/// What is wrong with `response` to an Allocate of `ids` (one container request).
pub fn allocate(ids: &[String], response: &AllocateResponse) -> Vec<String> {
    let mut out = Vec::new();
    if response.container_responses.len() != 1 {
        out.push(format!(
            "Allocate of {ids:?} (one container request) got {} container responses",
            response.container_responses.len()
        ));
    }
    for (c, container) in response.container_responses.iter().enumerate() {
        let mut seen = Vec::new();
        for (d, spec) in container.devices.iter().enumerate() {
            let at = format!("container_responses[{c}].devices[{d}]");
            for (field, path) in [
                ("host_path", &spec.host_path),
                ("container_path", &spec.container_path),
            ] {
                if !path.starts_with('/') {
                    out.push(format!(
                        "{at}.{field} must be an absolute path, got {path:?}"
                    ));
                }
            }
            if spec.permissions.is_empty() || !spec.permissions.chars().all(|p| "rwm".contains(p)) {
                out.push(format!(
                    "{at}.permissions must be letters of \"rwm\", got {:?}",
                    spec.permissions
                ));
            }
            if seen.contains(&&spec.container_path) {
                out.push(format!(
                    "{at}: container_path {:?} twice",
                    spec.container_path
                ));
            }
            seen.push(&spec.container_path);
        }
    }
    out
}

/// What is wrong with one ListAndWatch device list.
pub fn device_list<'a>(devices: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (id, health) in devices {
        if id.is_empty() {
            out.push("ListAndWatch listed a device with an empty ID".into());
        }
        if seen.contains(&id) {
            out.push(format!("ListAndWatch listed device {id:?} twice"));
        }
        seen.push(id);
        if health != HEALTHY && health != UNHEALTHY {
            out.push(format!(
                "device {id:?} has health {health:?}, the kubelet knows \"{HEALTHY}\" and \"{UNHEALTHY}\""
            ));
        }
    }
    out
}

/// The index N of a `/dev/tapN` path.
fn tap_index(path: &str) -> Option<u32> {
    path.strip_prefix("/dev/tap")?.parse().ok()
}

/// Checks every `/dev/tapN` in `response` against the macvtaps of the node namespace
/// `node` (`links`: `(name, ifindex)` of its macvtaps): a macvtap of ifindex N must
/// exist there and `/dev/tapN` must carry its device number.
pub fn taps(response: &AllocateResponse, node: &Path, links: &[(String, u32)]) -> Vec<String> {
    let mut out = Vec::new();
    let ns = match NetNs::open(node) {
        Ok(ns) => ns,
        Err(e) => {
            return vec![format!(
                "failed to open the node namespace {}: {e}",
                node.display()
            )];
        }
    };
    for spec in response.container_responses.iter().flat_map(|c| &c.devices) {
        let Some(index) = tap_index(&spec.host_path) else {
            continue;
        };
        let Some((link, _)) = links.iter().find(|(_, i)| *i == index) else {
            out.push(format!(
                "{} was handed out, but the node has no macvtap of ifindex {index}",
                spec.host_path
            ));
            continue;
        };
        let expected = match tapdev::link_devnum(Some(&ns), link, index) {
            Ok(d) => d,
            Err(e) => {
                out.push(e.to_string());
                continue;
            }
        };
        match rdev(&spec.host_path) {
            Some(found) if found == expected => {}
            found => out.push(format!(
                "{} is not macvtap {link}'s own tap: it is {}, the macvtap's is {expected}",
                spec.host_path,
                found.map_or("absent".to_string(), |f| f.to_string())
            )),
        }
    }
    out
}

/// Everything checked of one admission on a node whose namespace is `node`: the
/// resource's device list, the Allocate answer, and the taps it hands out.
pub async fn admitted(
    dm: Option<&super::DeviceManager>,
    resource: &str,
    admitted: &super::PodDevices,
    node: &Path,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(view) = dm.and_then(|dm| dm.snapshot().resources.get(resource).cloned()) {
        out.extend(device_list(
            view.devices.iter().map(|(id, h)| (id.as_str(), h.as_str())),
        ));
    }
    out.extend(allocate(&admitted.ids, &admitted.response));
    let handed_taps = admitted
        .response
        .container_responses
        .iter()
        .flat_map(|c| &c.devices)
        .any(|d| tap_index(&d.host_path).is_some());
    if handed_taps {
        match macvtaps(node).await {
            Ok(links) => out.extend(taps(&admitted.response, node, &links)),
            Err(e) => out.push(e),
        }
    }
    out
}

/// `(name, ifindex)` of the macvtaps in namespace `node`.
async fn macvtaps(node: &Path) -> Result<Vec<(String, u32)>, String> {
    let enter = crate::lab::enter::Enter::net(node).map_err(|e| e.to_string())?;
    let out = crate::lab::command::Cmd::new("ip")
        .args(["-j", "-d", "link", "show", "type", "macvtap"])
        .enter(&enter)
        .timeout(std::time::Duration::from_secs(10))
        .output_async()
        .await
        .map_err(|e| e.to_string())?;
    let links = crate::probe::ip::links(&out.stdout_text()).map_err(|e| e.to_string())?;
    Ok(links.into_iter().map(|l| (l.name, l.index)).collect())
}

fn rdev(path: &str) -> Option<DevNum> {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::symlink_metadata(path).ok()?.rdev();
    Some(DevNum {
        major: nix::sys::stat::major(rdev),
        minor: nix::sys::stat::minor(rdev),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use deviceplugin_api::v1beta1::{ContainerAllocateResponse, DeviceSpec};

    fn response(specs: &[(&str, &str, &str)]) -> AllocateResponse {
        AllocateResponse {
            container_responses: vec![ContainerAllocateResponse {
                devices: specs
                    .iter()
                    .map(|(host, container, permissions)| DeviceSpec {
                        host_path: host.to_string(),
                        container_path: container.to_string(),
                        permissions: permissions.to_string(),
                    })
                    .collect(),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_kubelet_shaped_answer_passes() {
        let ok = response(&[("/dev/tap42", "/dev/tap42", "rwm")]);
        assert!(allocate(&["a".into()], &ok).is_empty());
        assert!(device_list([("a", "Healthy"), ("b", "Unhealthy")]).is_empty());
    }

    #[test]
    fn broken_answers_are_named() {
        let bad = response(&[
            ("dev/tap1", "/dev/tap1", "rwx"),
            ("/dev/tap2", "/dev/tap1", "r"),
        ]);
        let v = allocate(&["a".into()], &bad);
        assert_eq!(v.len(), 3, "{v:?}");
        let none = AllocateResponse::default();
        assert!(allocate(&["a".into()], &none)[0].contains("0 container responses"));
        let v = device_list([("a", "healthy"), ("a", "Healthy"), ("", "Healthy")]);
        assert_eq!(v.len(), 3, "{v:?}");
    }

    #[test]
    fn a_tap_of_no_macvtap_of_the_node_is_named() {
        let r = response(&[("/dev/tap4000000", "/dev/tap4000000", "rwm")]);
        let v = taps(&r, Path::new("/proc/self/ns/net"), &[]);
        assert!(v[0].contains("no macvtap of ifindex 4000000"), "{v:?}");
    }
}
