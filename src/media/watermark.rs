//! The visible mark on free-tier results: "ATELIER" in spaced capitals on a rounded,
//! translucent dark label in the bottom-right corner.
//!
//! The label is sized from the image's short side, drawn from a tiny embedded bitmap font with
//! 4×4 supersampled edges, and alpha-blended rather than pasted: the dark plate lifts the white
//! letters off bright photos, the letters stand out on dark ones, and the photo shows through.
//! Pure code; pixels outside [`mark_box`] are never written.

use image::{DynamicImage, ImageBuffer, Pixel};

/// The rectangle the mark occupies, in pixels. Nothing outside it is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl MarkBox {
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x && y >= self.y && x - self.x < self.width && y - self.y < self.height
    }
}

const WORD: &[u8] = b"ATELIER";

/// Glyph rows, `#` = ink. Only the letters of [`WORD`]; 5×7 except a 3-wide I.
type Glyph = [&'static str; GLYPH_ROWS];
const GLYPH_ROWS: usize = 7;
const GLYPH_A: Glyph = [
    ".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#",
];
const GLYPH_T: Glyph = [
    "#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#..",
];
const GLYPH_E: Glyph = [
    "#####", "#....", "#....", "####.", "#....", "#....", "#####",
];
const GLYPH_L: Glyph = [
    "#....", "#....", "#....", "#....", "#....", "#....", "#####",
];
const GLYPH_I: Glyph = ["###", ".#.", ".#.", ".#.", ".#.", ".#.", "###"];
const GLYPH_R: Glyph = [
    "####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#",
];

fn glyph(letter: u8) -> Option<&'static Glyph> {
    match letter {
        b'A' => Some(&GLYPH_A),
        b'T' => Some(&GLYPH_T),
        b'E' => Some(&GLYPH_E),
        b'L' => Some(&GLYPH_L),
        b'I' => Some(&GLYPH_I),
        b'R' => Some(&GLYPH_R),
        _ => None,
    }
}

fn glyph_width(g: &Glyph) -> f32 {
    g[0].len() as f32
}

// Geometry in font units (one glyph cell). Spaced capitals read as a brand, not a stamp.
const TRACKING: f32 = 1.5;
const PAD_X: f32 = 3.0;
const PAD_Y: f32 = 2.5;
const MARGIN: f32 = 2.5;
/// The short side divided by this is the unit: on 2048×1536 a label of about 330×80 px.
const UNITS_PER_SHORT_SIDE: f32 = 240.0;
/// Below two pixels per unit the letters stop being legible; on small images the label is
/// therefore relatively larger rather than unreadable.
const MIN_UNIT: f32 = 2.0;
/// Smallest unit we still draw when even `MIN_UNIT` does not fit (tiny images).
const FLOOR_UNIT: f32 = 1.0;

const PLATE_ALPHA: f32 = 0.42;
const TEXT_ALPHA: f32 = 0.92;
const SUPERSAMPLE: u32 = 4;

fn text_width_units() -> f32 {
    let letters: f32 = WORD.iter().filter_map(|&c| glyph(c)).map(glyph_width).sum();
    letters + TRACKING * (WORD.len().saturating_sub(1)) as f32
}

/// Layout for one image size.
struct Layout {
    bounds: MarkBox,
    unit: f32,
    /// Top-left of the text in pixels (fractional).
    text_x: f32,
    text_y: f32,
    radius: f32,
}

fn layout(width: u32, height: u32) -> Option<Layout> {
    let label_w_units = text_width_units() + 2.0 * PAD_X;
    let label_h_units = GLYPH_ROWS as f32 + 2.0 * PAD_Y;
    let (w, h) = (width as f32, height as f32);
    let fits_w = w / (label_w_units + 2.0 * MARGIN);
    let fits_h = h / (label_h_units + 2.0 * MARGIN);
    let unit = (w.min(h) / UNITS_PER_SHORT_SIDE)
        .max(MIN_UNIT)
        .min(fits_w)
        .min(fits_h);
    if unit < FLOOR_UNIT {
        return None;
    }
    let label_w = (label_w_units * unit).ceil();
    let label_h = (label_h_units * unit).ceil();
    let margin = (MARGIN * unit).round();
    let x = w - margin - label_w;
    let y = h - margin - label_h;
    if x < 0.0 || y < 0.0 {
        return None;
    }
    // All values are small non-negative integers by now (bounded by the image size).
    let bounds = MarkBox {
        x: x as u32,
        y: y as u32,
        width: label_w as u32,
        height: label_h as u32,
    };
    Some(Layout {
        bounds,
        unit,
        text_x: x + (label_w - text_width_units() * unit) / 2.0,
        text_y: y + (label_h - GLYPH_ROWS as f32 * unit) / 2.0,
        radius: label_h * 0.3,
    })
}

/// Where [`apply`] would draw on a `width`×`height` image; `None` when the image is too
/// small to carry a legible mark (under about 60 px wide), in which case nothing is drawn.
pub fn mark_box(width: u32, height: u32) -> Option<MarkBox> {
    layout(width, height).map(|l| l.bounds)
}

impl Layout {
    /// Is the point (in pixels) inside the rounded plate?
    fn in_plate(&self, px: f32, py: f32) -> bool {
        let b = &self.bounds;
        let (x0, y0) = (b.x as f32, b.y as f32);
        let (x1, y1) = (x0 + b.width as f32, y0 + b.height as f32);
        let r = self.radius;
        // Distance to the inner rectangle shrunk by the radius.
        let dx = (x0 + r - px).max(px - (x1 - r)).max(0.0);
        let dy = (y0 + r - py).max(py - (y1 - r)).max(0.0);
        px >= x0 && px < x1 && py >= y0 && py < y1 && dx * dx + dy * dy <= r * r
    }

    /// Is the point (in pixels) on a letter stroke?
    fn in_text(&self, px: f32, py: f32) -> bool {
        let u = (px - self.text_x) / self.unit;
        let v = (py - self.text_y) / self.unit;
        if u < 0.0 || v < 0.0 || v >= GLYPH_ROWS as f32 {
            return false;
        }
        let row = v as usize;
        let mut left = 0.0;
        for g in WORD.iter().filter_map(|&c| glyph(c)) {
            let gw = glyph_width(g);
            if u < left {
                return false; // in the tracking gap
            }
            if u < left + gw {
                let col = (u - left) as usize;
                return g
                    .get(row)
                    .and_then(|r| r.as_bytes().get(col))
                    .is_some_and(|&b| b == b'#');
            }
            left += gw + TRACKING;
        }
        false
    }

    /// Plate and text coverage of one pixel, each in 0..=1.
    fn coverage(&self, x: u32, y: u32) -> (f32, f32) {
        let n = SUPERSAMPLE;
        let (mut plate, mut text) = (0u32, 0u32);
        for j in 0..n {
            for i in 0..n {
                let px = x as f32 + (i as f32 + 0.5) / n as f32;
                let py = y as f32 + (j as f32 + 0.5) / n as f32;
                if self.in_plate(px, py) {
                    plate += 1;
                    if self.in_text(px, py) {
                        text += 1;
                    }
                }
            }
        }
        let total = (n * n) as f32;
        (plate as f32 / total, text as f32 / total)
    }
}

/// Draws the mark on an 8-bit image of any pixel type (`RgbaImage`, `RgbImage`, `GrayImage`,
/// ...) and returns where. Images with an alpha channel get the mark composited "over" them,
/// so it also shows on transparent areas.
pub fn apply<P>(image: &mut ImageBuffer<P, Vec<u8>>) -> Option<MarkBox>
where
    P: Pixel<Subpixel = u8>,
{
    let layout = layout(image.width(), image.height())?;
    let b = layout.bounds;
    for y in b.y..b.y + b.height {
        for x in b.x..b.x + b.width {
            let (plate, text) = layout.coverage(x, y);
            if plate == 0.0 {
                continue;
            }
            // The mark as one premultiplied layer: white text over a black plate.
            let text_a = TEXT_ALPHA * text;
            let mark_a = text_a + PLATE_ALPHA * plate * (1.0 - text_a);
            let mark_c = 255.0 * text_a;
            blend(image.get_pixel_mut(x, y), mark_c, mark_a);
        }
    }
    Some(b)
}

/// [`apply`] for a `DynamicImage`: 8-bit RGB(A) and grey images are marked in place, others
/// (16-bit, float) are converted to RGBA8 first.
pub fn apply_dynamic(image: &mut DynamicImage) -> Option<MarkBox> {
    match image {
        DynamicImage::ImageRgb8(i) => apply(i),
        DynamicImage::ImageRgba8(i) => apply(i),
        DynamicImage::ImageLuma8(i) => apply(i),
        DynamicImage::ImageLumaA8(i) => apply(i),
        other => {
            let mut rgba = other.to_rgba8();
            let bounds = apply(&mut rgba);
            *other = DynamicImage::ImageRgba8(rgba);
            bounds
        }
    }
}

/// Porter-Duff "over" of a grey premultiplied colour `mark_c` (0..=255) with alpha `mark_a`.
fn blend<P: Pixel<Subpixel = u8>>(pixel: &mut P, mark_c: f32, mark_a: f32) {
    let channels = pixel.channels_mut();
    let keep = 1.0 - mark_a;
    if P::HAS_ALPHA {
        let Some((alpha, colour)) = channels.split_last_mut() else {
            return;
        };
        let dst_a = f32::from(*alpha) / 255.0;
        let out_a = mark_a + dst_a * keep;
        if out_a <= 0.0 {
            return;
        }
        for c in colour {
            *c = to_u8((mark_c + f32::from(*c) * dst_a * keep) / out_a);
        }
        *alpha = to_u8(out_a * 255.0);
    } else {
        for c in channels {
            *c = to_u8(mark_c + f32::from(*c) * keep);
        }
    }
}

fn to_u8(v: f32) -> u8 {
    // Clamped first, so the cast cannot truncate.
    v.round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};

    use super::*;

    fn noise(width: u32, height: u32) -> RgbImage {
        let mut state = 0x9E37_79B9_u32;
        RgbImage::from_fn(width, height, |_, _| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let [r, g, b, _] = state.to_le_bytes();
            Rgb([r, g, b])
        })
    }

    fn luma(p: &Rgb<u8>) -> f32 {
        0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
    }

    /// Applies the mark and checks that nothing outside the returned box changed and, on a
    /// photo (where even the plate alters every pixel), that most of the box did.
    fn apply_and_check(before: &RgbImage) -> (RgbImage, MarkBox) {
        let mut after = before.clone();
        let bounds = apply(&mut after).unwrap();
        assert_eq!(Some(bounds), mark_box(before.width(), before.height()));
        assert!(bounds.x + bounds.width <= before.width());
        assert!(bounds.y + bounds.height <= before.height());
        let mut changed_inside = 0u32;
        for (x, y, p) in after.enumerate_pixels() {
            if bounds.contains(x, y) {
                changed_inside += u32::from(p != before.get_pixel(x, y));
            } else {
                assert_eq!(
                    p,
                    before.get_pixel(x, y),
                    "pixel ({x}, {y}) outside {bounds:?}"
                );
            }
        }
        let is_black = before.pixels().all(|p| p.0 == [0; 3]);
        if !is_black {
            // All but the rounded corners.
            assert!(
                changed_inside * 10 > bounds.width * bounds.height * 9,
                "{changed_inside}"
            );
        }
        // On black only the letters show, and they must.
        assert!(
            changed_inside * 10 > bounds.width * bounds.height,
            "{changed_inside}"
        );
        (after, bounds)
    }

    #[test]
    fn changes_pixels_only_inside_its_box() {
        let (_, bounds) = apply_and_check(&noise(640, 480));
        // Bottom-right corner, off the edges.
        assert!(bounds.x > 320 && bounds.y > 240);
        assert!(bounds.x + bounds.width < 640 && bounds.y + bounds.height < 480);
    }

    #[test]
    fn box_scales_with_the_image() {
        let sizes = [
            (256, 256),
            (512, 384),
            (1024, 768),
            (2048, 1536),
            (4096, 3072),
        ];
        let boxes: Vec<MarkBox> = sizes
            .iter()
            .map(|&(w, h)| mark_box(w, h).unwrap())
            .collect();
        for pair in boxes.windows(2) {
            assert!(pair[1].width >= pair[0].width && pair[1].height >= pair[0].height);
        }
        // Proportional once above the legibility floor: doubling the image doubles the mark.
        let (b2048, b4096) = (boxes[3], boxes[4]);
        let ratio = f64::from(b4096.width) / f64::from(b2048.width);
        assert!((1.9..2.1).contains(&ratio), "{ratio}");
        // Discreet on a stored photo: under a fifth of the width, ~5% of the height.
        assert!(
            b2048.width < 2048 / 5 && b2048.height < 1536 / 15,
            "{b2048:?}"
        );
        // Legible on a thumbnail: letters at least 2 px per font unit, 14 px tall.
        let b256 = boxes[0];
        assert!(b256.height >= 24 && b256.width < 256 / 2, "{b256:?}");
    }

    #[test]
    fn works_on_tiny_and_large_images() {
        for (w, h) in [(256, 256), (300, 256), (2048, 1536), (1536, 2048)] {
            apply_and_check(&noise(w, h));
        }
        // Too small to carry a legible mark: left alone rather than smudged.
        for (w, h) in [(40, 40), (1, 1), (0, 0), (2000, 10)] {
            let mut tiny = RgbImage::from_pixel(w, h, Rgb([9, 9, 9]));
            assert_eq!(apply(&mut tiny), None);
            assert!(tiny.pixels().all(|p| *p == Rgb([9, 9, 9])));
        }
    }

    #[test]
    fn visible_on_white_and_on_black() {
        for background in [255u8, 0] {
            let before = RgbImage::from_pixel(512, 512, Rgb([background; 3]));
            let (after, b) = apply_and_check(&before);
            let inside: Vec<f32> = after
                .enumerate_pixels()
                .filter(|(x, y, _)| b.contains(*x, *y))
                .map(|(_, _, p)| luma(p))
                .collect();
            let max = inside.iter().copied().fold(0.0, f32::max);
            let min = inside.iter().copied().fold(255.0, f32::min);
            // Letters against plate: a clear step in luminance on either background.
            assert!(max - min > 80.0, "background {background}: {min}..{max}");
            // White letters are on the plate and cover a real share of it.
            let bright = inside.iter().filter(|&&l| l > 200.0).count();
            let share = bright as f32 / inside.len() as f32;
            assert!(
                (0.08..0.5).contains(&share),
                "background {background}: {share}"
            );
            let mean_change = inside
                .iter()
                .map(|l| (l - f32::from(background)).abs())
                .sum::<f32>()
                / inside.len() as f32;
            assert!(mean_change > 30.0, "background {background}: {mean_change}");
        }
    }

    #[test]
    fn blends_with_the_photo_instead_of_pasting() {
        // A plate-only pixel (top padding, centred) depends on what is under it.
        let b = mark_box(512, 512).unwrap();
        let (x, y) = (b.x + b.width / 2, b.y + 2);
        let on = |grey: u8| {
            let mut img = RgbImage::from_pixel(512, 512, Rgb([grey; 3]));
            apply(&mut img);
            img.get_pixel(x, y)[0]
        };
        let (white, grey) = (on(255), on(128));
        assert!(
            white < 255 && grey < 128 && white > grey + 50,
            "{white} {grey}"
        );
    }

    #[test]
    fn shows_on_transparent_pixels_and_keeps_the_rest_transparent() {
        let mut clear = RgbaImage::from_pixel(400, 300, Rgba([0, 0, 0, 0]));
        let b = apply(&mut clear).unwrap();
        for (x, y, p) in clear.enumerate_pixels() {
            if !b.contains(x, y) {
                assert_eq!(p[3], 0);
            }
        }
        let centre = clear.get_pixel(b.x + b.width / 2, b.y + b.height / 2);
        assert!(centre[3] > 90, "{centre:?}");
    }

    #[test]
    fn works_on_grey_and_dynamic_images() {
        let mut grey = GrayImage::from_pixel(300, 300, Luma([255]));
        assert!(apply(&mut grey).is_some());
        assert!(grey.pixels().any(|p| p[0] < 200));

        let mut deep =
            DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(300, 300, Rgb([0u16; 3])));
        let b = apply_dynamic(&mut deep).unwrap();
        let rgba = deep.as_rgba8().unwrap();
        assert!(
            rgba.enumerate_pixels()
                .filter(|(x, y, _)| b.contains(*x, *y))
                .any(|(_, _, p)| p[0] > 200)
        );

        let mut rgb = DynamicImage::ImageRgb8(noise(300, 300));
        assert!(apply_dynamic(&mut rgb).is_some());
        assert!(rgb.as_rgb8().is_some(), "8-bit RGB stays RGB");
    }

    #[test]
    fn is_deterministic() {
        let mut a = noise(700, 500);
        let mut b = a.clone();
        apply(&mut a);
        apply(&mut b);
        assert_eq!(a, b);
    }
}
