#![no_main]
//! See TESTING.md; the invariants are in `roost::fuzzing::request_head`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| roost::fuzzing::request_head(data));
