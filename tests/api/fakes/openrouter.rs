//! A fake OpenRouter: `POST /api/v1/chat/completions` as the real one answers it. The answer's
//! JSON sits as a string in `choices[0].message.content`, `usage` always carries `cost`, errors
//! are `{"error":{"code","message","metadata"}}` with the status mirroring the code (429 with
//! `Retry-After` and `X-RateLimit-*`), and an error after the start comes with HTTP 200. With
//! `"stream": true` answers are SSE: a keep-alive comment, `delta.content` pieces, a last chunk
//! with `finish_reason` and `usage`, `data: [DONE]`; an error after the start is an event
//! carrying `error`. Every request is recorded; each test scripts the replies (a queue of modes;
//! empty = a good answer).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{Value, json};

use super::{Recorded, Running, bind};

pub const API_KEY: &str = "sk-or-v1-test-key";
pub const MODEL: &str = "anthropic/claude-haiku-4.5";
/// Every reply's usage, so tests can add it up.
pub const PROMPT_TOKENS: i64 = 194;
pub const COMPLETION_TOKENS: i64 = 42;
pub const COST: f64 = 0.000404;
pub const COST_MICROS: i64 = 404;

/// How the next call is answered.
#[derive(Debug, Clone)]
pub enum Mode {
    /// A good answer: three variants built from the last user message.
    Answer,
    /// HTTP 200 with this text as `message.content` (and the given `finish_reason`).
    Content(String, &'static str),
    /// An error: the status, the body `{"error":{code,message,metadata}}`; 429 adds
    /// `Retry-After` (seconds) and `X-RateLimit-*`.
    Error(u16, &'static str),
    /// HTTP 200 whose body is an `error` object (the model failed after it started).
    ErrorAfterStart(i64, &'static str),
    /// A raw reply (a proxy's HTML page, say).
    Raw(u16, &'static str),
    /// A good answer after this long.
    Slow(Duration),
}

struct Inner {
    requests: Mutex<Vec<Recorded>>,
    modes: Mutex<VecDeque<Mode>>,
    retry_after_secs: Mutex<u64>,
}

pub struct FakeOpenRouter {
    /// What `OPENROUTER_BASE_URL` is set to (`…/api/v1`).
    pub base_url: String,
    inner: Arc<Inner>,
    _server: Running,
}

impl FakeOpenRouter {
    pub async fn start() -> Self {
        let (listener, root) = bind();
        let inner = Arc::new(Inner {
            requests: Mutex::default(),
            modes: Mutex::default(),
            retry_after_secs: Mutex::new(1),
        });
        let data = web::Data::from(inner.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(4 << 20))
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .unwrap()
        .run();
        Self {
            base_url: format!("{root}/api/v1"),
            inner,
            _server: Running::spawn(server),
        }
    }

    pub fn push(&self, mode: Mode) {
        self.inner.modes.lock().unwrap().push_back(mode);
    }

    /// `Retry-After` of 429 replies, in seconds.
    pub fn retry_after(&self, secs: u64) {
        *self.inner.retry_after_secs.lock().unwrap() = secs;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// The bodies of the chat completion calls, in order.
    pub fn calls(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.path == "/api/v1/chat/completions")
            .map(Recorded::json)
            .collect()
    }
}

fn error(status: u16, message: &str, metadata: Value) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(
            json!({"error": {"code": status, "message": message, "metadata": metadata}})
                .to_string(),
        )
}

fn usage() -> Value {
    json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "cost": COST,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}
    })
}

/// Pieces of `content` as a model streams them (a few characters each).
fn pieces(content: &str) -> Vec<String> {
    let chars: Vec<char> = content.chars().collect();
    chars.chunks(7).map(|c| c.iter().collect()).collect()
}

/// An SSE answer: `content` in pieces, then `finish_reason` and usage, or (`error`) an error
/// event a few pieces in.
fn stream(model: &str, content: &str, finish_reason: &str, error: Option<Value>) -> HttpResponse {
    let id = format!("gen-{}-AbCdEf", super::now_ms());
    let chunk = |delta: Value, finish: Value, usage: Option<Value>| {
        let mut c = json!({
            "id": id, "provider": "Anthropic", "model": model, "object": "chat.completion.chunk",
            "created": super::now_ms() / 1000,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": finish}]
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        format!("data: {c}\n\n")
    };
    let mut out = String::from(": OPENROUTER PROCESSING\n\n");
    let parts = pieces(content);
    // An error comes a few pieces in, while the reply is still being written.
    let cut = if error.is_some() {
        4.min(parts.len())
    } else {
        parts.len()
    };
    for (i, p) in parts.iter().take(cut).enumerate() {
        let delta = if i == 0 {
            json!({"role": "assistant", "content": p})
        } else {
            json!({"content": p})
        };
        out.push_str(&chunk(delta, Value::Null, None));
    }
    match error {
        Some(error) => {
            let mut c = json!({"id": id, "object": "chat.completion.chunk", "error": error,
                               "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]});
            c["usage"] = usage();
            out.push_str(&format!("data: {c}\n\n"));
        }
        None => {
            out.push_str(&chunk(
                json!({"content": ""}),
                json!(finish_reason),
                Some(usage()),
            ));
            out.push_str("data: [DONE]\n\n");
        }
    }
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .body(out)
}

fn completion(model: &str, content: &str, finish_reason: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "id": format!("gen-{}-AbCdEf", super::now_ms()),
        "provider": "Anthropic",
        "model": model,
        "object": "chat.completion",
        "created": super::now_ms() / 1000,
        "choices": [{
            "index": 0,
            "logprobs": null,
            "finish_reason": finish_reason,
            "native_finish_reason": if finish_reason == "stop" { "end_turn" } else { finish_reason },
            "message": {"role": "assistant", "content": content, "refusal": null, "reasoning": null}
        }],
        "usage": usage()
    }))
}

/// The text of the last user message (a string, or the text part of a parts array).
pub fn last_user_text(body: &Value) -> String {
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .cloned()
        .unwrap_or(Value::Null);
    match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str())
            .collect(),
        _ => String::new(),
    }
}

/// What a good model would answer: JSON in a string.
pub fn good_answer(wish: &str) -> String {
    json!({
        "reply": format!("Three ways to do \"{wish}\"."),
        "variants": [
            format!("{wish}; keep the face and pose unchanged, photorealistic."),
            format!("{wish}, bolder, with richer colours; keep the face."),
            format!("{wish}, as a fine-art photograph; keep the framing."),
        ]
    })
    .to_string()
}

/// Checks what OpenRouter itself would refuse with a 400.
fn invalid(body: &Value) -> Option<String> {
    if !body["model"].as_str().is_some_and(|m| m.contains('/')) {
        return Some("model must be <author>/<slug>".into());
    }
    let messages = body["messages"].as_array()?;
    if messages.is_empty() {
        return Some("messages is empty".into());
    }
    for m in messages {
        if !["system", "user", "assistant", "tool"].contains(&m["role"].as_str().unwrap_or("")) {
            return Some(format!("bad role in {m}"));
        }
        match &m["content"] {
            Value::String(_) => {}
            Value::Array(parts) => {
                for p in parts {
                    let ok = match p["type"].as_str() {
                        Some("text") => p["text"].is_string(),
                        Some("image_url") => p["image_url"]["url"]
                            .as_str()
                            .is_some_and(|u| u.starts_with("http") || u.starts_with("data:image/")),
                        _ => false,
                    };
                    if !ok {
                        return Some(format!("bad content part {p}"));
                    }
                }
            }
            other => return Some(format!("bad content {other}")),
        }
    }
    if let Some(t) = body["temperature"].as_f64()
        && !(0.0..=2.0).contains(&t)
    {
        return Some("temperature out of range".into());
    }
    None
}

async fn handle(req: HttpRequest, body: Bytes, inner: web::Data<Inner>) -> HttpResponse {
    inner
        .requests
        .lock()
        .unwrap()
        .push(Recorded::from_request(&req, &body));
    if req.path() != "/api/v1/chat/completions" || req.method() != "POST" {
        return error(404, "Not Found", json!({}));
    }
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {API_KEY}")) {
        return error(401, "No auth credentials found", json!({}));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "Invalid JSON body", json!({}));
    };
    if let Some(why) = invalid(&body) {
        return error(400, &why, json!({}));
    }
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let streamed = body["stream"] == true;
    let answer = |content: &str, finish: &str| {
        if streamed {
            stream(&model, content, finish, None)
        } else {
            completion(&model, content, finish)
        }
    };
    let mode = inner
        .modes
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Mode::Answer);
    match mode {
        Mode::Answer => answer(&good_answer(&last_user_text(&body)), "stop"),
        Mode::Content(content, finish) => answer(&content, finish),
        Mode::Error(402, message) => {
            error(402, message, json!({"limit_source": "openrouter_credits"}))
        }
        Mode::Error(429, message) => {
            let secs = *inner.retry_after_secs.lock().unwrap();
            let mut res = error(429, message, json!({}));
            let h = res.headers_mut();
            h.insert(
                actix_web::http::header::RETRY_AFTER,
                secs.to_string().parse().unwrap(),
            );
            h.insert(
                actix_web::http::header::HeaderName::from_static("x-ratelimit-limit"),
                "20".parse().unwrap(),
            );
            h.insert(
                actix_web::http::header::HeaderName::from_static("x-ratelimit-remaining"),
                "0".parse().unwrap(),
            );
            res
        }
        Mode::Error(status, message) => error(status, message, json!({})),
        Mode::ErrorAfterStart(code, message) if streamed => stream(
            &model,
            &good_answer(&last_user_text(&body)),
            "error",
            Some(
                json!({"code": code, "message": message, "metadata": {"provider_name": "Anthropic"}}),
            ),
        ),
        Mode::ErrorAfterStart(code, message) => HttpResponse::Ok().json(json!({
            "id": "gen-err",
            "object": "chat.completion",
            "error": {"code": code, "message": message, "metadata": {"provider_name": "Anthropic"}},
            "choices": [],
            "usage": usage()
        })),
        Mode::Raw(status, body) => HttpResponse::build(StatusCode::from_u16(status).unwrap())
            .content_type("text/html")
            .body(body),
        Mode::Slow(pause) => {
            tokio::time::sleep(pause).await;
            answer(&good_answer(&last_user_text(&body)), "stop")
        }
    }
}
