//! Device mode's check that the device belongs to this pod: the kubelet's
//! pod-resources API must list the deviceID under some container of the pod that
//! CNI_ARGS names. Without it, a deviceID written into a NetworkAttachmentDefinition
//! takes another pod's macvtap.
//!
//! The kubelet (not the tenant) answers, over a root-only socket the node's policy
//! names. A node without that socket (no kubelet, an old one, a plain runtime)
//! works as with upstream's plugin, unless the policy says `require_pod_resources`.

use std::time::Duration;

use cni_kit::policy::Policy;
use cni_kit::{CniError, ErrorCode};
use deviceplugin_api::podresources;

use crate::config::PodName;

/// How long ADD waits for the kubelet, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// What the kubelet says about `device_id`, or why it could not be asked.
enum Answer {
    Held,
    NotHeld,
    PodNotListed,
    Unavailable(String),
}

/// Refuses `device_id` unless the kubelet allocated it to `pod`.
pub async fn check(
    device_id: &str,
    pod: Option<&PodName>,
    policy: &Policy,
) -> Result<(), CniError> {
    let socket = &policy.macvtap.pod_resources_socket;
    let required = policy.macvtap.require_pod_resources;
    let Some(pod) = pod else {
        return if required {
            Err(policy.refuse(
                "device mode without K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS",
                "macvtap",
                "require_pod_resources",
            ))
        } else {
            Ok(())
        };
    };
    let answer = if socket.exists() {
        match podresources::list(socket, TIMEOUT).await {
            Ok(list) => match list.pod(&pod.namespace, &pod.name) {
                Some(p) if p.resource_holding(device_id).is_some() => Answer::Held,
                Some(_) => Answer::NotHeld,
                None => Answer::PodNotListed,
            },
            Err(e) => Answer::Unavailable(e.to_string()),
        }
    } else {
        Answer::Unavailable(format!("{} does not exist", socket.display()))
    };
    let refused = |why: String| {
        CniError::invalid_config(format!(
            "deviceID {device_id} is not allocated to pod {pod}: {why} (refused by the pod-resources check of device mode)"
        ))
        .with_details(
            "a pod gets a macvtap of the device plugin only through its own allocation: \
             request the NetworkAttachmentDefinition's resourceName in the pod and let multus \
             pass the deviceID, rather than writing a deviceID into the network configuration",
        )
    };
    match answer {
        Answer::Held => Ok(()),
        Answer::NotHeld => Err(refused(format!(
            "the kubelet ({}) lists that pod without this device",
            socket.display()
        ))),
        Answer::PodNotListed => Err(refused(format!(
            "the kubelet ({}) lists no devices for that pod",
            socket.display()
        ))),
        Answer::Unavailable(_) if !required => Ok(()),
        Answer::Unavailable(why) => Err(CniError::new(
            ErrorCode::TryAgainLater,
            format!(
                "cannot check that deviceID {device_id} is allocated to pod {pod}: {why}; \
                 [macvtap] require_pod_resources is set in node policy {}",
                policy.path.display()
            ),
        )
        .with_details(format!(
            "the kubelet serves its pod-resources API on {}; set [macvtap] pod_resources_socket \
             if it is elsewhere on this node",
            socket.display()
        ))),
    }
}
