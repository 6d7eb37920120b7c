#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| corestream::fuzzing::json_codec(data));
