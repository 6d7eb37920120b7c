#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| corestream::fuzzing::cluster_bus(data));
