//! Test support for the harness, kept out of its `src/`: the fake Kubernetes API
//! servers its unit tests run the real kube-rs client against.
//!
//! - [`mock`]: a hand-written mocked API server, a `tower::Service` behind
//!   `kube::Client::new`, answering from a routing closure and recording requests.
//! - [`fake_http`]: the same on a real socket (hyper), for what needs a websocket
//!   (exec in the channel protocol, KubeVirt's console).
//!
//! The fake scheduler and server-side apply that sit behind them
//! (`cluster/kube/fake*` in the harness) use the harness's own tables, so they stay
//! there, under `#[cfg(test)]`.

pub mod fake_http;
pub mod mock;
