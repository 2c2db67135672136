//! Test support for the harness, kept out of its `src/`: the fake Kubernetes API
//! servers its unit tests run the real kube-rs client against.
//!
//! - [`mock`]: a hand-written mocked API server, a `tower::Service` behind
//!   `kube::Client::new`, answering from a routing closure and recording requests.
//! - [`fake_http`]: the same on a real socket (hyper), for what needs a websocket
//!   (exec in the channel protocol, KubeVirt's console).
//!
//! - [`fake`]: a fake API server over [`mock`]: one store, server-side apply with
//!   field managers, a scheduler that counts devices, multus's network-status and a
//!   DaemonSet controller. What it must know of the harness (the kinds it serves,
//!   the run label, quantities, annotations) it is handed as [`fake::Tables`].

pub mod fake;
pub mod fake_http;
pub mod mock;
