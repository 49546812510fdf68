//! Thumbnails: scaled or cropped copies of uploaded images, in a few standard sizes.
//!
//! Requested sizes snap to the spec's suggested set (32×32 and 96×96 crop, 320×240, 640×480 and
//! 800×600 scale): the smallest standard thumbnail at least as large as asked for, so an attacker
//! cannot fill the store with arbitrary sizes. A request larger than every standard size, an
//! image already small enough, an animated format (GIF, so animations keep playing) or anything
//! the decoder refuses gets the original file instead. Decoding is bounded (16384 px per side,
//! 256 MiB of pixels), runs on a blocking thread, two at a time at most. JPEG sources give JPEG
//! thumbnails; everything else gives PNG (keeps transparency). Thumbnails are cached in
//! `media_thumbnails`.

use std::io::Cursor;

use image::{imageops::FilterType, DynamicImage, ImageFormat, ImageReader, Limits};

/// How a thumbnail fits its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Keep the aspect ratio, fit inside the box.
    Scale,
    /// Fill the box exactly, cropping what sticks out.
    Crop,
}

impl Method {
    /// Parses the `method` query parameter (anything but `crop` is `scale`, the spec default).
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("crop") => Self::Crop,
            _ => Self::Scale,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Self::Scale => "scale",
            Self::Crop => "crop",
        }
    }
}

/// A standard thumbnail size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Scale or crop.
    pub method: Method,
}

impl Size {
    /// A cache key part: `96x96-crop`.
    pub fn key(&self) -> String {
        format!("{}x{}-{}", self.width, self.height, self.method.tag())
    }
}

/// The standard sizes, smallest first.
pub const SIZES: [Size; 5] = [
    Size {
        width: 32,
        height: 32,
        method: Method::Crop,
    },
    Size {
        width: 96,
        height: 96,
        method: Method::Crop,
    },
    Size {
        width: 320,
        height: 240,
        method: Method::Scale,
    },
    Size {
        width: 640,
        height: 480,
        method: Method::Scale,
    },
    Size {
        width: 800,
        height: 600,
        method: Method::Scale,
    },
];

/// The standard size to serve for a request, or `None` to serve the original. Crop requests
/// prefer crop sizes, then fall back to scale sizes.
pub fn choose(width: u32, height: u32, method: Method) -> Option<Size> {
    let fits = |s: &&Size| s.width >= width && s.height >= height;
    let preferred = SIZES.iter().filter(|s| s.method == method).find(fits);
    preferred
        .or_else(|| {
            SIZES
                .iter()
                .filter(|s| s.method == Method::Scale)
                .find(fits)
        })
        .copied()
}

/// An encoded thumbnail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// `image/png` or `image/jpeg`.
    pub content_type: String,
    /// The encoded image.
    pub data: Vec<u8>,
}

impl Thumbnail {
    /// Storage form: content type, a zero byte, the data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.content_type.len() + 1 + self.data.len());
        out.extend_from_slice(self.content_type.as_bytes());
        out.push(0);
        out.extend_from_slice(&self.data);
        out
    }

    /// Reads the storage form.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let split = bytes.iter().position(|b| *b == 0)?;
        Some(Self {
            content_type: String::from_utf8(bytes[..split].to_vec()).ok()?,
            data: bytes[split + 1..].to_vec(),
        })
    }
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(16384);
    l.max_image_height = Some(16384);
    l.max_alloc = Some(256 * 1024 * 1024);
    l
}

/// Makes the thumbnail of `data` at `size`; `None` means "serve the original" (not decodable,
/// animated, or already no larger than the box). CPU-heavy: call from a blocking thread.
pub fn make(data: &[u8], size: Size) -> Option<Thumbnail> {
    let mut reader = ImageReader::new(Cursor::new(data))
        .with_guessed_format()
        .ok()?;
    let format = reader.format()?;
    if format == ImageFormat::Gif {
        return None;
    }
    reader.limits(limits());
    let (w, h) = reader.into_dimensions().ok()?;
    if w <= size.width && h <= size.height {
        return None;
    }
    let mut reader = ImageReader::new(Cursor::new(data))
        .with_guessed_format()
        .ok()?;
    reader.limits(limits());
    let img = match reader.decode() {
        Ok(img) => img,
        Err(e) => {
            tracing::debug!(error = %e, "cannot decode image for a thumbnail");
            return None;
        }
    };
    let thumb = match size.method {
        Method::Scale => img.thumbnail(size.width, size.height),
        Method::Crop => img.resize_to_fill(size.width, size.height, FilterType::Triangle),
    };
    let mut out = Vec::new();
    let content_type = if format == ImageFormat::Jpeg {
        let rgb = DynamicImage::ImageRgb8(thumb.to_rgb8());
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
        rgb.write_with_encoder(encoder).ok()?;
        "image/jpeg"
    } else {
        thumb
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .ok()?;
        "image/png"
    };
    Some(Thumbnail {
        content_type: content_type.to_owned(),
        data: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w`×`h` test image encoded as `format`.
    pub fn image_bytes(w: u32, h: u32, format: ImageFormat) -> Vec<u8> {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        }));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), format)
            .expect("encode");
        out
    }

    fn dims(data: &[u8]) -> (u32, u32) {
        ImageReader::new(Cursor::new(data))
            .with_guessed_format()
            .expect("format")
            .into_dimensions()
            .expect("dims")
    }

    #[test]
    fn sizes_snap_to_standard_ones() {
        assert_eq!(choose(32, 32, Method::Crop), Some(SIZES[0]));
        assert_eq!(choose(40, 40, Method::Crop), Some(SIZES[1]));
        assert_eq!(choose(200, 100, Method::Crop), Some(SIZES[2]));
        assert_eq!(choose(1, 1, Method::Scale), Some(SIZES[2]));
        assert_eq!(choose(700, 500, Method::Scale), Some(SIZES[4]));
        assert_eq!(choose(801, 10, Method::Scale), None);
    }

    #[test]
    fn png_scale_and_crop() {
        let png = image_bytes(1000, 500, ImageFormat::Png);
        let t = make(&png, SIZES[2]).expect("thumbnail");
        assert_eq!(t.content_type, "image/png");
        assert_eq!(dims(&t.data), (320, 160));
        let t = make(&png, SIZES[1]).expect("thumbnail");
        assert_eq!(dims(&t.data), (96, 96));
        let back = Thumbnail::from_bytes(&t.to_bytes()).expect("roundtrip");
        assert_eq!(back, t);
    }

    #[test]
    fn jpeg_stays_jpeg_small_and_bad_images_are_originals() {
        let jpg = image_bytes(400, 400, ImageFormat::Jpeg);
        let t = make(&jpg, SIZES[1]).expect("thumbnail");
        assert_eq!(t.content_type, "image/jpeg");
        assert_eq!(dims(&t.data), (96, 96));
        // Already small enough: original.
        assert_eq!(make(&image_bytes(20, 20, ImageFormat::Png), SIZES[0]), None);
        // Not an image.
        assert_eq!(make(b"definitely not a png", SIZES[0]), None);
        // GIF keeps its animation.
        assert_eq!(
            make(&image_bytes(200, 200, ImageFormat::Gif), SIZES[0]),
            None
        );
    }
}
