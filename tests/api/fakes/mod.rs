//! Fake providers that speak the real wire formats (external-apis §5): small actix-web servers
//! on 127.0.0.1:0, started on the test's runtime, recording every request and replying as
//! each test scripts them (a queue of modes per route).

pub mod kie;
pub mod openrouter;
pub mod telegram;
pub mod yookassa;

use std::io::Cursor;
use std::net::TcpListener;

use actix_web::HttpRequest;
use actix_web::dev::{Server, ServerHandle};
use actix_web::web::Bytes;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn from_request(req: &HttpRequest, body: &Bytes) -> Self {
        Self {
            method: req.method().to_string(),
            path: req.path().to_owned(),
            query: req.query_string().to_owned(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// A bound listener and the base URL it answers on.
pub fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake provider");
    let port = listener.local_addr().unwrap().port();
    (listener, format!("http://127.0.0.1:{port}"))
}

/// Runs a fake's server on the current (test) runtime until the guard drops.
pub struct Running(ServerHandle);

impl Running {
    pub fn spawn(server: Server) -> Self {
        let handle = server.handle();
        tokio::spawn(server);
        Self(handle)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Not awaited: Drop runs on the runtime that must stay free to run the server.
        drop(self.0.stop(false));
    }
}

/// A real PNG of `width`×`height` (a gradient, so it is not trivially compressible).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 7 % 256) as u8,
            (y * 5 % 256) as u8,
            ((x ^ y) % 256) as u8,
        ])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
