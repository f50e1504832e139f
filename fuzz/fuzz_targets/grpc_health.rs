//! The grpc_health response decoder fed arbitrary bytes: it must never
//! panic, and a message that decodes must decode the same way unframed.
#![no_main]

use anycastd::checks::grpc::codec::{decode_response, decode_response_message, message_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = message_text(data);
    if let Ok(status) = decode_response(data) {
        assert_eq!(decode_response_message(&data[5..]), Ok(status));
    }
    // The same bytes as a well-framed message body.
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(data.len() as u32).to_be_bytes());
    framed.extend_from_slice(data);
    assert_eq!(decode_response(&framed), decode_response_message(data));
});
