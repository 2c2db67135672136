//! `macvtap`: secnet's macvtap CNI plugin binary.

use cni_kit::SpecVersion;
use cni_kit::invocation::run_plugin;

fn main() {
    run_plugin(&SpecVersion::RESULT_CAPABLE, |inv| {
        // One thread: a CNI invocation is a handful of netlink round trips.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
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
