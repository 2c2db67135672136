//! The OVS CNI's view of its input: the stdin config and CNI_ARGS. Any bytes must
//! give a config or a CNI error, never a panic.
#![no_main]

use cni_kit::{Command, Invocation, SpecVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first line is CNI_ARGS, the rest the config.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(0);
    let inv = Invocation {
        command: Command::Add,
        container_id: "c".into(),
        netns: Some("/run/netns/x".into()),
        ifname: "net1".into(),
        args: String::from_utf8_lossy(&data[..split]).into_owned(),
        path: String::new(),
        config: data[split..].to_vec(),
        version: SpecVersion::V1_0_0,
    };
    if let Err(e) = ovs_cni::config::NetConf::parse(&inv) {
        assert!(!e.msg.is_empty());
    }
});
