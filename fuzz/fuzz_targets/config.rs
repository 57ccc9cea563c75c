#![no_main]
//! See TESTING.md; the invariants are in `roost::fuzzing::config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| roost::fuzzing::config(data));
