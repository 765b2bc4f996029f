//! Benchmark guest: runs stages of the grayscale function on stdin, so the
//! benchmark can tell decode time from encode time inside wasm.
//!
//! `stages decode` decodes to gray; `stages encode FILTER COMPRESSION`
//! decodes and encodes with that PNG filter (none, sub, up, avg, paeth,
//! adaptive) and compression (fast, default, best).
use std::io::{Read, Write};

use grayscale::{CompressionType, FilterType};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .expect("read stdin");
    let limits = grayscale::Limits::default();
    let format = grayscale::detect_format(&input).expect("format");
    let gray = grayscale::decode_gray(&input, format, &limits).expect("decode");
    if args.first().map(String::as_str) == Some("encode") {
        let filter = match args.get(1).map(String::as_str) {
            Some("none") => FilterType::NoFilter,
            Some("sub") => FilterType::Sub,
            Some("up") => FilterType::Up,
            Some("avg") => FilterType::Avg,
            Some("paeth") => FilterType::Paeth,
            _ => FilterType::Adaptive,
        };
        let compression = match args.get(2).map(String::as_str) {
            Some("default") => CompressionType::Default,
            Some("best") => CompressionType::Best,
            _ => CompressionType::Fast,
        };
        let png = grayscale::encode_png_with(&gray, compression, filter).expect("encode");
        std::io::stdout().write_all(&png).expect("write");
    }
}
