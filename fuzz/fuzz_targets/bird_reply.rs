//! BIRD's control-socket replies fed arbitrary text: parsing and assembling
//! must never panic, a reply keeps a bounded number of lines, and the
//! verdict on `configure` is always one of the two answers.
#![no_main]

use anycastd::backend::bird::control::{
    ConfigureVerdict, MAX_REPLY_LINES, ReplyAssembler, judge_configure, parse_line,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut assembler = ReplyAssembler::default();
    for line in text.split('\n') {
        let _ = parse_line(line);
        match assembler.feed(line) {
            Ok(Some(reply)) => {
                assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_REPLY_LINES);
                match judge_configure(&reply) {
                    ConfigureVerdict::Accepted(_) => assert!((3..=5).contains(&reply.code)),
                    ConfigureVerdict::Refused { code, .. } => assert_eq!(code, reply.code),
                }
                assembler = ReplyAssembler::default();
            }
            Ok(None) => {}
            Err(_) => assembler = ReplyAssembler::default(),
        }
    }
});
