//! The `:authority` rewriter sits between a client's socket and h2: any byte stream,
//! cut into reads of any size, gives the same output and the same verdict as the
//! stream in one read, and never a panic.
#![no_main]

use deviceplugin_api::authority::Rewriter;
use libfuzzer_sys::fuzz_target;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    // Most inputs start with the preface, so that the fuzzer spends its time on
    // frames; the low bit of the first byte turns it off.
    let mut stream = Vec::with_capacity(PREFACE.len() + rest.len());
    if control & 1 == 0 {
        stream.extend_from_slice(PREFACE);
    }
    stream.extend_from_slice(rest);
    let chunk = usize::from(control >> 1).max(1);

    let mut whole_out = Vec::new();
    let whole = Rewriter::default().push(&stream, &mut whole_out);

    let mut rewriter = Rewriter::default();
    let mut chunked_out = Vec::new();
    let mut chunked = Ok(());
    for piece in stream.chunks(chunk) {
        chunked = rewriter.push(piece, &mut chunked_out);
        if chunked.is_err() {
            break;
        }
    }
    assert_eq!(whole.is_ok(), chunked.is_ok(), "{whole:?} vs {chunked:?}");
    if whole.is_ok() {
        assert_eq!(whole_out, chunked_out);
    }
});
