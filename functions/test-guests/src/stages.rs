//! Benchmark guest: runs one stage of the grayscale function on stdin, so the
//! benchmark can tell decode time from encode time inside wasm.
//! `stages decode` decodes to gray; `stages full` decodes and encodes.
use std::io::{Read, Write};

fn main() {
    let stage = std::env::args().nth(1).unwrap_or_default();
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).expect("read stdin");
    let limits = grayscale::Limits::default();
    let format = grayscale::detect_format(&input).expect("format");
    let gray = grayscale::decode_gray(&input, format, &limits).expect("decode");
    if stage == "full" {
        let png = grayscale::encode_png(&gray).expect("encode");
        std::io::stdout().write_all(&png).expect("write");
    }
}
