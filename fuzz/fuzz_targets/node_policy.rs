//! The node policy file: any text gives a policy or an error naming the file,
//! never a panic.
#![no_main]

use cni_kit::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = Policy::parse(&text, std::path::Path::new("/etc/secnet/plugins.conf")) {
        assert!(e.contains("/etc/secnet/plugins.conf"));
    }
});
