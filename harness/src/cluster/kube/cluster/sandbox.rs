//! A pod whose sandbox the kubelet cannot create (`FailedCreatePodSandBox`: the CNI
//! ADD failed, e.g. multus refusing a missing NAD) never runs: the kubelet retries
//! forever. Its first such event ends the wait for it, with the CNI's own words.

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
            && let Some(message) = latest(list.items)
        {
            return message;
        }
        tokio::time::sleep(PACE).await;
    }
}

/// The newest event's message (the kubelet repeats it with a count).
fn latest(mut events: Vec<Event>) -> Option<String> {
    events.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
    events
        .pop()
        .map(|e| e.message.unwrap_or_else(|| FAILED_SANDBOX.to_string()))
}
