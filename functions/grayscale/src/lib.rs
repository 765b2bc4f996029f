//! The `grayscale` function: turn one encoded image into its grayscale version.
//!
//! This library is the whole function; `main.rs` only wires it to stdin, stdout
//! and the exit code, so the same code can be compiled for the host and
//! benchmarked against its wasm build (see `crates/function-host/benches`).
//!
//! # Contract
//!
//! - Input: one JPEG, PNG, GIF, WebP or BMP image.
//! - Output: GIF input gives a GIF (every frame of an animation kept, with a
//!   256-level gray palette); everything else gives an 8-bit grayscale PNG
//!   (with an alpha channel when the input had one). This is the seed's rule.
//! - Failure: an [`Error`] whose [`Error::exit_code`] tells what kind of
//!   failure it was, following the function host's convention:
//!   `1` bad input, `2` unsupported format, `3` input over a limit.
//!
//! # Decompression bombs
//!
//! A small file can declare a huge image. [`Limits`] caps width, height, the
//! number of pixels and the decoder's allocations *before* pixel buffers are
//! allocated, so a bomb costs a header parse and a clear error.
//!
//! # Speed
//!
//! JPEG, the common case, is decoded straight to its luma (Y) plane: the
//! chroma planes are never colour-converted, which is most of a colour decode.
//! PNG output uses the fast deflate mode and the Paeth filter.
//! `docs/performance.md` has the numbers.

use std::borrow::Cow;
use std::io::Cursor;

use image::codecs::gif::GifDecoder;
use image::codecs::png::PngEncoder;
pub use image::codecs::png::{CompressionType, FilterType};
use image::{
    AnimationDecoder, DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageFormat,
};
pub use image_input::{Error, Limits, detect_format};
use image_input::{
    TRUNCATED_JPEG, check_pixels, decode, image_limits, jpeg_error, jpeg_is_complete, one_line,
};

/// The encoding of the output image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// 8-bit grayscale PNG (gray+alpha when the input had alpha).
    Png,
    /// GIF with a gray palette.
    Gif,
}

/// Converts `input` to grayscale. Returns the encoded output and its format.
pub fn grayscale(input: &[u8], limits: &Limits) -> Result<(Vec<u8>, OutputFormat), Error> {
    match detect_format(input)? {
        ImageFormat::Gif => Ok((gif_to_gray(input, limits)?, OutputFormat::Gif)),
        format => {
            let gray = decode_gray(input, format, limits)?;
            Ok((encode_png(&gray)?, OutputFormat::Png))
        }
    }
}

/// Decodes a single-frame image straight to grayscale (L8, or LA8 when it
/// has alpha): the first stage of [`grayscale`] for every format but GIF.
pub fn decode_gray(
    input: &[u8],
    format: ImageFormat,
    limits: &Limits,
) -> Result<DynamicImage, Error> {
    if format == ImageFormat::Jpeg {
        if !jpeg_is_complete(input) {
            return Err(Error::Invalid(TRUNCATED_JPEG.into()));
        }
        if let Some(luma) = jpeg_to_luma(input, limits)? {
            return Ok(luma);
        }
        // Not YCbCr or plain gray (CMYK, say): take the general path.
    }
    Ok(decode(input, format, limits)?.grayscale())
}

/// Decodes a YCbCr or gray JPEG straight to its luma plane. `Ok(None)` means
/// the JPEG uses another colour space and needs the general path.
fn jpeg_to_luma(input: &[u8], limits: &Limits) -> Result<Option<DynamicImage>, Error> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;

    let options = DecoderOptions::default()
        .set_max_width(limits.max_width as usize)
        .set_max_height(limits.max_height as usize)
        .set_strict_mode(false)
        .jpeg_set_out_colorspace(ColorSpace::Luma);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(input), options);
    decoder.decode_headers().map_err(jpeg_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| Error::Invalid("JPEG header is missing".into()))?;
    if !matches!(
        decoder.input_colorspace(),
        Some(ColorSpace::YCbCr | ColorSpace::Luma)
    ) {
        return Ok(None);
    }
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_pixels(width, height, 1, limits)?;
    let luma = decoder.decode().map_err(jpeg_error)?;
    let gray = image::GrayImage::from_raw(width, height, luma)
        .ok_or_else(|| Error::Invalid("JPEG decoded to an unexpected size".into()))?;
    Ok(Some(DynamicImage::ImageLuma8(gray)))
}

/// Encodes a grayscale image (L8 or LA8) as PNG: the second stage of
/// [`grayscale`].
///
/// Fast compression with the Paeth filter: on photos Paeth gives the same
/// size as adaptive filtering at a fraction of its cost, and the default
/// compression level costs 15x the time for 3% less (see
/// `docs/performance.md`).
pub fn encode_png(gray: &DynamicImage) -> Result<Vec<u8>, Error> {
    encode_png_with(gray, CompressionType::Fast, FilterType::Paeth)
}

/// [`encode_png`] with a chosen compression and filter (for benchmarks).
pub fn encode_png_with(
    gray: &DynamicImage,
    compression: CompressionType,
    filter: FilterType,
) -> Result<Vec<u8>, Error> {
    let (bytes, color) = match gray {
        DynamicImage::ImageLuma8(img) => (Cow::Borrowed(img.as_raw()), ExtendedColorType::L8),
        DynamicImage::ImageLumaA8(img) => (Cow::Borrowed(img.as_raw()), ExtendedColorType::La8),
        other if other.color().has_alpha() => (
            Cow::Owned(other.to_luma_alpha8().into_raw()),
            ExtendedColorType::La8,
        ),
        other => (
            Cow::Owned(other.to_luma8().into_raw()),
            ExtendedColorType::L8,
        ),
    };
    let mut out = Vec::with_capacity(bytes.len() / 2 + 1024);
    PngEncoder::new_with_quality(&mut out, compression, filter).write_image(
        &bytes,
        gray.width(),
        gray.height(),
        color,
    )?;
    Ok(out)
}

/// One composited RGBA frame as a full-canvas frame of gray palette indices.
fn gray_gif_frame(frame: image::Frame, width: u16, height: u16) -> gif::Frame<'static> {
    let (numer, denom) = frame.delay().numer_denom_ms();
    let delay_cs = (f64::from(numer) / f64::from(denom.max(1)) / 10.0).round();
    let rgba = frame.into_buffer();
    let has_transparency = rgba.pixels().any(|p| p.0[3] < 128);
    let luma = DynamicImage::ImageRgba8(rgba).to_luma_alpha8();
    let indices: Vec<u8> = luma
        .pixels()
        .map(|p| match (has_transparency, p.0[1] < 128) {
            (true, true) => 255,
            (true, false) => p.0[0].min(254),
            (false, _) => p.0[0],
        })
        .collect();
    gif::Frame {
        width,
        height,
        delay: delay_cs.clamp(0.0, f64::from(u16::MAX)) as u16,
        // Frames are full canvases: a transparent pixel must show the
        // background, not the previous frame.
        dispose: if has_transparency {
            gif::DisposalMethod::Background
        } else {
            gif::DisposalMethod::Keep
        },
        transparent: has_transparency.then_some(255),
        buffer: Cow::Owned(indices),
        ..gif::Frame::default()
    }
}

/// Converts every frame of a GIF to gray and re-encodes it with a gray palette.
fn gif_to_gray(input: &[u8], limits: &Limits) -> Result<Vec<u8>, Error> {
    let mut decoder = GifDecoder::new(Cursor::new(input))?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, 1, limits)?;
    decoder.set_limits(image_limits(limits))?;
    let (w16, h16) = (
        u16::try_from(width).map_err(|_| Error::Invalid("GIF wider than 65535".into()))?,
        u16::try_from(height).map_err(|_| Error::Invalid("GIF taller than 65535".into()))?,
    );

    // Decode every frame first: the loop extension must precede the first
    // frame, and only the count tells whether the GIF is animated.
    let mut frames = Vec::new();
    for frame in decoder.into_frames() {
        let frame = frame?;
        // Each decoded frame is a full canvas: bound the total work.
        check_pixels(width, height, frames.len() as u64 + 1, limits)?;
        frames.push(gray_gif_frame(frame, w16, h16));
    }
    if frames.is_empty() {
        return Err(Error::Invalid("the GIF has no frames".into()));
    }

    // Palette: index i is gray level i, except that 255 means "transparent"
    // in frames with transparent pixels (gray 255 then shows as 254).
    let palette: Vec<u8> = (0..=255u8).flat_map(|v| [v, v, v]).collect();
    let mut out = Vec::new();
    {
        let encode_error = |e: gif::EncodingError| Error::Encode(one_line(e));
        let mut encoder = gif::Encoder::new(&mut out, w16, h16, &palette).map_err(encode_error)?;
        if frames.len() > 1 {
            encoder
                .set_repeat(gif::Repeat::Infinite)
                .map_err(encode_error)?;
        }
        for frame in &frames {
            encoder.write_frame(frame).map_err(encode_error)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/");
        std::fs::read(format!("{path}{name}")).expect("read fixture")
    }

    #[test]
    fn a_gif_screen_with_no_rows_is_invalid_not_an_unreadable_gif() {
        // The hostile-input suite found it: a GIF whose screen is 128x0 was
        // "converted" into a GIF no decoder could read.
        let mut gif = fixture("cat-round-transparent.gif");
        gif[8..10].copy_from_slice(&[0, 0]);
        let err = grayscale(&gif, &Limits::default()).unwrap_err();
        assert_eq!(err.exit_code(), 1, "{err}");
        assert!(err.to_string().contains("no pixels"), "{err}");
    }

    /// A PNG whose header declares `width` x `height` RGB pixels, followed by
    /// a tiny IDAT: a decompression bomb's header.
    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let crc = crc32fast::hash(&out[start..]);
            out.extend_from_slice(&crc.to_be_bytes());
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut out, b"IEND", &[]);
        out
    }

    #[test]
    fn jpeg_becomes_a_grayscale_png_of_the_same_size() {
        let (png, format) = grayscale(&fixture("cat.jpg"), &Limits::default()).unwrap();
        assert_eq!(format, OutputFormat::Png);
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), (451, 300));
        assert_eq!(img.color(), image::ColorType::L8);
    }

    #[test]
    fn animated_gif_stays_an_animated_gif() {
        let (gif, format) = grayscale(&fixture("cat-animated.gif"), &Limits::default()).unwrap();
        assert_eq!(format, OutputFormat::Gif);
        let decoder = GifDecoder::new(Cursor::new(gif)).unwrap();
        let frames = decoder.into_frames().collect_frames().unwrap();
        assert_eq!(frames.len(), 3);
        let delays: Vec<u32> = frames
            .iter()
            .map(|f| f.delay().numer_denom_ms())
            .map(|(n, d)| n / d)
            .collect();
        assert_eq!(delays, [200, 300, 400]);
        for frame in &frames {
            assert!(
                frame
                    .buffer()
                    .pixels()
                    .all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2])
            );
        }
    }

    #[test]
    fn gif_transparency_is_kept() {
        let input = fixture("cat-round-transparent.gif");
        let (gif, _) = grayscale(&input, &Limits::default()).unwrap();
        let img = image::load_from_memory(&gif).unwrap().to_rgba8();
        let corner = img.get_pixel(0, 0);
        let centre = img.get_pixel(60, 60);
        assert_eq!(corner.0[3], 0, "outside the circle stays transparent");
        assert_eq!(centre.0[3], 255);
    }

    #[test]
    fn empty_input_is_invalid() {
        let err = grayscale(&[], &Limits::default()).unwrap_err();
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn text_is_unsupported() {
        let err = grayscale(b"hello, world", &Limits::default()).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
    }

    #[test]
    fn huge_declared_dimensions_are_refused_before_decoding() {
        let err = grayscale(&png_claiming(100_000, 100_000), &Limits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image too large: 100000x100000 exceeds the limit of 16384x16384"
        );
        // Within width and height, but over the pixel budget.
        let err = grayscale(&png_claiming(16_000, 16_000), &Limits::default()).unwrap_err();
        assert!(matches!(err, Error::TooLarge(_)), "{err}");
    }

    #[test]
    fn too_many_gif_frames_are_refused() {
        let limits = Limits {
            max_pixels: 200 * 150 * 2,
            ..Limits::default()
        };
        let err = grayscale(&fixture("cat-animated.gif"), &limits).unwrap_err();
        assert!(matches!(err, Error::TooLarge(_)), "{err}");
    }

    #[test]
    fn jpeg_without_end_marker_is_truncated_but_trailing_bytes_are_fine() {
        let jpeg = fixture("cat.jpg");
        let err = grayscale(&jpeg[..jpeg.len() - 1], &Limits::default()).unwrap_err();
        assert!(
            matches!(&err, Error::Invalid(m) if m.contains("truncated")),
            "{err}"
        );
        let mut padded = jpeg.clone();
        padded.extend_from_slice(b"trailing camera data");
        grayscale(&padded, &Limits::default()).unwrap();
    }

    #[test]
    fn truncated_files_fail_without_panicking() {
        for name in [
            "cat.jpg",
            "coffee.png",
            "cat-animated.gif",
            "rocket.webp",
            "rocket.bmp",
        ] {
            let bytes = fixture(name);
            // Every cut falls inside the header or the pixel data.
            for cut in [
                8,
                40,
                bytes.len() / 3,
                bytes.len() / 2,
                bytes.len() * 9 / 10,
            ] {
                let result = grayscale(&bytes[..cut], &Limits::default());
                assert!(
                    result.is_err(),
                    "{name} cut at {cut} of {} decoded",
                    bytes.len()
                );
            }
        }
    }
}
