#![no_main]
//! See TESTING.md; the invariants are in `roost::fuzzing::response_head`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| roost::fuzzing::response_head(data));
