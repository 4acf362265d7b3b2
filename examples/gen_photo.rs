//! Writes a photo-like JPEG (gradients and noise, so it compresses like a photo) for the
//! upload benchmark: `cargo run --release --example gen_photo -- out.jpg 4000 3000`.

use image::{ImageFormat, Rgb, RgbImage};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).map_or("photo.jpg", String::as_str);
    let w: u32 = args.get(2).map_or(Ok(4000), |s| s.parse())?;
    let h: u32 = args.get(3).map_or(Ok(3000), |s| s.parse())?;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let img = RgbImage::from_fn(w, h, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let noise = (seed % 24) as u32;
        let r = (x * 200 / w + noise) as u8;
        let g = (y * 180 / h + noise) as u8;
        let b = ((x + y) * 120 / (w + h) + 60 + noise) as u8;
        Rgb([r, g, b])
    });
    img.save_with_format(out, ImageFormat::Jpeg)?;
    println!("{out}: {w}x{h}, {} bytes", std::fs::metadata(out)?.len());
    Ok(())
}
