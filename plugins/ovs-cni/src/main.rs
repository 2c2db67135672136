//! `ovs`: secnet's OVS CNI plugin binary.

use cni_kit::SpecVersion;
use cni_kit::invocation::run_plugin;

const ABOUT: &str = "ovs: secnet's OVS CNI plugin, a drop-in replacement for ovs-cni's common configuration.\nConfig: bridge, vlan, trunk, mtu, socket_file, ipam; it talks OVSDB to ovsdb-server directly.";

fn main() {
    run_plugin(ABOUT, &SpecVersion::RESULT_CAPABLE, |inv| {
        // One thread: an invocation is one OVSDB transaction and a few netlink calls.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| {
                cni_kit::CniError::new(
                    cni_kit::ErrorCode::Io,
                    format!("failed to start the runtime: {e}"),
                )
            })?;
        runtime.block_on(ovs_cni::plugin::handle(inv))
    })
}
