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
//! PNG output uses the fast deflate mode. `docs/performance.md` has the numbers.

use std::borrow::Cow;
use std::fmt;
use std::io::Cursor;

use image::codecs::gif::GifDecoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{
    AnimationDecoder, DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageFormat,
    ImageReader,
};

/// Caps that protect the function from decompression bombs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted width in pixels.
    pub max_width: u32,
    /// Largest accepted height in pixels.
    pub max_height: u32,
    /// Largest accepted `width * height` of one image (of all frames for GIF).
    pub max_pixels: u64,
    /// Largest allocation a decoder may make, in bytes.
    pub max_alloc: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_width: 16_384,
            max_height: 16_384,
            max_pixels: 50_000_000,
            max_alloc: 256 << 20,
        }
    }
}

/// The encoding of the output image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// 8-bit grayscale PNG (gray+alpha when the input had alpha).
    Png,
    /// GIF with a gray palette.
    Gif,
}

/// Why an image could not be converted. `Display` is a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input is empty, corrupt or truncated.
    Invalid(String),
    /// The input is not one of the supported formats.
    Unsupported(String),
    /// The image is larger than [`Limits`] allow.
    TooLarge(String),
    /// Encoding the result failed (should not happen for valid images).
    Encode(String),
}

impl Error {
    /// The process exit code for this error (the function host's convention).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::Encode(_) => 1,
            Error::Unsupported(_) => 2,
            Error::TooLarge(_) => 3,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) => write!(f, "invalid image: {m}"),
            Error::Unsupported(m) => write!(f, "unsupported image: {m}"),
            Error::TooLarge(m) => write!(f, "image too large: {m}"),
            Error::Encode(m) => write!(f, "could not encode the result: {m}"),
        }
    }
}

impl std::error::Error for Error {}

fn one_line(message: impl fmt::Display) -> String {
    message.to_string().replace(['\n', '\r'], " ")
}

impl From<image::ImageError> for Error {
    fn from(err: image::ImageError) -> Self {
        use image::ImageError as E;
        match err {
            E::Limits(e) => Error::TooLarge(one_line(e)),
            E::Unsupported(e) => Error::Unsupported(one_line(e)),
            E::Decoding(e) => Error::Invalid(one_line(e)),
            E::Parameter(e) => Error::Invalid(one_line(e)),
            E::Encoding(e) => Error::Encode(one_line(e)),
            E::IoError(e) => Error::Invalid(one_line(e)),
        }
    }
}

/// Converts `input` to grayscale. Returns the encoded output and its format.
pub fn grayscale(input: &[u8], limits: &Limits) -> Result<(Vec<u8>, OutputFormat), Error> {
    if input.is_empty() {
        return Err(Error::Invalid("the input is empty".into()));
    }
    let format = image::guess_format(input).map_err(|_| {
        Error::Unsupported("not a JPEG, PNG, GIF, WebP or BMP image".into())
    })?;
    match format {
        ImageFormat::Gif => Ok((gif_to_gray(input, limits)?, OutputFormat::Gif)),
        ImageFormat::Jpeg => {
            let gray = match jpeg_to_luma(input, limits)? {
                Some(luma) => luma,
                // Not YCbCr or plain gray (CMYK, say): take the general path.
                None => decode(input, format, limits)?.grayscale(),
            };
            Ok((encode_png(&gray)?, OutputFormat::Png))
        }
        ImageFormat::Png | ImageFormat::WebP | ImageFormat::Bmp => {
            let gray = decode(input, format, limits)?.grayscale();
            Ok((encode_png(&gray)?, OutputFormat::Png))
        }
        other => Err(Error::Unsupported(format!(
            "{other:?} is not supported; send JPEG, PNG, GIF, WebP or BMP"
        ))),
    }
}

fn image_limits(limits: &Limits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_width);
    l.max_image_height = Some(limits.max_height);
    l.max_alloc = Some(limits.max_alloc);
    l
}

fn check_pixels(width: u32, height: u32, frames: u64, limits: &Limits) -> Result<(), Error> {
    if width > limits.max_width || height > limits.max_height {
        return Err(Error::TooLarge(format!(
            "{width}x{height} exceeds the limit of {}x{}",
            limits.max_width, limits.max_height
        )));
    }
    let pixels = u64::from(width) * u64::from(height) * frames;
    if pixels > limits.max_pixels {
        return Err(Error::TooLarge(format!(
            "{pixels} pixels exceeds the limit of {}",
            limits.max_pixels
        )));
    }
    Ok(())
}

/// Decodes any supported format with the limits applied before allocation.
fn decode(input: &[u8], format: ImageFormat, limits: &Limits) -> Result<DynamicImage, Error> {
    let mut reader = ImageReader::with_format(Cursor::new(input), format);
    reader.limits(image_limits(limits));
    let mut decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, 1, limits)?;
    decoder.set_limits(image_limits(limits))?;
    Ok(DynamicImage::from_decoder(decoder)?)
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

fn jpeg_error(err: zune_jpeg::errors::DecodeErrors) -> Error {
    use zune_jpeg::errors::DecodeErrors as E;
    match err {
        E::LargeDimensions(_) => Error::TooLarge(one_line(err)),
        E::Unsupported(_) => Error::Unsupported(one_line(err)),
        other => Error::Invalid(one_line(other)),
    }
}

/// Encodes a grayscale image (L8 or LA8) as PNG with fast compression.
fn encode_png(gray: &DynamicImage) -> Result<Vec<u8>, Error> {
    let (bytes, color) = match gray {
        DynamicImage::ImageLuma8(img) => (Cow::Borrowed(img.as_raw()), ExtendedColorType::L8),
        DynamicImage::ImageLumaA8(img) => (Cow::Borrowed(img.as_raw()), ExtendedColorType::La8),
        other if other.color().has_alpha() => {
            (Cow::Owned(other.to_luma_alpha8().into_raw()), ExtendedColorType::La8)
        }
        other => (Cow::Owned(other.to_luma8().into_raw()), ExtendedColorType::L8),
    };
    let mut out = Vec::with_capacity(bytes.len() / 2 + 1024);
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
        .write_image(&bytes, gray.width(), gray.height(), color)?;
    Ok(out)
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

    // Palette: index i is gray level i, except that 255 means "transparent"
    // when a frame has transparent pixels (gray 255 then shows as 254).
    let palette: Vec<u8> = (0..=255u8).flat_map(|v| [v, v, v]).collect();
    let mut out = Vec::new();
    {
        let mut encoder = gif::Encoder::new(&mut out, w16, h16, &palette)
            .map_err(|e| Error::Encode(one_line(e)))?;
        let mut frames_seen: u64 = 0;
        for frame in decoder.into_frames() {
            let frame = frame?;
            frames_seen += 1;
            // Each decoded frame is a full canvas: bound the total work.
            check_pixels(width, height, frames_seen, limits)?;
            if frames_seen == 2 {
                encoder
                    .set_repeat(gif::Repeat::Infinite)
                    .map_err(|e| Error::Encode(one_line(e)))?;
            }
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
            let gif_frame = gif::Frame {
                width: w16,
                height: h16,
                delay: delay_cs.clamp(0.0, f64::from(u16::MAX)) as u16,
                dispose: if has_transparency {
                    gif::DisposalMethod::Background
                } else {
                    gif::DisposalMethod::Keep
                },
                transparent: has_transparency.then_some(255),
                buffer: Cow::Owned(indices),
                ..gif::Frame::default()
            };
            encoder
                .write_frame(&gif_frame)
                .map_err(|e| Error::Encode(one_line(e)))?;
        }
        if frames_seen == 0 {
            return Err(Error::Invalid("the GIF has no frames".into()));
        }
    }
    Ok(out)
}
