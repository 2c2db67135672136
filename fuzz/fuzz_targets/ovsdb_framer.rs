//! What ovsdb-server sends, in chunks of any size: values or an error, never a
//! panic, and never more buffered than a message may hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ovs_cni::ovsdb::Framer;

fuzz_target!(|data: &[u8]| {
    let mut framer = Framer::default();
    // The first byte picks the chunk size, as reads from a socket would split it.
    let size = data.first().map(|b| usize::from(*b).max(1)).unwrap_or(1);
    for chunk in data.get(1..).unwrap_or_default().chunks(size) {
        framer.push(chunk);
        loop {
            match framer.next_value() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
