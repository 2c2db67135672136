//! A pod whose sandbox the kubelet cannot create (`FailedCreatePodSandBox`: the CNI
//! ADD failed, e.g. multus refusing a missing NAD) never runs: the kubelet retries
//! forever. Its first such event ends the wait for it, with the CNI's own words
//! (a timeout reaching a server: its second, the kubelet's retry may succeed).

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};

use super::KubeCluster;

/// The kubelet's event reason for a sandbox it failed to create.
pub const FAILED_SANDBOX: &str = "FailedCreatePodSandBox";

/// How often the pod's events are looked at while it is not running.
const PACE: Duration = Duration::from_millis(500);

/// Resolves with the message of the first `FailedCreatePodSandBox` event about pod
/// `name` (UID `uid`); never resolves while there is none (the caller bounds it).
pub(super) async fn first_failure(c: &KubeCluster, ns: &str, name: &str, uid: &str) -> String {
    let api: Api<Event> = Api::namespaced(c.client.clone(), ns);
    let mut fields = format!("involvedObject.name={name},reason={FAILED_SANDBOX}");
    if !uid.is_empty() {
        fields.push_str(&format!(",involvedObject.uid={uid}"));
    }
    let lp = ListParams::default().fields(&fields);
    loop {
        // A failed list is looked at again: the pod wait's own deadline bounds this.
        if let Ok(list) = api.list(&lp).await
            && let Some(message) = final_failure(list.items)
        {
            return message;
        }
        tokio::time::sleep(PACE).await;
    }
}

/// The failure that ends the wait: the newest one, once one is not transient or
/// the kubelet's retry failed too. A plugin that could not reach the API server
/// in time (multus under load) may well succeed on the kubelet's next try.
fn final_failure(mut events: Vec<Event>) -> Option<String> {
    events.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
    let attempts: i32 = events.iter().map(|e| e.count.unwrap_or(1).max(1)).sum();
    let message = |e: &Event| e.message.clone().unwrap_or_else(|| FAILED_SANDBOX.into());
    let lasting = events.iter().any(|e| !transient(&message(e)));
    if lasting || attempts >= 2 {
        return events.last().map(message);
    }
    None
}

/// Words of a failure to reach a server in time, not of a refusal. "rejected by
/// rate limit" is the kubelet's pod-resources API (10 calls at once at most):
/// multus asks it once per pod without retrying (k8snetworkplumbingwg/multus-cni
/// PR 1545), so 50 pods at once on a node fail some first tries; seen on the bare
/// cluster.
fn transient(message: &str) -> bool {
    const WORDS: [&str; 6] = [
        "deadline exceeded",
        "timeout",
        "connection refused",
        "too many requests",
        "try again",
        "rejected by rate limit",
    ];
    let m = message.to_ascii_lowercase();
    WORDS.iter().any(|w| m.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(message: &str, count: i32) -> Event {
        Event {
            message: Some(message.into()),
            count: Some(count),
            ..Event::default()
        }
    }

    #[test]
    fn a_refusal_ends_the_wait_at_once_a_timeout_after_the_kubelets_retry() {
        let refused = "plugin type=\"multus\" failed (add): cannot find a network-attachment-definition (dataplan)";
        assert_eq!(
            final_failure(vec![event(refused, 1)]).as_deref(),
            Some(refused)
        );
        let slow = "Multus: error waiting for pod: Get \"https://api/pods/p31\": context deadline exceeded";
        assert_eq!(final_failure(vec![event(slow, 1)]), None);
        assert_eq!(final_failure(vec![event(slow, 2)]).as_deref(), Some(slow));
        assert_eq!(
            final_failure(vec![event(slow, 1), event(slow, 1)]).as_deref(),
            Some(slow)
        );
        assert_eq!(final_failure(vec![]), None);
        let limited = "Multus: [ns/p13/uid]: error loading k8s delegates k8s args: … getPodResources: failed to list pod resources, … rpc error: code = ResourceExhausted desc = rejected by rate limit";
        assert_eq!(final_failure(vec![event(limited, 1)]), None);
        assert_eq!(
            final_failure(vec![event(limited, 2)]).as_deref(),
            Some(limited)
        );
    }
}
