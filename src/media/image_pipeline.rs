//! Validation and normalisation of uploaded photos (issue 3, validation steps 2–5).
//!
//! Every byte is hostile: the type comes from magic bytes, the dimensions from our own header
//! parsers before any decoder runs, decoding happens under explicit limits, and what we store is
//! a fresh re-encode that carries no metadata. Pure and synchronous: the caller runs it on a
//! blocking thread behind a semaphore.

use std::io::Cursor;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::metadata::Orientation;
use image::{
    DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageError, ImageFormat,
    ImageReader, RgbImage, RgbaImage,
};
use sha2::{Digest, Sha256};

/// The types we accept, for the `unsupported_media_type` problem.
pub const ACCEPTED_MIME_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];

/// JPEG quality of stored copies: visually lossless for photos at about a third of q95's size.
pub const JPEG_QUALITY: u8 = 85;

/// Bounds applied to every upload (`IMAGE_*` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted `width * height` (`IMAGE_MAX_PIXELS`).
    pub max_pixels: u64,
    /// Largest accepted width or height (`IMAGE_MAX_SIDE`).
    pub max_side: u32,
    /// Smallest accepted short side.
    pub min_side: u32,
    /// Long side of the stored copy (`IMAGE_STORE_MAX_SIDE`); larger images are downscaled.
    pub store_max_side: u32,
    /// Cap on what the decoder may allocate for one image; it is further held to 8-bit RGBA of
    /// `max_pixels` (4 bytes a pixel), so 16-bit images get half the pixels (see `decode_budget`).
    pub max_alloc_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pixels: 40_000_000,
            max_side: 8192,
            min_side: 256,
            store_max_side: 2048,
            max_alloc_bytes: 512 * 1024 * 1024,
        }
    }
}

/// An accepted container format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    Jpeg,
    Png,
    Webp,
}

impl ImageKind {
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
        }
    }

    /// File extension for object keys, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            Self::Jpeg => ImageFormat::Jpeg,
            Self::Png => ImageFormat::Png,
            Self::Webp => ImageFormat::WebP,
        }
    }
}

/// The stored copy of an upload: upright, at most `store_max_side` on the long side, JPEG or
/// PNG, without metadata.
#[derive(Clone, PartialEq, Eq)]
pub struct Normalized {
    pub bytes: Vec<u8>,
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
    /// Lowercase hex SHA-256 of `bytes`.
    pub sha256: String,
    /// The format the upload arrived in.
    pub source: ImageKind,
}

impl std::fmt::Debug for Normalized {
    // Hand-written so a debug log never dumps someone's photo.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Normalized")
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("mime", &self.mime)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("sha256", &self.sha256)
            .field("source", &self.source)
            .finish()
    }
}

/// Why an upload was refused. [`MediaError::code`] is the problem+json code.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(
        "unsupported media type ({}); accepted types are image/jpeg, image/png and image/webp",
        detected.as_deref().unwrap_or("unknown")
    )]
    Unsupported {
        /// What the magic bytes say it is, e.g. `image/gif` or `text/html`; `None` if nothing.
        detected: Option<String>,
    },
    #[error("the image is {width}×{height} pixels, which is larger than allowed")]
    TooLarge { width: u32, height: u32 },
    #[error("the image is {width}×{height} pixels, which is smaller than allowed")]
    TooSmall { width: u32, height: u32 },
    #[error("the image could not be read: {0}")]
    Invalid(String),
}

impl MediaError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsupported { .. } => "unsupported_media_type",
            Self::TooLarge { .. } => "image_too_large",
            Self::TooSmall { .. } => "image_too_small",
            Self::Invalid(_) => "invalid_image",
        }
    }
}

fn invalid(reason: &str) -> MediaError {
    MediaError::Invalid(reason.to_owned())
}

/// Step 2: the type from magic bytes alone; the client's Content-Type and file name are not
/// consulted.
pub fn sniff(bytes: &[u8]) -> Result<ImageKind, MediaError> {
    let detected = infer::get(bytes);
    match detected.map(|t| t.mime_type()) {
        Some("image/jpeg") => Ok(ImageKind::Jpeg),
        Some("image/png") => Ok(ImageKind::Png),
        Some("image/webp") => Ok(ImageKind::Webp),
        other => Err(MediaError::Unsupported {
            detected: other.map(str::to_owned),
        }),
    }
}

/// Step 3: width and height from the container header, without touching pixel data.
///
/// These parsers only ever read a few fixed offsets (PNG, WebP) or hop from segment to segment
/// (JPEG), so a decompression bomb is measured in microseconds and without allocating. The
/// decoder later re-reads the dimensions and must agree.
pub fn probe(bytes: &[u8], kind: ImageKind) -> Result<(u32, u32), MediaError> {
    let (width, height) = match kind {
        ImageKind::Jpeg => probe_jpeg(bytes)?,
        ImageKind::Png => probe_png(bytes)?,
        ImageKind::Webp => probe_webp(bytes)?,
    };
    if width == 0 || height == 0 {
        return Err(invalid("the header declares an empty image"));
    }
    Ok((width, height))
}

/// The size rules of step 3, shared with callers that learn dimensions elsewhere.
pub fn check_dimensions(width: u32, height: u32, limits: &Limits) -> Result<(), MediaError> {
    let pixels = u64::from(width) * u64::from(height);
    if width > limits.max_side || height > limits.max_side || pixels > limits.max_pixels {
        return Err(MediaError::TooLarge { width, height });
    }
    if width.min(height) < limits.min_side {
        return Err(MediaError::TooSmall { width, height });
    }
    Ok(())
}

/// Steps 2–5: sniff, probe and check, decode under limits, then the stored copy (upright,
/// downscaled, re-encoded without metadata, hashed).
pub fn normalize(bytes: &[u8], limits: &Limits) -> Result<Normalized, MediaError> {
    let (kind, image, orientation) = decode_unoriented(bytes, limits)?;
    let pixels = Pixels::from_image(image);
    // Downscale before rotating: the long side is the same either way and turning the small
    // copy is much cheaper than turning the full-size one.
    let pixels = pixels.downscale(limits.store_max_side);
    let pixels = pixels.oriented(orientation);
    let (width, height) = pixels.dimensions();
    let (bytes, out_kind) = pixels.encode()?;
    let sha256 = sha256_hex(&bytes);
    Ok(Normalized {
        bytes,
        mime: out_kind.mime(),
        width,
        height,
        sha256,
        source: kind,
    })
}

/// Steps 2–4 plus the EXIF orientation: the full-size upright image, for code that processes
/// pixels (for example provider results) rather than storing an upload.
pub fn decode_for_processing(bytes: &[u8], limits: &Limits) -> Result<DynamicImage, MediaError> {
    let (_, mut image, orientation) = decode_unoriented(bytes, limits)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Re-encodes pixels the way stored copies are encoded: JPEG at [`JPEG_QUALITY`], or PNG when
/// some pixel is not fully opaque. Never writes metadata. Does not resize.
pub fn encode(image: &DynamicImage) -> Result<(Vec<u8>, ImageKind), MediaError> {
    match image {
        DynamicImage::ImageRgb8(rgb) => encode_jpeg(rgb),
        DynamicImage::ImageRgba8(rgba) if has_transparency(rgba) => encode_png(rgba),
        other => Pixels::from_image(other.clone()).encode(),
    }
}

/// Downscales so that the long side is at most `max_side` (aspect kept, never upscales).
pub fn downscale(image: DynamicImage, max_side: u32) -> DynamicImage {
    Pixels::from_image(image).downscale(max_side).into_image()
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Dimensions after fitting `width`×`height` into a `max_side` square, rounding the short side
/// to the nearest pixel (4000×3000 into 2048 gives exactly 2048×1536).
pub fn fit_within(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let max_side = max_side.max(1);
    let long = width.max(height);
    if long <= max_side {
        return (width, height);
    }
    let scale = |side: u32| -> u32 {
        let scaled =
            (u64::from(side) * u64::from(max_side) + u64::from(long) / 2) / u64::from(long);
        u32::try_from(scaled).unwrap_or(max_side).clamp(1, max_side)
    };
    (scale(width), scale(height))
}

// ---------------------------------------------------------------------------------------
// Decoding

fn decode_unoriented(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(ImageKind, DynamicImage, Orientation), MediaError> {
    let kind = sniff(bytes)?;
    let (width, height) = probe(bytes, kind)?;
    check_dimensions(width, height, limits)?;
    if kind == ImageKind::Jpeg {
        // The JPEG decoder pads a truncated scan with grey instead of failing; a half photo is
        // not something we want to store, so a missing end-of-image marker is an error.
        require_jpeg_end(bytes)?;
    }

    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    decoder_limits.max_alloc = Some(decode_budget(limits));

    let decode_error = |e: ImageError| match e {
        ImageError::Limits(_) => MediaError::TooLarge { width, height },
        other => MediaError::Invalid(other.to_string()),
    };

    let mut reader = ImageReader::with_format(Cursor::new(bytes), kind.format());
    reader.limits(decoder_limits.clone());
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    // A second parser disagreeing with ours means a crafted file: the limits were checked on
    // our numbers, so refuse rather than guess which one the pixels follow.
    if decoder.dimensions() != (width, height) {
        return Err(invalid(
            "the header and the image data disagree on the size",
        ));
    }
    // Unreadable EXIF on otherwise good pixels is common enough not to refuse the photo.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    // `from_decoder` allocates the output buffer without consulting the limits.
    decoder_limits
        .reserve(decoder.total_bytes())
        .map_err(decode_error)?;
    let image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    Ok((kind, image, orientation))
}

/// What one decode may allocate for its pixels: 8-bit RGBA of the largest accepted image, within
/// `max_alloc_bytes`. A 16-bit PNG of 40 MP compresses to a few hundred KB yet decodes to 320 MB
/// (and 160 MB more on conversion); at 4 bytes a pixel it is refused before any buffer exists.
fn decode_budget(limits: &Limits) -> u64 {
    limits
        .max_alloc_bytes
        .min(limits.max_pixels.saturating_mul(4))
}

fn be16(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u32::from(u16::from_be_bytes([b[0], b[1]])))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn le16(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u32::from(u16::from_le_bytes([b[0], b[1]])))
}

fn le24(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(3)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], 0]))
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

fn probe_png(bytes: &[u8]) -> Result<(u32, u32), MediaError> {
    if bytes.get(..8) != Some(&PNG_SIGNATURE[..]) {
        return Err(invalid("not a PNG signature"));
    }
    // The first chunk must be IHDR, length 13: width and height are its first two fields.
    if bytes.get(8..16) != Some(&[0, 0, 0, 13, b'I', b'H', b'D', b'R'][..]) {
        return Err(invalid("the PNG does not start with an IHDR chunk"));
    }
    let (Some(width), Some(height)) = (be32(bytes, 16), be32(bytes, 20)) else {
        return Err(invalid("truncated PNG header"));
    };
    Ok((width, height))
}

fn probe_jpeg(bytes: &[u8]) -> Result<(u32, u32), MediaError> {
    let truncated = || invalid("truncated JPEG header");
    // SOF0–SOF15 except DHT (C4), JPG (C8) and DAC (CC): length(2) precision(1) height(2)
    // width(2).
    let is_frame = |m: u8| matches!(m, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF);
    let at = find_segment(bytes, is_frame)?;
    let height = be16(bytes, at + 3).ok_or_else(truncated)?;
    let width = be16(bytes, at + 5).ok_or_else(truncated)?;
    Ok((width, height))
}

/// Walks the JPEG header segment by segment (so nothing inside an APP segment, such as an
/// EXIF thumbnail, is mistaken for the image) and returns the offset just past the first
/// marker for which `wanted` is true.
fn find_segment(bytes: &[u8], wanted: impl Fn(u8) -> bool) -> Result<usize, MediaError> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(invalid("not a JPEG start-of-image marker"));
    }
    let mut at = 2usize;
    loop {
        if bytes.get(at) != Some(&0xFF) {
            return Err(invalid("malformed JPEG: expected a marker"));
        }
        // Markers may be preceded by any number of 0xFF fill bytes.
        while bytes.get(at) == Some(&0xFF) {
            at += 1;
        }
        let marker = *bytes
            .get(at)
            .ok_or_else(|| invalid("truncated JPEG header"))?;
        at += 1;
        if wanted(marker) {
            return Ok(at);
        }
        match marker {
            // Markers without a length field.
            0x01 | 0xD0..=0xD7 => {}
            0xD8 | 0xD9 | 0xDA | 0x00 => {
                return Err(invalid(
                    "malformed JPEG: no frame header before the image data",
                ));
            }
            _ => {
                let length = be16(bytes, at).ok_or_else(|| invalid("truncated JPEG header"))?;
                if length < 2 {
                    return Err(invalid("malformed JPEG: bad segment length"));
                }
                // `length` is at most 65535, so this cannot overflow a usize.
                at += length as usize;
            }
        }
    }
}

/// Refuses a JPEG whose image data stops before its end-of-image marker.
///
/// Inside entropy-coded data every 0xFF is followed by 0x00 or a restart marker, so an
/// `FF D9` after the first start-of-scan can only be the end of the image. Bytes after it
/// (phones append motion-photo videos there) are allowed: they are never decoded or stored.
fn require_jpeg_end(bytes: &[u8]) -> Result<(), MediaError> {
    let scan = find_segment(bytes, |m| m == 0xDA)?;
    // Searched from the end, where a complete file has it: O(1) unless the file is broken.
    let ends = bytes
        .get(scan..)
        .is_some_and(|data| data.windows(2).rev().any(|w| w == [0xFF, 0xD9]));
    if ends {
        Ok(())
    } else {
        Err(invalid("truncated JPEG"))
    }
}

fn probe_webp(bytes: &[u8]) -> Result<(u32, u32), MediaError> {
    let truncated = || invalid("truncated WebP header");
    if bytes.get(..4) != Some(&b"RIFF"[..]) || bytes.get(8..12) != Some(&b"WEBP"[..]) {
        return Err(invalid("not a RIFF WebP container"));
    }
    match bytes.get(12..16) {
        // Lossy: 3-byte frame tag, start code, then 14-bit width and height.
        Some(b"VP8 ") => {
            if bytes.get(23..26) != Some(&[0x9D, 0x01, 0x2A][..]) {
                return Err(invalid("bad VP8 start code"));
            }
            let width = le16(bytes, 26).ok_or_else(truncated)? & 0x3FFF;
            let height = le16(bytes, 28).ok_or_else(truncated)? & 0x3FFF;
            Ok((width, height))
        }
        // Lossless: signature byte, then width-1 and height-1 in 14 bits each.
        Some(b"VP8L") => {
            if bytes.get(20) != Some(&0x2F) {
                return Err(invalid("bad VP8L signature"));
            }
            let bits = le32(bytes, 21).ok_or_else(truncated)?;
            Ok(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        // Extended: flags, then the canvas size minus one in 24 bits each.
        Some(b"VP8X") => {
            let width = le24(bytes, 24).ok_or_else(truncated)? + 1;
            let height = le24(bytes, 27).ok_or_else(truncated)? + 1;
            Ok((width, height))
        }
        Some(_) => Err(invalid("unknown WebP chunk")),
        None => Err(truncated()),
    }
}

// ---------------------------------------------------------------------------------------
// Pixels: what is left once the decoder is done

/// 8-bit pixels in the two shapes we store: RGB for JPEG, RGBA (with real transparency) for PNG.
enum Pixels {
    Rgb(RgbImage),
    Rgba(RgbaImage),
}

impl Pixels {
    fn from_image(image: DynamicImage) -> Self {
        if !image.color().has_alpha() {
            return Self::Rgb(image.into_rgb8());
        }
        let rgba = image.into_rgba8();
        if has_transparency(&rgba) {
            Self::Rgba(rgba)
        } else {
            // An alpha channel that is opaque everywhere is just a bigger file.
            Self::Rgb(DynamicImage::ImageRgba8(rgba).into_rgb8())
        }
    }

    fn dimensions(&self) -> (u32, u32) {
        match self {
            Self::Rgb(i) => i.dimensions(),
            Self::Rgba(i) => i.dimensions(),
        }
    }

    fn into_image(self) -> DynamicImage {
        match self {
            Self::Rgb(i) => DynamicImage::ImageRgb8(i),
            Self::Rgba(i) => DynamicImage::ImageRgba8(i),
        }
    }

    fn downscale(self, max_side: u32) -> Self {
        let (width, height) = self.dimensions();
        let (to_w, to_h) = fit_within(width, height, max_side);
        if (to_w, to_h) == (width, height) {
            return self;
        }
        match self {
            Self::Rgb(i) => {
                let out = resample::area::<3>(i.as_raw(), width, height, to_w, to_h);
                RgbImage::from_raw(to_w, to_h, out).map_or(Self::Rgb(i), Self::Rgb)
            }
            Self::Rgba(mut i) => {
                // Averaging straight RGBA lets the colour of invisible pixels bleed into the
                // edges of cut-outs (dark halos); premultiplied averaging does not.
                resample::premultiply(&mut i);
                let out = resample::area::<4>(i.as_raw(), width, height, to_w, to_h);
                match RgbaImage::from_raw(to_w, to_h, out) {
                    Some(mut small) => {
                        resample::unpremultiply(&mut small);
                        Self::Rgba(small)
                    }
                    None => {
                        resample::unpremultiply(&mut i);
                        Self::Rgba(i)
                    }
                }
            }
        }
    }

    fn oriented(self, orientation: Orientation) -> Self {
        if orientation == Orientation::NoTransforms {
            return self;
        }
        let mut image = self.into_image();
        image.apply_orientation(orientation);
        match image {
            DynamicImage::ImageRgba8(i) => Self::Rgba(i),
            other => Self::Rgb(other.into_rgb8()),
        }
    }

    fn encode(&self) -> Result<(Vec<u8>, ImageKind), MediaError> {
        match self {
            Self::Rgb(rgb) => encode_jpeg(rgb),
            Self::Rgba(rgba) => encode_png(rgba),
        }
    }
}

fn has_transparency(image: &RgbaImage) -> bool {
    image.pixels().any(|p| p[3] < u8::MAX)
}

// Fresh encoders write only pixels plus the format's mandatory headers (JFIF for JPEG): no
// EXIF, XMP, ICC profile, text chunk or comment from the upload can reach the output.

fn encode_failed(e: ImageError) -> MediaError {
    MediaError::Invalid(format!("re-encoding failed: {e}"))
}

fn encode_jpeg(image: &RgbImage) -> Result<(Vec<u8>, ImageKind), MediaError> {
    // jpeg-encoder (SIMD) is about four times faster than the `image` crate's encoder, which
    // alone would take half of the time budget of a photo.
    let side = |v: u32| {
        u16::try_from(v).map_err(|_| MediaError::Invalid(format!("side {v} is too long to encode")))
    };
    let mut out = Vec::with_capacity(image.as_raw().len() / 8);
    jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY)
        .encode(
            image.as_raw(),
            side(image.width())?,
            side(image.height())?,
            jpeg_encoder::ColorType::Rgb,
        )
        .map_err(|e| MediaError::Invalid(format!("re-encoding failed: {e}")))?;
    Ok((out, ImageKind::Jpeg))
}

fn encode_png(image: &RgbaImage) -> Result<(Vec<u8>, ImageKind), MediaError> {
    let mut out = Vec::with_capacity(image.as_raw().len() / 2);
    // fdeflate's fast mode: several times faster than zlib's default level, and the stored
    // copy is not where bytes are worth that time.
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgba8,
        )
        .map_err(encode_failed)?;
    Ok((out, ImageKind::Png))
}

/// A fixed-point area ("box with fractional edges") downscaler.
///
/// `image`'s own `resize` works in f32 and takes 300+ ms for 12 MP → 3 MP on one core here;
/// `thumbnail` takes ~140 ms. Area averaging is the right filter for downscaling photos (no
/// aliasing, no ringing), and with 8-bit weights it runs in 16-bit lanes that the compiler
/// vectorises with plain SSE2: ~16 ms for the same job.
mod resample {
    use image::RgbaImage;

    /// Weights are in 1/256ths and sum to exactly 256 per output sample, so an accumulator of
    /// `sum(w * p) + 128 <= 256 * 255 + 128` fits a `u16`.
    const ONE: u16 = 256;
    const HALF: u16 = 128;

    /// For each output sample: the first input sample and `taps` weights.
    struct Taps {
        start: Vec<usize>,
        taps: usize,
        weights: Vec<u16>,
    }

    impl Taps {
        fn new(src: u32, dst: u32) -> Self {
            let (src, dst) = (src.max(1) as usize, dst.max(1) as usize);
            let scale = src as f64 / dst as f64;
            // Output pixel i covers [i * scale, (i + 1) * scale) of the input.
            let taps = ((scale.ceil() as usize) + 1).min(src);
            let mut start = Vec::with_capacity(dst);
            let mut weights = vec![0u16; dst * taps];
            let mut coverage = vec![0f64; taps];
            for (i, w) in weights.chunks_exact_mut(taps).enumerate() {
                let from = i as f64 * scale;
                let to = from + scale;
                let first = (from.floor() as usize).min(src - taps);
                let mut total = 0.0;
                for (k, c) in coverage.iter_mut().enumerate() {
                    let j = (first + k) as f64;
                    *c = (to.min(j + 1.0) - from.max(j)).max(0.0);
                    total += *c;
                }
                let mut sum = 0u16;
                let mut largest = 0;
                for (k, (w, c)) in w.iter_mut().zip(&coverage).enumerate() {
                    *w = (c / total * f64::from(ONE)).round() as u16;
                    sum += *w;
                    if *c > coverage[largest] {
                        largest = k;
                    }
                }
                // Rounding leaves the total a little off 256: the largest tap absorbs it.
                w[largest] = (w[largest] + ONE).saturating_sub(sum);
                start.push(first);
            }
            Self {
                start,
                taps,
                weights,
            }
        }
    }

    /// Resamples interleaved `C`-channel 8-bit pixels from `sw`×`sh` to `dw`×`dh`
    /// (a downscale on both axes): per output row, a vertical pass into a row buffer that stays
    /// in cache, then a horizontal pass out of it.
    pub(super) fn area<const C: usize>(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Vec<u8> {
        let vertical = Taps::new(sh, dh);
        let horizontal = Taps::new(sw, dw);
        let row_len = sw as usize * C;
        let out_row_len = dw as usize * C;
        let mut row = vec![0u8; row_len];
        let mut acc = vec![0u16; row_len];
        let mut out = vec![0u8; out_row_len * dh as usize];
        let rows = vertical
            .start
            .iter()
            .zip(vertical.weights.chunks_exact(vertical.taps));
        for (out_row, (&first, weights)) in out.chunks_exact_mut(out_row_len).zip(rows) {
            let Some(window) = src.get(first * row_len..(first + vertical.taps) * row_len) else {
                continue;
            };
            vertical_pass(window, weights, &mut acc, &mut row);
            match horizontal.taps {
                2 => horizontal_pass::<2, C>(&row, &horizontal, out_row),
                3 => horizontal_pass::<3, C>(&row, &horizontal, out_row),
                4 => horizontal_pass::<4, C>(&row, &horizontal, out_row),
                5 => horizontal_pass::<5, C>(&row, &horizontal, out_row),
                _ => horizontal_pass_any::<C>(&row, &horizontal, out_row),
            }
        }
        out
    }

    /// One output row from `taps` input rows: a tap at a time into a `u16` accumulator row
    /// that stays in L1, which the compiler turns into plain SIMD.
    fn vertical_pass(window: &[u8], weights: &[u16], acc: &mut [u16], row: &mut [u8]) {
        acc.fill(HALF);
        for (input, &w) in window.chunks_exact(row.len()).zip(weights) {
            for (a, &p) in acc.iter_mut().zip(input) {
                *a += w * u16::from(p);
            }
        }
        for (out, &a) in row.iter_mut().zip(acc.iter()) {
            *out = (a >> 8) as u8;
        }
    }

    // The tap count is a const generic for the common ratios (up to 4:1) so the per-pixel
    // loops unroll; the `_any` version covers the rest.

    fn horizontal_pass<const N: usize, const C: usize>(row: &[u8], taps: &Taps, out: &mut [u8]) {
        let outputs = out.chunks_exact_mut(C).zip(taps.weights.chunks_exact(N));
        for ((pixel, weights), &first) in outputs.zip(&taps.start) {
            let Some(inputs) = row.get(first * C..(first + N) * C) else {
                continue;
            };
            let mut acc = [HALF; C];
            for (input, &w) in inputs.chunks_exact(C).zip(weights) {
                for c in 0..C {
                    acc[c] += w * u16::from(input[c]);
                }
            }
            for (o, a) in pixel.iter_mut().zip(acc) {
                *o = (a >> 8) as u8;
            }
        }
    }

    fn horizontal_pass_any<const C: usize>(row: &[u8], taps: &Taps, out: &mut [u8]) {
        let outputs = out
            .chunks_exact_mut(C)
            .zip(taps.weights.chunks_exact(taps.taps));
        for ((pixel, weights), &first) in outputs.zip(&taps.start) {
            let Some(inputs) = row.get(first * C..(first + taps.taps) * C) else {
                continue;
            };
            let mut acc = [HALF; C];
            for (input, &w) in inputs.chunks_exact(C).zip(weights) {
                for c in 0..C {
                    acc[c] += w * u16::from(input[c]);
                }
            }
            for (o, a) in pixel.iter_mut().zip(acc) {
                *o = (a >> 8) as u8;
            }
        }
    }

    pub(super) fn premultiply(image: &mut RgbaImage) {
        for p in image.pixels_mut() {
            let a = u16::from(p[3]);
            for c in 0..3 {
                p[c] = ((u16::from(p[c]) * a + 127) / 255) as u8;
            }
        }
    }

    pub(super) fn unpremultiply(image: &mut RgbaImage) {
        for p in image.pixels_mut() {
            let a = u32::from(p[3]);
            if a == 0 {
                p.0 = [0; 4];
                continue;
            }
            for c in 0..3 {
                p[c] = ((u32::from(p[c]) * 255 + a / 2) / a).min(255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use image::codecs::jpeg::JpegEncoder;
    use image::codecs::webp::WebPEncoder;
    use image::{GenericImageView, Rgb, Rgba};
    use proptest::prelude::*;

    use super::*;

    // -- fixtures, all generated here -------------------------------------------------------

    /// Smooth gradients, a bright disc and sensor-like noise: compresses like a photo.
    fn photo(width: u32, height: u32) -> RgbImage {
        let mut state = 0x2545_F491_u32;
        RgbImage::from_fn(width, height, |x, y| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state % 17) as i32 - 8;
            let fx = x as f32 / width as f32;
            let fy = y as f32 / height as f32;
            let disc = if (fx - 0.5).powi(2) + (fy - 0.45).powi(2) < 0.04 {
                60
            } else {
                0
            };
            let r = (fx * 180.0) as i32 + disc + noise;
            let g = (fy * 160.0 + 40.0 * (fx * 20.0).sin()) as i32 + disc / 2 + noise;
            let b = (120.0 + 80.0 * (fy * 13.0 + fx * 7.0).cos()) as i32 + noise;
            Rgb([
                r.clamp(0, 255) as u8,
                g.clamp(0, 255) as u8,
                b.clamp(0, 255) as u8,
            ])
        })
    }

    fn jpeg(image: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(image)
            .unwrap();
        out
    }

    fn png<P: image::PixelWithColorType<Subpixel = u8>>(image: &ImageBuffer<P>) -> Vec<u8> {
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(image.as_raw(), image.width(), image.height(), P::COLOR_TYPE)
            .unwrap();
        out
    }

    type ImageBuffer<P> = image::ImageBuffer<P, Vec<u8>>;

    fn webp_lossless(image: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        WebPEncoder::new_lossless(&mut out)
            .encode(
                image.as_raw(),
                image.width(),
                image.height(),
                ExtendedColorType::Rgb8,
            )
            .unwrap();
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn decode(bytes: &[u8]) -> DynamicImage {
        image::load_from_memory(bytes).unwrap()
    }

    #[test]
    fn a_16_bit_image_gets_the_memory_of_an_8_bit_one_not_twice_it() {
        let png = |image: DynamicImage| {
            let mut out = Cursor::new(Vec::new());
            image.write_to(&mut out, ImageFormat::Png).unwrap();
            out.into_inner()
        };
        // Half transparent, so that both decode to four channels; noise, so that the PNGs are
        // not trivially small.
        let noise = |x: u32, y: u32| (x.wrapping_mul(31) ^ y.wrapping_mul(17)) as u8;
        let deep = image::ImageBuffer::from_fn(1000, 1000, |x, y| {
            image::Rgba([u16::from(noise(x, y)) << 8, 0, 0, 0x7fff])
        });
        let shallow = RgbaImage::from_fn(1000, 1000, |x, y| image::Rgba([noise(x, y), 0, 0, 127]));
        // 1 MP at 4 bytes a pixel: the 8-bit image (4 MB) fits, the 16-bit one (8 MB) does not.
        let limits = small_limits();
        let err = normalize(&png(DynamicImage::ImageRgba16(deep)), &limits).unwrap_err();
        assert!(
            matches!(
                err,
                MediaError::TooLarge {
                    width: 1000,
                    height: 1000
                }
            ),
            "{err:?}"
        );
        normalize(&png(DynamicImage::ImageRgba8(shallow)), &limits).unwrap();
    }

    fn small_limits() -> Limits {
        Limits {
            max_pixels: 1_000_000,
            max_side: 2048,
            min_side: 1,
            store_max_side: 64,
            max_alloc_bytes: 64 * 1024 * 1024,
        }
    }

    /// A big-endian TIFF/EXIF block: IFD0 with ImageDescription, Orientation and a GPS IFD
    /// pointer; the GPS IFD with latitude and longitude (55°45'21"N 37°37'36"E).
    fn exif_tiff(orientation: u16) -> Vec<u8> {
        fn entry(out: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
            out.extend_from_slice(&tag.to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&count.to_be_bytes());
            out.extend_from_slice(&value);
        }
        const ASCII: u16 = 2;
        const SHORT: u16 = 3;
        const LONG: u16 = 4;
        const RATIONAL: u16 = 5;
        let description = b"SECRET-DESCRIPTION\0";
        let ifd0 = 8u32;
        let description_at = ifd0 + 2 + 3 * 12 + 4; // 50
        let gps_ifd = description_at + description.len() as u32 + 1; // word-aligned
        let latitude_at = gps_ifd + 2 + 4 * 12 + 4;
        let longitude_at = latitude_at + 24;

        let mut t = b"MM\0\x2A".to_vec();
        t.extend_from_slice(&ifd0.to_be_bytes());
        t.extend_from_slice(&3u16.to_be_bytes());
        entry(
            &mut t,
            0x010E,
            ASCII,
            description.len() as u32,
            description_at.to_be_bytes(),
        );
        let [o1, o2] = orientation.to_be_bytes();
        entry(&mut t, 0x0112, SHORT, 1, [o1, o2, 0, 0]);
        entry(&mut t, 0x8825, LONG, 1, gps_ifd.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        t.extend_from_slice(description);
        t.push(0);
        assert_eq!(t.len() as u32, gps_ifd);
        t.extend_from_slice(&4u16.to_be_bytes());
        entry(&mut t, 0x0001, ASCII, 2, *b"N\0\0\0");
        entry(&mut t, 0x0002, RATIONAL, 3, latitude_at.to_be_bytes());
        entry(&mut t, 0x0003, ASCII, 2, *b"E\0\0\0");
        entry(&mut t, 0x0004, RATIONAL, 3, longitude_at.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        for (num, den) in [
            (55u32, 1u32),
            (45, 1),
            (2100, 100),
            (37, 1),
            (37, 1),
            (3600, 100),
        ] {
            t.extend_from_slice(&num.to_be_bytes());
            t.extend_from_slice(&den.to_be_bytes());
        }
        t
    }

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    /// Splices EXIF (APP1), XMP (APP1) and a comment right after SOI.
    fn with_metadata(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut exif = b"Exif\0\0".to_vec();
        exif.extend_from_slice(&exif_tiff(orientation));
        let xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>SECRET-XMP</x:xmpmeta>";
        let mut out = jpeg[..2].to_vec();
        out.extend(segment(0xE1, &exif));
        out.extend(segment(0xE1, xmp));
        out.extend(segment(0xFE, b"SECRET-COMMENT"));
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        c.extend_from_slice(&crc32(&crc_input).to_be_bytes());
        c
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
        let mut out = PNG_SIGNATURE.to_vec();
        out.extend(png_chunk(b"IHDR", &ihdr));
        out
    }

    /// The smallest valid GIF: 1×1, one colour.
    const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

    /// A tiny stored ZIP archive holding `secret.txt`.
    fn zip() -> Vec<u8> {
        let mut z = b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
        z.extend_from_slice(&crc32(b"hi").to_le_bytes());
        z.extend_from_slice(&2u32.to_le_bytes());
        z.extend_from_slice(&2u32.to_le_bytes());
        z.extend_from_slice(&10u16.to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z.extend_from_slice(b"secret.txthi");
        z.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0\0\0\0\0\0\0\0\0\0\0");
        z
    }

    /// JPEG segments of the output: only APP0 (JFIF) is allowed before the frame.
    fn jpeg_markers(bytes: &[u8]) -> Vec<u8> {
        let mut markers = Vec::new();
        let mut at = 2;
        while let (Some(&0xFF), Some(&m)) = (bytes.get(at), bytes.get(at + 1)) {
            markers.push(m);
            if m == 0xDA {
                break;
            }
            at += 2 + be16(bytes, at + 2).unwrap() as usize;
        }
        markers
    }

    fn png_chunks(bytes: &[u8]) -> Vec<String> {
        let mut chunks = Vec::new();
        let mut at = 8;
        while let Some(len) = be32(bytes, at) {
            chunks.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
            at += 12 + len as usize;
        }
        chunks
    }

    fn assert_clean_output(out: &Normalized) {
        assert_eq!(out.sha256, sha256_hex(&out.bytes));
        assert_eq!(sniff(&out.bytes).unwrap().mime(), out.mime);
        match out.mime {
            "image/jpeg" => {
                let markers = jpeg_markers(&out.bytes);
                let app_or_comment = markers
                    .iter()
                    .filter(|&&m| (0xE0..=0xEF).contains(&m) || m == 0xFE)
                    .collect::<Vec<_>>();
                assert_eq!(app_or_comment, [&0xE0], "only JFIF APP0 in {markers:x?}");
            }
            "image/png" => {
                for chunk in png_chunks(&out.bytes) {
                    assert!(
                        ["IHDR", "IDAT", "IEND"].contains(&chunk.as_str()),
                        "chunk {chunk}"
                    );
                }
            }
            other => panic!("unexpected output type {other}"),
        }
        for needle in [
            &b"Exif"[..],
            b"SECRET",
            b"MM\0\x2A",
            b"II\x2A\0",
            b"xmpmeta",
            b"PK\x03\x04",
        ] {
            assert!(
                !contains(&out.bytes, needle),
                "{:?} survived",
                String::from_utf8_lossy(needle)
            );
        }
    }

    fn is_red(p: Rgb<u8>) -> bool {
        p[0] > 180 && p[1] < 80 && p[2] < 80
    }

    fn is_grey(p: Rgb<u8>) -> bool {
        p.0.iter().all(|&c| (100..160).contains(&c))
    }

    // -- the cases of the issue --------------------------------------------------------------

    #[test]
    fn jpeg_with_gps_and_orientation_6_is_stored_upright_without_metadata() {
        // 400×300, grey, with a red block in the top-left corner as stored by the camera.
        let stored = RgbImage::from_fn(400, 300, |x, y| {
            if x < 120 && y < 80 {
                Rgb([220, 20, 20])
            } else {
                Rgb([128, 128, 128])
            }
        });
        let upload = with_metadata(&jpeg(&stored), 6);
        assert!(contains(&upload, b"Exif\0\0") && contains(&upload, b"SECRET-COMMENT"));

        let out = normalize(&upload, &Limits::default()).unwrap();
        assert_eq!((out.width, out.height), (300, 400), "rotated 90° clockwise");
        assert_eq!(out.mime, "image/jpeg");
        assert_eq!(out.source, ImageKind::Jpeg);
        assert_clean_output(&out);

        // Orientation 6 = the camera was turned: rotating 90° clockwise puts the stored
        // top-left corner at the top-right.
        let shown = decode(&out.bytes).to_rgb8();
        assert_eq!(shown.dimensions(), (300, 400));
        assert!(
            is_red(*shown.get_pixel(280, 40)),
            "{:?}",
            shown.get_pixel(280, 40)
        );
        assert!(is_grey(*shown.get_pixel(20, 40)));
        assert!(is_grey(*shown.get_pixel(280, 380)));
        assert!(is_grey(*shown.get_pixel(20, 380)));
    }

    #[test]
    fn decode_for_processing_applies_the_orientation_too() {
        let upload = with_metadata(&jpeg(&photo(400, 300)), 6);
        let image = decode_for_processing(&upload, &Limits::default()).unwrap();
        assert_eq!(image.dimensions(), (300, 400));
    }

    #[test]
    fn png_with_alpha_stays_png_with_alpha() {
        // An item cut-out: opaque disc on a transparent background.
        let cutout = RgbaImage::from_fn(320, 300, |x, y| {
            let inside = (x as i32 - 160).pow(2) + (y as i32 - 150).pow(2) < 100 * 100;
            if inside {
                Rgba([200, 40, 90, 255])
            } else {
                Rgba([0, 0, 0, 0])
            }
        });
        let out = normalize(&png(&cutout), &Limits::default()).unwrap();
        assert_eq!(out.mime, "image/png");
        assert_eq!((out.width, out.height), (320, 300));
        assert_clean_output(&out);
        let back = decode(&out.bytes).to_rgba8();
        assert_eq!(back.get_pixel(5, 5)[3], 0);
        assert_eq!(*back.get_pixel(160, 150), Rgba([200, 40, 90, 255]));
    }

    #[test]
    fn downscaled_cutout_has_no_dark_fringe() {
        // Transparent pixels are black; straight averaging would darken the disc's edge.
        let cutout = RgbaImage::from_fn(3000, 2000, |x, y| {
            let inside = (x as i32 - 1500).pow(2) + (y as i32 - 1000).pow(2) < 800 * 800;
            if inside {
                Rgba([255, 255, 255, 255])
            } else {
                Rgba([0, 0, 0, 0])
            }
        });
        let out = normalize(&png(&cutout), &Limits::default()).unwrap();
        assert_eq!((out.mime, out.width, out.height), ("image/png", 2048, 1365));
        let back = decode(&out.bytes).to_rgba8();
        for p in back.pixels().filter(|p| p[3] > 0) {
            assert!(p[0] >= 250, "fringe pixel {p:?}");
        }
    }

    #[test]
    fn opaque_png_becomes_jpeg() {
        let opaque_rgba = RgbaImage::from_fn(300, 260, |x, y| Rgba([x as u8, y as u8, 7, 255]));
        let out = normalize(&png(&opaque_rgba), &Limits::default()).unwrap();
        assert_eq!((out.mime, out.width, out.height), ("image/jpeg", 300, 260));
        assert_eq!(out.source, ImageKind::Png);
        assert_clean_output(&out);

        let rgb = png(&photo(300, 260));
        let out = normalize(&rgb, &Limits::default()).unwrap();
        assert_eq!(out.mime, "image/jpeg");
    }

    #[test]
    fn webp_is_accepted() {
        let upload = webp_lossless(&photo(320, 280));
        assert_eq!(sniff(&upload).unwrap(), ImageKind::Webp);
        assert_eq!(probe(&upload, ImageKind::Webp).unwrap(), (320, 280));
        let out = normalize(&upload, &Limits::default()).unwrap();
        assert_eq!(
            (out.source, out.mime, out.width, out.height),
            (ImageKind::Webp, "image/jpeg", 320, 280)
        );
        assert_clean_output(&out);
    }

    #[test]
    fn one_pixel_image_is_too_small() {
        let err = normalize(&png(&photo(1, 1)), &Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                MediaError::TooSmall {
                    width: 1,
                    height: 1
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), "image_too_small");
        // The short side decides.
        let err = normalize(&png(&photo(1000, 255)), &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "image_too_small");
    }

    #[test]
    fn html_renamed_png_is_unsupported() {
        let html = b"<!DOCTYPE html>\n<html><body><script>alert(1)</script></body></html>";
        let err = normalize(html, &Limits::default()).unwrap_err();
        assert!(
            matches!(&err, MediaError::Unsupported { detected: Some(d) } if d == "text/html"),
            "{err:?}"
        );
        assert_eq!(err.code(), "unsupported_media_type");
    }

    #[test]
    fn gif_is_unsupported_and_named() {
        let err = normalize(GIF, &Limits::default()).unwrap_err();
        assert!(
            matches!(&err, MediaError::Unsupported { detected: Some(d) } if d == "image/gif"),
            "{err:?}"
        );
        assert!(err.to_string().contains("image/gif"));
    }

    #[test]
    fn other_types_are_unsupported() {
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\0";
        let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"300\" height=\"300\"/>";
        let pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n";
        let cases: [(&str, &[u8], Option<&str>); 5] = [
            ("heic", heic, Some("image/heif")),
            ("svg", svg, None),
            ("pdf", pdf, Some("application/pdf")),
            ("zip", &zip(), Some("application/zip")),
            ("empty", b"", None),
        ];
        for (name, bytes, expected) in cases {
            match normalize(bytes, &Limits::default()) {
                Err(MediaError::Unsupported { detected }) => {
                    assert_eq!(detected.as_deref(), expected, "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn png_header_followed_by_zip_is_invalid() {
        let mut polyglot = png_header(300, 300);
        polyglot.extend(zip());
        let err = normalize(&polyglot, &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "invalid_image", "{err:?}");
    }

    #[test]
    fn zip_hidden_in_a_valid_png_does_not_survive() {
        // Appended after IEND (the classic polyglot) and in a private chunk before IDAT.
        let mut appended = png(&photo(300, 300));
        appended.extend(zip());
        let mut cutout = RgbaImage::from_pixel(300, 300, Rgba([10, 200, 30, 255]));
        cutout.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
        let clean = png(&cutout);
        let ihdr_end = 8 + 25;
        let mut chunked = clean[..ihdr_end].to_vec();
        chunked.extend(png_chunk(b"zpKx", &zip()));
        chunked.extend_from_slice(&clean[ihdr_end..]);

        for (upload, mime) in [(appended, "image/jpeg"), (chunked, "image/png")] {
            assert!(contains(&upload, b"PK\x03\x04"));
            let out = normalize(&upload, &Limits::default()).unwrap();
            assert_eq!(out.mime, mime);
            assert_clean_output(&out);
        }
    }

    #[test]
    fn png_bomb_is_refused_from_the_header() {
        let mut bomb = png_header(60_000, 60_000);
        bomb.extend(png_chunk(
            b"IDAT",
            &[0x78, 0x9C, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        ));
        bomb.extend(png_chunk(b"IEND", &[]));
        let started = Instant::now();
        let err = normalize(&bomb, &Limits::default()).unwrap_err();
        let took = started.elapsed();
        // Decoding the bogus IDAT would have failed as `Invalid`: `TooLarge` with the header's
        // numbers means we stopped at the header, before any decoder or pixel buffer existed.
        assert!(
            matches!(
                err,
                MediaError::TooLarge {
                    width: 60_000,
                    height: 60_000
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), "image_too_large");
        assert!(took < Duration::from_millis(100), "took {took:?}");
    }

    #[test]
    fn jpeg_and_webp_bombs_are_refused_from_the_header() {
        // SOF0 declaring 65000×65000, and a VP8X canvas of 16384×16384.
        let mut jpeg_bomb = vec![0xFF, 0xD8];
        jpeg_bomb.extend(segment(0xC0, &[8, 0xFD, 0xE8, 0xFD, 0xE8, 1, 1, 0x11, 0]));
        jpeg_bomb.extend([0xFF, 0xD9]);
        let mut webp_bomb = b"RIFF\x16\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        webp_bomb.extend([0xFF, 0x3F, 0x00, 0xFF, 0x3F, 0x00]);
        for (bomb, side) in [(jpeg_bomb, 65_000), (webp_bomb, 16_384)] {
            let started = Instant::now();
            let err = normalize(&bomb, &Limits::default()).unwrap_err();
            assert!(started.elapsed() < Duration::from_millis(100));
            assert!(
                matches!(err, MediaError::TooLarge { width, height } if width == side && height == side),
                "{err:?}"
            );
        }
    }

    #[test]
    fn decoder_allocation_cap_holds_even_when_the_size_rules_allow_the_image() {
        // With the size rules opened up, the decoder's own limit still refuses to allocate
        // 20000×20000×3 bytes.
        let limits = Limits {
            max_pixels: u64::MAX,
            max_side: u32::MAX,
            max_alloc_bytes: 64 * 1024 * 1024,
            ..Limits::default()
        };
        let mut bomb = png_header(20_000, 20_000);
        bomb.extend(png_chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00]));
        bomb.extend(png_chunk(b"IEND", &[]));
        let started = Instant::now();
        let err = normalize(&bomb, &limits).unwrap_err();
        assert!(matches!(err, MediaError::TooLarge { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn truncated_images_are_invalid() {
        let whole = jpeg(&photo(400, 300));
        for cut in [whole.len() - 2, whole.len() / 2, 700] {
            let err = normalize(&whole[..cut], &Limits::default()).unwrap_err();
            assert_eq!(err.code(), "invalid_image", "cut at {cut}: {err:?}");
        }
        // Cut inside the header, too.
        assert_eq!(
            normalize(&whole[..100], &Limits::default())
                .unwrap_err()
                .code(),
            "invalid_image"
        );
        let whole = png(&photo(300, 300));
        let err = normalize(&whole[..whole.len() / 2], &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "invalid_image");
        let whole = webp_lossless(&photo(300, 300));
        let err = normalize(&whole[..whole.len() / 2], &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "invalid_image");
    }

    #[test]
    fn a_truncated_main_image_is_caught_despite_a_complete_exif_thumbnail() {
        // An EXIF thumbnail brings its own SOS and EOI inside APP1.
        let thumbnail = jpeg(&photo(16, 16));
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&exif_tiff(1));
        app1.extend_from_slice(&thumbnail);
        let whole = jpeg(&photo(400, 300));
        let mut upload = whole[..2].to_vec();
        upload.extend(segment(0xE1, &app1));
        upload.extend_from_slice(&whole[2..whole.len() / 2]);
        assert_eq!(
            normalize(&upload, &Limits::default()).unwrap_err().code(),
            "invalid_image"
        );
    }

    #[test]
    fn big_photo_is_downscaled_to_the_store_size() {
        let upload = jpeg(&photo(4000, 3000));
        let out = normalize(&upload, &Limits::default()).unwrap();
        assert_eq!(
            (out.width, out.height, out.mime),
            (2048, 1536, "image/jpeg")
        );
        assert_eq!(out.sha256.len(), 64);
        assert_eq!(out.sha256, sha256_hex(&out.bytes));
        assert_clean_output(&out);
        let back = decode(&out.bytes);
        assert_eq!(back.dimensions(), (2048, 1536));
        // Same picture: the centre of the bright disc is still where it was.
        let centre = back.to_rgb8();
        let p = centre.get_pixel(1024, 691);
        assert!(p[0] > 120, "{p:?}");
    }

    #[test]
    fn portrait_upload_is_downscaled_on_its_long_side() {
        let upload = png(&photo(1000, 2600));
        let out = normalize(&upload, &Limits::default()).unwrap();
        assert_eq!((out.width, out.height), (788, 2048));
    }

    #[test]
    fn same_upload_same_hash() {
        let upload = jpeg(&photo(300, 300));
        let a = normalize(&upload, &Limits::default()).unwrap();
        let b = normalize(&upload, &Limits::default()).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a, b);
    }

    #[test]
    fn debug_output_does_not_dump_the_photo() {
        let out = normalize(&jpeg(&photo(300, 300)), &Limits::default()).unwrap();
        let debug = format!("{out:?}");
        assert!(debug.contains(&format!("<{} bytes>", out.bytes.len())));
        assert!(debug.len() < 300);
    }

    #[test]
    fn encode_picks_png_only_for_real_transparency() {
        let opaque = DynamicImage::ImageRgba8(RgbaImage::from_pixel(40, 30, Rgba([1, 2, 3, 255])));
        assert_eq!(encode(&opaque).unwrap().1, ImageKind::Jpeg);
        let mut see_through = RgbaImage::from_pixel(40, 30, Rgba([1, 2, 3, 255]));
        see_through.put_pixel(3, 3, Rgba([1, 2, 3, 254]));
        let (bytes, kind) = encode(&DynamicImage::ImageRgba8(see_through)).unwrap();
        assert_eq!(
            (kind, kind.mime(), kind.extension()),
            (ImageKind::Png, "image/png", "png")
        );
        assert_eq!(decode(&bytes).dimensions(), (40, 30));
        let grey16 = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(
            40,
            30,
            image::Luma([40_000u16]),
        ));
        assert_eq!(encode(&grey16).unwrap().1, ImageKind::Jpeg);
    }

    #[test]
    fn fit_within_keeps_the_aspect_ratio() {
        assert_eq!(fit_within(4000, 3000, 2048), (2048, 1536));
        assert_eq!(fit_within(3000, 4000, 2048), (1536, 2048));
        assert_eq!(fit_within(2048, 100, 2048), (2048, 100));
        assert_eq!(fit_within(8192, 256, 2048), (2048, 64));
        assert_eq!(fit_within(8192, 1, 2048), (2048, 1));
        assert_eq!(fit_within(10, 10, 0), (1, 1));
    }

    #[test]
    fn downscale_preserves_flat_colours_and_handles_large_ratios() {
        let flat = DynamicImage::ImageRgb8(RgbImage::from_pixel(8000, 300, Rgb([17, 128, 250])));
        let small = downscale(flat, 100).to_rgb8();
        assert_eq!(small.dimensions(), (100, 4));
        assert!(small.pixels().all(|p| *p == Rgb([17, 128, 250])));
    }

    #[test]
    fn probe_reads_every_header() {
        assert_eq!(
            probe(&jpeg(&photo(33, 17)), ImageKind::Jpeg).unwrap(),
            (33, 17)
        );
        assert_eq!(
            probe(&png(&photo(33, 17)), ImageKind::Png).unwrap(),
            (33, 17)
        );
        assert_eq!(
            probe(&webp_lossless(&photo(33, 17)), ImageKind::Webp).unwrap(),
            (33, 17)
        );
        assert_eq!(
            probe(b"\x89PNG\r\n\x1a\n", ImageKind::Png)
                .unwrap_err()
                .code(),
            "invalid_image"
        );
    }

    // -- never panics ------------------------------------------------------------------------

    fn seeds() -> Vec<Vec<u8>> {
        let mut alpha =
            RgbaImage::from_fn(48, 40, |x, y| Rgba([x as u8 * 5, y as u8 * 6, 90, 200]));
        alpha.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
        vec![
            with_metadata(&jpeg(&photo(48, 40)), 6),
            png(&alpha),
            webp_lossless(&photo(48, 40)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn normalize_never_panics_on_arbitrary_bytes(
            magic in prop::sample::select(vec![
                &b""[..], b"\xFF\xD8\xFF", b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", b"RIFF\0\0\0\0WEBPVP8 ",
                b"RIFF\0\0\0\0WEBPVP8L", b"RIFF\0\0\0\0WEBPVP8X",
            ]),
            tail in prop::collection::vec(any::<u8>(), 0..2048),
        ) {
            let mut bytes = magic.to_vec();
            bytes.extend(tail);
            let _ = normalize(&bytes, &small_limits());
            let _ = normalize(&bytes, &Limits::default());
        }

        #[test]
        fn normalize_never_panics_on_mutated_images(
            seed in 0usize..3,
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
            cut in prop::option::of(any::<prop::sample::Index>()),
        ) {
            let mut bytes = seeds().swap_remove(seed);
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len()));
            }
            if let Ok(out) = normalize(&bytes, &small_limits()) {
                prop_assert_eq!(out.sha256, sha256_hex(&out.bytes));
                prop_assert!(out.width.max(out.height) <= 64);
            }
        }
    }
}
