//! The Thunderbird (ISPDB) importer: never panics, and the `[[provider]]`
//! block it prints passes `config::parse` on its own (its documented promise).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailconfd::import::{ImportError, MAX_INPUT_BYTES, import};

fuzz_target!(|data: &[u8]| {
    match import(data) {
        Ok(block) => {
            if let Err(e) = mailconfd::config::parse(&block) {
                panic!("imported block does not parse: {:?}\n{block}", e.lines());
            }
        }
        Err(ImportError::TooLarge { len }) => assert!(len > MAX_INPUT_BYTES),
        Err(ImportError::Invalid { line, .. }) => {
            assert!(line >= 1 && line <= data.iter().filter(|&&b| b == b'\n').count() + 1);
        }
    }
});
