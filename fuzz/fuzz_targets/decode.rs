//! The BGP decoder fed arbitrary bytes: framing and decoding must never
//! panic, and whatever decodes must say so consistently.
#![no_main]

use anycastd::backend::native::packet::{Frame, decode, frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let four_octet_as = flags & 1 == 1;
    let _ = decode(bytes, four_octet_as);
    // Walk the input as a stream, as the session's reader does.
    let mut rest = bytes;
    while let Ok(Frame::Complete(len)) = frame(rest) {
        assert!(len >= 19 && len <= rest.len());
        let _ = decode(&rest[..len], four_octet_as);
        rest = &rest[len..];
    }
});
