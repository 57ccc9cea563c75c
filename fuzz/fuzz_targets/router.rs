#![no_main]
//! See TESTING.md; the invariants are in `roost::fuzzing::router`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| roost::fuzzing::router(data));
