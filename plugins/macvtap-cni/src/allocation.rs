//! Device mode's check that the device belongs to this pod: the kubelet's
//! pod-resources API must list the deviceID under some container of the pod that
//! CNI_ARGS names. Without it, a deviceID written into a NetworkAttachmentDefinition
//! takes another pod's macvtap.
//!
//! The kubelet (not the tenant) answers, over a root-only socket the node's policy
//! names. A node without that socket (no kubelet, an old one, a plain runtime)
//! works as with upstream's plugin, unless the policy says `require_pod_resources`.
//! Where the socket exists the check fails closed: an error, a late answer or a
//! rate limit that does not clear is a refusal, never a pass. The real kubelet
//! limits this API (100 calls a second, bursts of 10) and answers
//! `ResourceExhausted "rejected by rate limit"`: that is retried within the deadline.

use std::time::{Duration, Instant};

use cni_kit::policy::Policy;
use cni_kit::{CniError, ErrorCode};
use deviceplugin_api::podresources;

use crate::config::PodName;

/// How long one call may take, connection included: a slower kubelet is refused.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// How long ADD keeps retrying a rate-limited call.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// The first wait after a rate-limited call; doubled each time, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// What the kubelet says about `device_id`, or why it could not be asked.
enum Answer {
    Held,
    NotHeld,
    PodNotListed,
    /// No socket: no kubelet on this node to ask.
    Unavailable(String),
    /// The socket is there but gave no usable answer.
    Failed(String),
}

/// `List`, retried while the kubelet answers `ResourceExhausted` (its rate limit)
/// and `DEADLINE` allows; any other failure, or a call slower than `TIMEOUT`, ends it.
async fn list_retrying(
    socket: &std::path::Path,
) -> Result<podresources::v1::ListPodResourcesResponse, String> {
    let deadline = Instant::now() + DEADLINE;
    let mut backoff = FIRST_BACKOFF;
    let mut limited = 0u32;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match podresources::list(socket, TIMEOUT.min(left)).await {
            Ok(list) => return Ok(list),
            Err(e) if e.is_rate_limited() && Instant::now() + backoff < deadline => {
                limited += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) if limited > 0 => {
                return Err(format!(
                    "{e} (after {limited} rate-limited calls within {DEADLINE:?})"
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
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
    // Only a socket that is not there at all means "no kubelet to ask".
    let present = std::fs::symlink_metadata(socket).is_ok();
    let answer = if present {
        match list_retrying(socket).await {
            Ok(list) => match list.pod(&pod.namespace, &pod.name) {
                Some(p) if p.resource_holding(device_id).is_some() => Answer::Held,
                Some(_) => Answer::NotHeld,
                None => Answer::PodNotListed,
            },
            Err(why) => Answer::Failed(why),
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
        Answer::Failed(why) => Err(CniError::new(
            ErrorCode::TryAgainLater,
            format!(
                "cannot check that deviceID {device_id} is allocated to pod {pod}: {why} (refused by the pod-resources check of device mode, which fails closed where the kubelet's socket exists)"
            ),
        )
        .with_details(format!(
            "the kubelet serves its pod-resources API on {}; ADD is refused until it answers",
            socket.display()
        ))),
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
