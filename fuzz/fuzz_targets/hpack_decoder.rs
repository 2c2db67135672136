//! The HPACK decoder reads header blocks straight from a client's socket (the
//! `:authority` fix decodes every HEADERS block): any bytes give fields or an error,
//! never a panic; the dynamic table state carries from block to block as on a
//! connection; and what it decodes re-encodes (as the rewriter does) to the same fields.
#![no_main]

use deviceplugin_api::hpack::{Decoder, encode_literal, huffman_decode, huffman_encode};
use libfuzzer_sys::fuzz_target;

/// The rewriter's limits: the protocol's default table, a 256 KiB header list.
const TABLE: usize = 4096;
const MAX_LIST: usize = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new(TABLE, MAX_LIST);
    // Blocks are separated by 0xff 0x00 (rare in HPACK), so that one input plays a
    // connection of several blocks sharing the dynamic table.
    for block in data.split(|b| *b == 0xff).map(|b| b.strip_prefix(&[0]).unwrap_or(b)) {
        let Ok(fields) = decoder.decode(block) else {
            continue;
        };
        let mut encoded = Vec::new();
        for f in &fields {
            encode_literal(f, &mut encoded);
        }
        let again = Decoder::new(TABLE, MAX_LIST)
            .decode(&encoded)
            .expect("literals the encoder wrote decode");
        assert_eq!(again, fields);
    }
    // Huffman: what is encoded decodes to itself.
    assert_eq!(huffman_decode(&huffman_encode(data)).as_deref(), Ok(data));
    let _ = huffman_decode(data);
});
