//! Photo uploads over HTTP with real files made here: validation from the bytes, normalised
//! stored copies, signed links, ownership, and the retention sweep.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use reqwest::multipart::{Form, Part};

use crate::helpers::{
    FittingUpload, TestApp, TestUser, Upload, assert_problem, ok, spawn_app, spawn_app_with,
};

fn photo(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x + y) % 256) as u8,
        ])
    })
}

fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    encode(DynamicImage::ImageRgb8(photo(w, h)), ImageFormat::Jpeg)
}

/// A JPEG carrying EXIF Orientation = 6 (rotate 90° clockwise) and a GPS IFD.
fn jpeg_with_exif(w: u32, h: u32) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II\x2a\x00\x08\x00\x00\x00");
    tiff.extend_from_slice(&2u16.to_le_bytes()); // IFD0: two entries
    tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]); // Orientation = 6
    tiff.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0, 38, 0, 0, 0]); // GPS IFD at 38
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes()); // GPS IFD: GPSLatitudeRef = "N"
    tiff.extend_from_slice(&[0x01, 0x00, 2, 0, 2, 0, 0, 0, b'N', 0, 0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    let plain = jpeg(w, h);
    [&plain[..2], &app1, &plain[2..]].concat()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
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

/// A PNG whose header claims `w`×`h`: a decompression bomb's opening.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x9c\x00\x00\x00\xff\xff";
    out.extend_from_slice(&((idat.len() - 4) as u32).to_be_bytes());
    out.extend_from_slice(idat);
    out.extend_from_slice(&crc32(idat).to_be_bytes());
    out
}

fn part(bytes: Vec<u8>, name: &str, mime: &str) -> Part {
    Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(mime)
        .unwrap()
}

/// `form` sent to `path` by `user`.
async fn send_form(user: &TestUser<'_>, path: &str, form: Form) -> reqwest::Response {
    user.request(reqwest::Method::POST, path)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// `POST /api/v1/editing/upload` of `bytes` declared as `mime`, as sent.
async fn upload_editing(user: &TestUser<'_>, bytes: Vec<u8>, mime: &str) -> reqwest::Response {
    let form = Form::new().part("image", part(bytes, "photo.jpg", mime));
    send_form(user, "/api/v1/editing/upload", form).await
}

/// A JPEG uploaded for editing (201).
async fn upload_jpeg(user: &TestUser<'_>, bytes: Vec<u8>) -> Upload {
    ok(
        upload_editing(user, bytes, "image/jpeg").await,
        201,
        "upload",
    )
    .await
}

async fn fetch(app: &TestApp, url: &str) -> reqwest::Response {
    assert!(url.starts_with(&app.address), "links are absolute: {url}");
    app.client.get(url).send().await.unwrap()
}

#[tokio::test]
async fn an_editing_photo_is_stored_normalised_and_served_through_a_signed_link() {
    let app = spawn_app().await;
    let anna = app.user().await;
    let upload = upload_jpeg(&anna, jpeg(600, 400)).await;
    assert_eq!(upload.purpose, "editing_source");
    assert_eq!(upload.mime, "image/jpeg");
    assert_eq!((upload.width, upload.height), (600, 400));

    let res = fetch(&app, &upload.url).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    assert!(
        res.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("private")
    );
    let bytes = res.bytes().await.unwrap();
    assert_eq!(bytes.len() as i64, upload.bytes);
    let stored = image::load_from_memory(&bytes).unwrap();
    assert_eq!((stored.width(), stored.height()), (600, 400));

    let res = anna.get(&format!("/api/v1/uploads/{}", upload.id)).await;
    let again: Upload = ok(res, 200, "upload").await;
    assert_eq!(again.id, upload.id);
}

#[tokio::test]
async fn a_fitting_upload_takes_person_and_item_for_24_hours() {
    let app = spawn_app().await;
    let anna = app.user().await;
    let transparent = RgbaImage::from_fn(300, 300, |x, _| {
        Rgba([200, 10, 10, if x < 150 { 0 } else { 255 }])
    });
    let form = Form::new()
        .part("person", part(jpeg(500, 800), "me.jpg", "image/jpeg"))
        .part(
            "item",
            part(
                encode(DynamicImage::ImageRgba8(transparent), ImageFormat::Png),
                "shirt.png",
                "image/png",
            ),
        );
    let res = send_form(&anna, "/api/v1/fitting/upload", form).await;
    let body: FittingUpload = ok(res, 201, "fitting upload").await;
    assert_eq!(body.person.purpose, "fitting_person");
    assert_eq!(body.item.purpose, "fitting_item");
    assert_eq!(body.item.mime, "image/png", "alpha is kept as PNG");
    let (created, expires) = (body.person.created_at, body.person.expires_at);
    assert_eq!((expires - created).num_seconds(), 86_400);
    let item = fetch(&app, &body.item.url).await;
    assert_eq!(item.headers()["content-type"], "image/png");
    let item = image::load_from_memory(&item.bytes().await.unwrap())
        .unwrap()
        .to_rgba8();
    assert_eq!(item.get_pixel(10, 10)[3], 0);
}

#[tokio::test]
async fn exif_orientation_is_applied_and_all_metadata_stripped() {
    let app = spawn_app().await;
    let anna = app.user().await;
    let original = jpeg_with_exif(400, 300);
    assert!(original.windows(4).any(|w| w == b"Exif"));
    let upload = upload_jpeg(&anna, original).await;
    assert_eq!((upload.width, upload.height), (300, 400), "rotated upright");
    let stored = fetch(&app, &upload.url).await.bytes().await.unwrap();
    assert!(!stored.windows(4).any(|w| w == b"Exif"), "EXIF survived");
    assert!(
        !stored.windows(2).any(|w| w == [0xFF, 0xE1]),
        "an APP1 segment survived"
    );
}

#[tokio::test]
async fn webp_is_accepted_and_stored_as_jpeg() {
    let app = spawn_app().await;
    let anna = app.user().await;
    let webp = encode(DynamicImage::ImageRgb8(photo(320, 320)), ImageFormat::WebP);
    let res = upload_editing(&anna, webp, "image/webp").await;
    assert_eq!(ok::<Upload>(res, 201, "upload").await.mime, "image/jpeg");
}

#[tokio::test]
async fn hostile_and_broken_files_are_refused_with_their_codes() {
    let app = spawn_app().await;
    let anna = app.user().await;
    let tiny = jpeg(1, 1);
    assert_problem(
        upload_editing(&anna, tiny, "image/jpeg").await,
        422,
        "image_too_small",
    )
    .await;
    let html = b"<!DOCTYPE html><html><script>alert(1)</script></html>".to_vec();
    let body = assert_problem(
        upload_editing(&anna, html, "image/png").await,
        415,
        "unsupported_media_type",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("image/jpeg, image/png, image/webp")
    );
    let gif =
        b"GIF89a\x2c\x01\x2c\x01\xf0\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x00\x00\x00\x00\x00;"
            .to_vec();
    let body = assert_problem(
        upload_editing(&anna, gif, "image/jpeg").await,
        415,
        "unsupported_media_type",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("image/gif"));
    let svg =
        br#"<svg xmlns="http://www.w3.org/2000/svg" width="300" height="300"></svg>"#.to_vec();
    assert_problem(
        upload_editing(&anna, svg, "image/svg+xml").await,
        415,
        "unsupported_media_type",
    )
    .await;
    let pdf = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n".to_vec();
    assert_problem(
        upload_editing(&anna, pdf, "application/pdf").await,
        415,
        "unsupported_media_type",
    )
    .await;

    let started = std::time::Instant::now();
    let bomb = png_header(60_000, 60_000);
    assert_problem(
        upload_editing(&anna, bomb, "image/png").await,
        422,
        "image_too_large",
    )
    .await;
    println!("bomb refused in {:?}", started.elapsed());

    let mut truncated = jpeg(800, 600);
    truncated.truncate(truncated.len() / 3);
    assert_problem(
        upload_editing(&anna, truncated, "image/jpeg").await,
        422,
        "invalid_image",
    )
    .await;

    // A PNG signature followed by a ZIP archive: never stored as it came.
    let mut polyglot = b"\x89PNG\r\n\x1a\n".to_vec();
    polyglot.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x08\x00secret.txt");
    let res = upload_editing(&anna, polyglot, "image/png").await;
    assert_problem(res, 422, "invalid_image").await;

    // Nothing of the refused files was stored.
    let stored = walk(std::path::Path::new(&app.storage_dir));
    assert!(stored.is_empty(), "refused files left objects: {stored:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[tokio::test]
async fn size_caps_and_form_shape_are_enforced() {
    let app = spawn_app().await;
    let anna = app.user().await;
    let big = vec![0xFFu8; 6 * 1024 * 1024];
    assert_problem(
        upload_editing(&anna, big, "image/jpeg").await,
        413,
        "file_too_large",
    )
    .await;

    let wrong = Form::new().part("photo", part(jpeg(300, 300), "a.jpg", "image/jpeg"));
    let res = send_form(&anna, "/api/v1/editing/upload", wrong).await;
    let body = assert_problem(res, 400, "unknown_field").await;
    assert!(body["detail"].as_str().unwrap().contains("photo"));

    let only_person = Form::new().part("person", part(jpeg(300, 300), "a.jpg", "image/jpeg"));
    let res = send_form(&anna, "/api/v1/fitting/upload", only_person).await;
    assert_problem(res, 400, "missing_field").await;

    // A field twice: on the fitting form (two parts) the repeat is named; the editing form
    // takes one part, so a second is refused by the framing before it is read.
    let twice = Form::new()
        .part("person", part(jpeg(300, 300), "a.jpg", "image/jpeg"))
        .part("person", part(jpeg(300, 300), "b.jpg", "image/jpeg"));
    let res = send_form(&anna, "/api/v1/fitting/upload", twice).await;
    assert_problem(res, 400, "too_many_files").await;
    let twice = Form::new()
        .part("image", part(jpeg(300, 300), "a.jpg", "image/jpeg"))
        .part("image", part(jpeg(300, 300), "b.jpg", "image/jpeg"));
    let res = send_form(&anna, "/api/v1/editing/upload", twice).await;
    assert_problem(res, 400, "too_many_parts").await;

    let empty = Form::new().part("image", part(Vec::new(), "a.jpg", "image/jpeg"));
    let res = send_form(&anna, "/api/v1/editing/upload", empty).await;
    assert_problem(res, 400, "empty_file").await;

    let res = anna
        .request(reqwest::Method::POST, "/api/v1/editing/upload")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );

    let res = app
        .client
        .post(app.url("/api/v1/editing/upload"))
        .multipart(Form::new())
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "missing_credentials").await;
}

#[tokio::test]
async fn links_are_private_signed_and_expire() {
    let app = spawn_app_with(&[("MEDIA_URL_TTL_SECS", "1")]).await;
    let anna = app.user().await;
    let upload = upload_jpeg(&anna, jpeg(300, 300)).await;
    let url = upload.url;

    let tampered = url.replace("sig=", "sig=00");
    assert_problem(fetch(&app, &tampered).await, 403, "invalid_signature").await;
    let other_key = url.replace(&upload.id.to_string(), &uuid::Uuid::new_v4().to_string());
    assert_problem(fetch(&app, &other_key).await, 403, "invalid_signature").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_problem(fetch(&app, &url).await, 403, "link_expired").await;

    // The owner gets a fresh link; another user gets a 404.
    let path = format!("/api/v1/uploads/{}", upload.id);
    let fresh: Upload = ok(anna.get(&path).await, 200, "upload").await;
    assert_eq!(fetch(&app, &fresh.url).await.status(), 200);
    let stranger = app.user().await;
    assert_problem(stranger.get(&path).await, 404, "not_found").await;
    assert_problem(
        anna.get("/api/v1/uploads/not-a-uuid").await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn the_sweep_erases_fitting_photos_after_24_hours() {
    let app = spawn_app().await;
    let anna = app.user().await;
    let form = Form::new()
        .part("person", part(jpeg(300, 400), "p.jpg", "image/jpeg"))
        .part("item", part(jpeg(300, 300), "i.jpg", "image/jpeg"));
    let res = send_form(&anna, "/api/v1/fitting/upload", form).await;
    let fitting: FittingUpload = ok(res, 201, "fitting upload").await;
    let editing = upload_jpeg(&anna, jpeg(300, 300)).await;
    assert_eq!(walk(std::path::Path::new(&app.storage_dir)).len(), 3);

    let sweep = |hours| {
        atelier::jobs::sweeper::sweep_uploads(
            &app.state,
            chrono::Utc::now() + chrono::Duration::hours(hours),
        )
    };
    assert_eq!(sweep(23).await.unwrap(), 0);
    assert_eq!(sweep(25).await.unwrap(), 2);
    assert_eq!(sweep(25).await.unwrap(), 0, "sweeps are idempotent");

    for upload in [&fitting.person, &fitting.item] {
        assert_eq!(fetch(&app, &upload.url).await.status(), 404);
        let path = format!("/api/v1/uploads/{}", upload.id);
        assert_problem(anna.get(&path).await, 404, "not_found").await;
    }
    assert_eq!(
        fetch(&app, &editing.url).await.status(),
        200,
        "editing photos stay"
    );
    assert_eq!(walk(std::path::Path::new(&app.storage_dir)).len(), 1);
}
