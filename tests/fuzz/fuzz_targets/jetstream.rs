//! Jetstream events, JSON and zstd-compressed: any frame is applied or refused with an error;
//! a frame never decompresses past the event size cap.
#![no_main]
use atmos_labeler::Labeler;
use atmos_labeler::jetstream::{apply, decompress};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static L: OnceLock<Labeler> = OnceLock::new();
    let l = L.get_or_init(|| atmos_fuzz::labeler(None));
    let Some((&mode, frame)) = data.split_first() else { return };
    let bytes = if mode & 1 == 1 {
        // A compressed frame: the fuzzer's bytes as they are, and the same JSON compressed.
        let _ = decompress(frame, &[]);
        match zstd::bulk::compress(frame, 1) {
            Ok(z) => decompress(&z, &[]).expect("own zstd frame"),
            Err(_) => return,
        }
    } else {
        frame.to_vec()
    };
    let _ = apply(l, &bytes);
});
