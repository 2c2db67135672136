//! `macvtap`: secnet's macvtap CNI plugin binary.

use cni_kit::SpecVersion;
use cni_kit::invocation::run_plugin;

const ABOUT: &str = "macvtap: secnet's macvtap CNI plugin, a drop-in replacement for kubevirt/macvtap-cni's.\nConfig: deviceID (from the macvtap device plugin) or master + mode (standalone), mtu, promiscMode, owner, group.";

fn main() {
    run_plugin(ABOUT, &SpecVersion::RESULT_CAPABLE, |inv| {
        // One thread: a CNI invocation is a handful of netlink round trips (and in
        // device mode one call to the kubelet, under a timeout).
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
        runtime.block_on(macvtap_cni::plugin::handle(inv))
    })
}
