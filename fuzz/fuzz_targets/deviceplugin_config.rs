//! The device plugin's DP_MACVTAP_CONF parser: errors, never panics, and every
//! syntax error points inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = macvtap_deviceplugin::config::parse(text, "DP_MACVTAP_CONF") {
            assert!(!e.to_string().is_empty());
        }
    }
});
