//! The OVS CNI's view of its input: the stdin config and CNI_ARGS. Any bytes must
//! give a config or a CNI error, never a panic.
#![no_main]

use cni_kit::Invocation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first line is CNI_ARGS, the rest the config.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(0);
    let args = String::from_utf8_lossy(&data[..split]).into_owned();
    let inv = Invocation::add_for_test(&data[split..], &args);
    if let Err(e) = ovs_cni::config::NetConf::parse(&inv) {
        assert!(!e.msg.is_empty());
    }
});
