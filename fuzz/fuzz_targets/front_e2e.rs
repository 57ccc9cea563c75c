#![no_main]
//! See TESTING.md; the invariants are in `roost::fuzzing::front_e2e`.

use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| roost::fuzzing::front_e2e(runtime(), data));
