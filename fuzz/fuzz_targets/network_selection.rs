//! The multus network-selection annotation parser (both forms).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match secnet::multus::parse_networks(text, "default") {
            Ok(selections) => {
                for s in selections {
                    assert!(!s.name.is_empty());
                }
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
});
