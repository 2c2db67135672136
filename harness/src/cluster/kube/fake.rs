//! The fake API server of the tests (`secnet_testkit::fake`: its store, scheduler,
//! server-side apply and DaemonSet controller) handed the harness's own tables:
//! the kinds `apply` knows, the run label, quantities as the harness reads them
//! and multus's annotations.

use std::sync::{Arc, Mutex};

pub(crate) use secnet_testkit::fake::*;

use super::mock::MockApi;

/// What the fake serves and reads, from the harness's own tables.
pub(crate) fn tables() -> Tables {
    Tables {
        kinds: super::apply::known_placements()
            .map(|p| {
                let r = &p.resource;
                (
                    format!("{}/{}", r.api_version, r.plural),
                    r.kind.clone(),
                    p.namespaced,
                )
            })
            .collect(),
        run_label: super::RUN_LABEL,
        parse_quantity: super::cluster::parse_quantity,
        networks_annotation: crate::multus::NETWORKS_ANNOTATION,
        network_status_annotation: crate::multus::NETWORK_STATUS_ANNOTATION,
    }
}

/// The fake with the user's own device plugin installed (see
/// `secnet_testkit::fake::fake_api_server`).
pub(crate) fn fake_api_server(count_allocations: bool) -> (MockApi, Arc<Mutex<FakeState>>) {
    secnet_testkit::fake::fake_api_server(tables(), count_allocations)
}

/// The fake with nothing installed.
pub(crate) fn fake_api_server_bare(count_allocations: bool) -> (MockApi, Arc<Mutex<FakeState>>) {
    secnet_testkit::fake::fake_api_server_bare(tables(), count_allocations)
}
