//! Safe decoding of uploaded images for dapr-wasm's functions.
//!
//! Every function that takes an image shares these rules, so a bad upload
//! gets the same answer whichever function it is sent to:
//!
//! - [`detect_format`] accepts JPEG, PNG, GIF, WebP and BMP, by content.
//! - [`Limits`] cap width, height, pixels and decoder allocations *before*
//!   pixel buffers are allocated, so a decompression bomb costs a header
//!   parse and a clear error.
//! - [`jpeg_is_complete`] rejects a JPEG cut off before its end, which the
//!   lenient decoder would otherwise fill with gray.
//! - [`Error::exit_code`] follows the function host's convention: `1` bad
//!   input, `2` unsupported format, `3` input over a limit.

use std::fmt;
use std::io::Cursor;

pub use image::RgbImage;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

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

/// `message` on one line.
pub fn one_line(message: impl fmt::Display) -> String {
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

/// The format of `input`, if it is one this function accepts.
pub fn detect_format(input: &[u8]) -> Result<ImageFormat, Error> {
    if input.is_empty() {
        return Err(Error::Invalid("the input is empty".into()));
    }
    match image::guess_format(input) {
        Ok(
            format @ (ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::Gif
            | ImageFormat::WebP
            | ImageFormat::Bmp),
        ) => Ok(format),
        Ok(other) => Err(Error::Unsupported(format!(
            "{other:?} is not supported; send JPEG, PNG, GIF, WebP or BMP"
        ))),
        Err(_) => Err(Error::Unsupported(
            "not a JPEG, PNG, GIF, WebP or BMP image".into(),
        )),
    }
}

/// The `image` crate's limits for [`Limits`].
pub fn image_limits(limits: &Limits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_width);
    l.max_image_height = Some(limits.max_height);
    l.max_alloc = Some(limits.max_alloc);
    l
}

/// Refuses `frames` images of `width` x `height` over the limits, or with
/// no pixels at all.
pub fn check_pixels(width: u32, height: u32, frames: u64, limits: &Limits) -> Result<(), Error> {
    if width == 0 || height == 0 {
        // A decoder may accept it (a GIF screen of 128x0), but there is
        // nothing to convert or classify, and encoders choke on it.
        return Err(Error::Invalid(format!(
            "the image is {width}x{height}: it has no pixels"
        )));
    }
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
pub fn decode(input: &[u8], format: ImageFormat, limits: &Limits) -> Result<DynamicImage, Error> {
    // A PNG declares its size at a fixed place; check it before the decoder
    // sizes its buffers (on wasm32 a huge PNG fails there, with a vaguer
    // message than ours).
    if let (ImageFormat::Png, Some(ihdr)) = (format, input.get(16..24)) {
        let width = u32::from_be_bytes([ihdr[0], ihdr[1], ihdr[2], ihdr[3]]);
        let height = u32::from_be_bytes([ihdr[4], ihdr[5], ihdr[6], ihdr[7]]);
        check_pixels(width, height, 1, limits)?;
    }
    // Building the decoder reads only the header; our check then names the
    // dimensions, and the limits bind the decoder, before pixels are decoded.
    let mut reader = ImageReader::with_format(Cursor::new(input), format);
    reader.no_limits();
    let mut decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, 1, limits)?;
    decoder.set_limits(image_limits(limits))?;
    Ok(DynamicImage::from_decoder(decoder)?)
}

/// Whether an end-of-image marker follows the last start-of-scan marker.
///
/// The lenient decoder turns a cut-off upload into an image with a gray
/// bottom; a service should say the upload is incomplete instead. Scan data
/// never contains `FF DA` or `FF D9` (0xFF is stuffed), and bytes after the
/// end-of-image marker, which some cameras add, are still accepted.
pub fn jpeg_is_complete(input: &[u8]) -> bool {
    const SOS: [u8; 2] = [0xFF, 0xDA];
    const EOI: [u8; 2] = [0xFF, 0xD9];
    match input.windows(2).rposition(|w| w == SOS) {
        Some(last_scan) => input[last_scan..].windows(2).any(|w| w == EOI),
        None => false,
    }
}

/// A JPEG decoder error as an [`Error`].
pub fn jpeg_error(err: zune_jpeg::errors::DecodeErrors) -> Error {
    use zune_jpeg::errors::DecodeErrors as E;
    match err {
        E::LargeDimensions(_) => Error::TooLarge(one_line(err)),
        E::Unsupported(_) => Error::Unsupported(one_line(err)),
        other => Error::Invalid(one_line(other)),
    }
}

/// Decodes any supported image (the first frame of a GIF) to 8-bit RGB,
/// dropping alpha.
pub fn decode_rgb(input: &[u8], limits: &Limits) -> Result<RgbImage, Error> {
    let format = detect_format(input)?;
    if format == ImageFormat::Jpeg && !jpeg_is_complete(input) {
        return Err(Error::Invalid(TRUNCATED_JPEG.into()));
    }
    Ok(decode(input, format, limits)?.into_rgb8())
}

/// The reason given for a JPEG without its end marker.
pub const TRUNCATED_JPEG: &str =
    "the JPEG is truncated: it has no end-of-image marker after its last scan";
