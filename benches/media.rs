//! Benchmarks of the upload pipeline: validate + normalise a 12 MP phone-sized JPEG (the issue's
//! goal is under 150 ms on one core), and the free-tier watermark on a stored-size image.

use std::hint::black_box;
use std::time::Duration;

use atelier::media::image_pipeline::{Limits, normalize};
use atelier::media::watermark;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage, RgbaImage};

/// Smooth gradients, a bright disc and ±8 levels of sensor-like noise: at quality 90 this
/// compresses to about 3 MB, like a 12 MP phone photo. (The `image` encoder writes 4:4:4
/// chroma, which decodes a little slower than the 4:2:0 phones write.)
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

fn bench_normalize(c: &mut Criterion) {
    let mut upload = Vec::new();
    if let Err(e) = JpegEncoder::new_with_quality(&mut upload, 90).encode_image(&photo(4000, 3000))
    {
        panic!("encoding the fixture failed: {e}");
    }
    let limits = Limits::default();
    match normalize(&upload, &limits) {
        Ok(out) => {
            assert_eq!((out.width, out.height), (2048, 1536));
            eprintln!(
                "fixture: 4000×3000 JPEG of {} bytes → stored {} bytes",
                upload.len(),
                out.bytes.len()
            );
        }
        Err(e) => panic!("normalize failed on the fixture: {e}"),
    }

    let mut group = c.benchmark_group("media");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("normalize/jpeg_4000x3000", |b| {
        b.iter(|| normalize(black_box(&upload), &limits))
    });
    group.finish();
}

fn bench_watermark(c: &mut Criterion) {
    // Provider results decode to RGB; RGBA is the cut-out case.
    let rgb = photo(2048, 1536);
    let rgba: RgbaImage = image::DynamicImage::ImageRgb8(rgb.clone()).into_rgba8();
    c.bench_function("watermark/rgb_2048x1536", |b| {
        b.iter_batched_ref(|| rgb.clone(), watermark::apply, BatchSize::LargeInput)
    });
    c.bench_function("watermark/rgba_2048x1536", |b| {
        b.iter_batched_ref(|| rgba.clone(), watermark::apply, BatchSize::LargeInput)
    });
}

criterion_group!(benches, bench_normalize, bench_watermark);
criterion_main!(benches);
