//! The bounded line reader (ExaBGP's stdin, BIRD's socket) and ExaBGP's
//! ack parser fed arbitrary bytes in arbitrary chunks: no panic, no line
//! past the limit, and the lines do not depend on how the bytes were split.
#![no_main]

use anycastd::backend::exabgp::protocol::parse_ack;
use anycastd::backend::lines::{InputLine, LineSplitter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&head, bytes)) = data.split_first() else {
        return;
    };
    let max = usize::from(head % 64);
    // Chunked as the first byte says, and all at once.
    let mut chunked = Vec::new();
    let mut splitter = LineSplitter::new(max);
    let step = usize::from(head / 64) + 1;
    for chunk in bytes.chunks(step) {
        splitter.push(chunk, &mut chunked);
    }
    let mut whole = Vec::new();
    LineSplitter::new(max).push(bytes, &mut whole);
    assert_eq!(chunked, whole);
    assert_eq!(whole.len(), bytes.iter().filter(|b| **b == b'\n').count());
    for line in &whole {
        if let InputLine::Text(text) = line {
            assert!(!text.contains('\n'));
            let _ = parse_ack(text);
        }
    }
});
