//! Hostile inputs for the image services, generated from a seed so a run
//! can be repeated exactly: mutated JPEG, PNG, GIF, WebP and BMP files (bit
//! flips, overwritten runs, truncation, spliced headers, duplicated
//! chunks, patched header fields), decompression bombs, and non-images.
//! Each comes with a content type that is right, wrong, missing or doubled.

use std::io::Cursor;

use image::ImageEncoder;

/// A small deterministic generator (xorshift64*), so runs repeat exactly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One input: what it is, its body and the content types to send with it
/// (none, one, or two conflicting ones).
pub struct Input {
    pub kind: String,
    pub body: Vec<u8>,
    pub content_types: Vec<&'static str>,
}

/// A valid image to mutate, with its media type.
pub struct Seed {
    pub name: &'static str,
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
}

/// Small valid images in every format the services take.
pub fn seeds() -> Vec<Seed> {
    let cat = image::load_from_memory(&test_support::photo("cat.jpg"))
        .unwrap()
        .thumbnail(80, 60);
    let coffee = image::load_from_memory(&test_support::photo("coffee.png"))
        .unwrap()
        .thumbnail(64, 48);
    let encode = |img: &image::DynamicImage, format: image::ImageFormat| {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    };
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
        .write_image(
            cat.to_rgba8().as_raw(),
            cat.width(),
            cat.height(),
            image::ExtendedColorType::Rgba8,
        )
        .unwrap();
    vec![
        Seed {
            name: "jpeg",
            media_type: "image/jpeg",
            bytes: encode(&cat.to_rgb8().into(), image::ImageFormat::Jpeg),
        },
        Seed {
            name: "png",
            media_type: "image/png",
            bytes: encode(&coffee, image::ImageFormat::Png),
        },
        Seed {
            name: "png-rgba",
            media_type: "image/png",
            bytes: encode(&cat.to_rgba8().into(), image::ImageFormat::Png),
        },
        Seed {
            name: "gif",
            media_type: "image/gif",
            bytes: encode(&coffee.to_rgba8().into(), image::ImageFormat::Gif),
        },
        Seed {
            name: "gif-animated",
            media_type: "image/gif",
            bytes: test_support::photo("cat-round-transparent.gif"),
        },
        Seed {
            name: "webp-lossless",
            media_type: "image/webp",
            bytes: webp,
        },
        Seed {
            name: "webp-lossy",
            media_type: "image/webp",
            bytes: test_support::photo("rocket.webp"),
        },
        Seed {
            name: "bmp",
            media_type: "image/bmp",
            bytes: encode(&cat.to_rgb8().into(), image::ImageFormat::Bmp),
        },
    ]
}

const WRONG_TYPES: [&str; 5] = [
    "application/octet-stream",
    "text/plain",
    "application/json",
    "multipart/form-data; boundary=x",
    "image/png; charset=utf-8;;;=",
];

fn content_types(rng: &mut Rng, right: &'static str) -> Vec<&'static str> {
    match rng.below(6) {
        0 | 1 => vec![right],
        2 => vec![],
        3 => vec![*rng.pick(&WRONG_TYPES)],
        4 => vec![right, *rng.pick(&WRONG_TYPES)],
        _ => vec![*rng.pick(&["image/jpeg", "image/png", "image/gif", "image/webp"])],
    }
}

/// Applies one random mutation to `bytes`; `other` is another seed for
/// splicing. Returns what it did.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, other: &[u8]) -> &'static str {
    let len = bytes.len();
    match rng.below(7) {
        0 => {
            for _ in 0..=rng.below(16) {
                let at = rng.below(len);
                bytes[at] ^= 1 << rng.below(8);
            }
            "bit flips"
        }
        1 => {
            let at = rng.below(len);
            let run = (1 + rng.below(32)).min(len - at);
            let fill = *rng.pick(&[0x00, 0xff, 0x7f, 0x80]);
            for b in &mut bytes[at..at + run] {
                *b = if rng.below(2) == 0 {
                    fill
                } else {
                    rng.next_u64() as u8
                };
            }
            "overwritten run"
        }
        2 => {
            bytes.truncate(1 + rng.below(len));
            "truncated"
        }
        3 => {
            let keep = 1 + rng.below(len.min(256));
            let from = rng.below(other.len());
            bytes.truncate(keep);
            bytes.extend_from_slice(&other[from..]);
            "spliced header"
        }
        4 => {
            let at = rng.below(len);
            let run = (1 + rng.below(512)).min(len - at);
            let chunk = bytes[at..at + run].to_vec();
            let to = rng.below(len);
            bytes.splice(to..to, chunk);
            "duplicated chunk"
        }
        5 => {
            // A header field set to an extreme: sizes, lengths, counts.
            let at = rng.below(len.clamp(1, 64));
            const EXTREMES: [&[u8]; 5] = [
                &[0x00, 0x00],
                &[0xff, 0xff],
                &[0x7f, 0xff],
                &[0xff, 0xff, 0xff, 0xff],
                &[0x80, 0x00, 0x00, 0x00],
            ];
            let value = *rng.pick(&EXTREMES);
            for (i, b) in value.iter().enumerate() {
                if at + i < len {
                    bytes[at + i] = *b;
                }
            }
            "extreme header field"
        }
        _ => {
            let at = rng.below(len);
            let run = (1 + rng.below(len - at)).min(4096);
            bytes.drain(at..at + run);
            "removed chunk"
        }
    }
}

/// `count` inputs: mutated seeds, plus (first) every fixed hostile input.
pub fn generate(count: usize, seed: u64) -> Vec<Input> {
    let seeds = seeds();
    let mut rng = Rng::new(seed);
    let mut inputs = fixed_inputs();
    while inputs.len() < count {
        let base = rng.pick(&seeds);
        let other = rng.pick(&seeds);
        let mut body = base.bytes.clone();
        let mut done = Vec::new();
        for _ in 0..=rng.below(3) {
            if body.is_empty() {
                break;
            }
            done.push(mutate(&mut rng, &mut body, &other.bytes));
        }
        inputs.push(Input {
            kind: format!("{}: {}", base.name, done.join(", ")),
            content_types: content_types(&mut rng, base.media_type),
            body,
        });
    }
    inputs
}

/// A PNG of `width` x `height` declared in its header (the CRC fixed up),
/// with a 1x1 image's data.
pub fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&[0], 1, 1, image::ExtendedColorType::L8)
        .unwrap();
    // Signature (8), length (4), "IHDR" (4), then width and height.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// A grayscale PNG of zeros: a few hundred KiB that inflate to
/// `width * height` bytes.
pub fn png_deflate_bomb(width: u32, height: u32) -> Vec<u8> {
    let pixels = vec![0u8; width as usize * height as usize];
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut png,
        image::codecs::png::CompressionType::Best,
        image::codecs::png::FilterType::NoFilter,
    )
    .write_image(&pixels, width, height, image::ExtendedColorType::L8)
    .unwrap();
    png
}

/// A GIF with `frames` frames of `size` x `size` pixels.
pub fn gif_with_frames(frames: usize, size: u16) -> Vec<u8> {
    let mut gif = Vec::new();
    {
        let mut encoder =
            gif::Encoder::new(&mut gif, size, size, &[0, 0, 0, 255, 255, 255]).unwrap();
        let pixels = vec![0u8; usize::from(size) * usize::from(size)];
        for i in 0..frames {
            let mut frame = gif::Frame::from_indexed_pixels(size, size, pixels.clone(), None);
            frame.buffer.to_mut()[i % pixels.len()] = 1;
            encoder.write_frame(&frame).unwrap();
        }
    }
    gif
}

/// The cat JPEG with its frame header (SOF0) claiming `width` x `height`.
pub fn jpeg_declaring(width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = seeds().remove(0).bytes;
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("a baseline JPEG");
    // Marker (2), length (2), precision (1), height (2), width (2).
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

/// The lossless WebP seed with its VP8L header claiming 16384 x 16384.
pub fn webp_declaring_max() -> Vec<u8> {
    let mut webp = seeds().remove(5).bytes;
    let vp8l = webp
        .windows(4)
        .position(|w| w == b"VP8L")
        .expect("a lossless WebP");
    // Chunk id (4), size (4), signature 0x2f (1), then 14 bits of
    // width - 1 and 14 of height - 1.
    let bits: u32 = 0x3fff | (0x3fff << 14) | (u32::from(webp[vp8l + 12] >> 4) << 28);
    webp[vp8l + 9..vp8l + 13].copy_from_slice(&bits.to_le_bytes());
    webp
}

/// The BMP seed claiming `width` x `height`.
pub fn bmp_declaring(width: i32, height: i32) -> Vec<u8> {
    let mut bmp = seeds().remove(7).bytes;
    bmp[18..22].copy_from_slice(&width.to_le_bytes());
    bmp[22..26].copy_from_slice(&height.to_le_bytes());
    bmp
}

/// Bombs, huge declared sizes and non-images.
pub fn fixed_inputs() -> Vec<Input> {
    let one = |kind: &str, body: Vec<u8>, content_type: &'static str| Input {
        kind: kind.to_string(),
        body,
        content_types: vec![content_type],
    };
    vec![
        one(
            "png declaring 100000x100000",
            png_declaring(100_000, 100_000),
            "image/png",
        ),
        one(
            "png declaring 16384x16384",
            png_declaring(16_384, 16_384),
            "image/png",
        ),
        one("png declaring 0x0", png_declaring(0, 0), "image/png"),
        one(
            "png deflate bomb 8000x8000 (64 MP)",
            png_deflate_bomb(8000, 8000),
            "image/png",
        ),
        one(
            "png deflate bomb 6000x6000 (36 MP)",
            png_deflate_bomb(6000, 6000),
            "image/png",
        ),
        one(
            "jpeg declaring 65000x65000",
            jpeg_declaring(65_000, 65_000),
            "image/jpeg",
        ),
        one(
            "jpeg declaring 1x65000",
            jpeg_declaring(1, 65_000),
            "image/jpeg",
        ),
        one(
            "webp declaring 16384x16384",
            webp_declaring_max(),
            "image/webp",
        ),
        one(
            "bmp declaring 100000x-100000",
            bmp_declaring(100_000, -100_000),
            "image/bmp",
        ),
        one(
            "gif with 5000 frames of 128x128",
            gif_with_frames(5000, 128),
            "image/gif",
        ),
        one(
            "gif with 3000 frames of 32x32",
            gif_with_frames(3000, 32),
            "image/gif",
        ),
        one(
            "plain text",
            b"hello, this is not an image\n".repeat(100),
            "text/plain",
        ),
        one(
            "json",
            br#"{"image": "cat.jpg"}"#.to_vec(),
            "application/json",
        ),
        one(
            "html",
            b"<html><body><img src=x></body></html>".to_vec(),
            "text/html",
        ),
        one("one byte", vec![0xff], "image/jpeg"),
        one("zeros (1 MiB)", vec![0; 1 << 20], "image/png"),
        one("jpeg magic only", vec![0xff, 0xd8, 0xff], "image/jpeg"),
        one("png magic only", b"\x89PNG\r\n\x1a\n".to_vec(), "image/png"),
        one("gif magic only", b"GIF89a".to_vec(), "image/gif"),
        one(
            "riff webp header only",
            b"RIFF\x00\x00\x00\x00WEBPVP8 ".to_vec(),
            "image/webp",
        ),
    ]
}
