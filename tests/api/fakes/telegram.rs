//! A fake Telegram Bot API: `/bot<token>/<method>` with JSON, urlencoded or multipart bodies,
//! `sendMessage` and `sendPhoto` with the documented limits and realistic `Message` replies,
//! and scripted failures (429 `retry_after`, 403 blocked, 400 chat not found, 5xx, migration).
//! For the bot: `reply_markup` is recorded with each call (as the JSON text it was sent as),
//! `answerCallbackQuery`, `editMessageText`, `setWebhook`, `getWebhookInfo`, `setMyCommands`
//! and `setChatMenuButton`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Cursor;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use futures_util::TryStreamExt as _;
use serde_json::{Map, Value, json};

use super::{Recorded, Running, bind};

pub const BOT_TOKEN: &str = "7000000009:AAfake-telegram-token-for-provider-tests";
pub const BOT_ID: i64 = 7_000_000_009;

/// How the next Bot API call behaves (an empty queue is Normal).
#[derive(Debug, Clone)]
pub enum Mode {
    Normal,
    /// 429 with `parameters.retry_after`.
    RetryAfter(u64),
    /// 403 "Forbidden: bot was blocked by the user".
    Blocked,
    /// 400 "Bad Request: chat not found".
    ChatNotFound,
    /// This HTTP status and `error_code` (500, 502, ...).
    ServerError(u16),
    /// 400 with `parameters.migrate_to_chat_id`.
    Migrate(i64),
    /// A body that is not the Bot API's (a proxy's page) with this status.
    Html(u16),
    /// Answer normally after this long.
    SlowReply(Duration),
}

/// A file part of a multipart request.
#[derive(Debug, Clone)]
pub struct Upload {
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// A Bot API call as the fake understood it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// Text parameters (`chat_id`, `text`, `caption`, ...), however they were encoded.
    pub params: HashMap<String, String>,
    pub photo: Option<Upload>,
    pub content_type: String,
}

impl Call {
    pub fn chat_id(&self) -> Option<i64> {
        self.params.get("chat_id").and_then(|c| c.parse().ok())
    }
}

/// An `answerPreCheckoutQuery` as received, and how long after the query was pushed.
#[derive(Debug, Clone)]
pub struct PreCheckoutAnswer {
    pub ok: bool,
    pub error_message: Option<String>,
    pub after: Duration,
}

#[derive(Default)]
struct Inner {
    pushed_queries: Mutex<HashMap<String, std::time::Instant>>,
    answers: Mutex<HashMap<String, PreCheckoutAnswer>>,
    requests: Mutex<Vec<Recorded>>,
    calls: Mutex<Vec<Call>>,
    modes: Mutex<VecDeque<Mode>>,
    blocked: Mutex<HashSet<i64>>,
    migrated: Mutex<HashMap<i64, i64>>,
    next_message_id: AtomicI64,
    /// `setWebhook`'s parameters, as `getWebhookInfo` reports them.
    webhook: Mutex<Option<HashMap<String, String>>>,
}

pub struct FakeTelegram {
    pub base_url: String,
    inner: Arc<Inner>,
    _server: Running,
}

impl FakeTelegram {
    pub async fn start() -> Self {
        let (listener, base_url) = bind();
        let inner = Arc::new(Inner {
            next_message_id: AtomicI64::new(800),
            ..Inner::default()
        });
        let data = web::Data::from(inner.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 << 20))
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .unwrap()
        .run();
        Self {
            base_url,
            inner,
            _server: Running::spawn(server),
        }
    }

    pub fn push(&self, mode: Mode) {
        self.inner.modes.lock().unwrap().push_back(mode);
    }

    pub fn push_n(&self, mode: Mode, n: usize) {
        for _ in 0..n {
            self.push(mode.clone());
        }
    }

    /// Every later send to `chat_id` answers 403 blocked.
    pub fn block_chat(&self, chat_id: i64) {
        self.inner.blocked.lock().unwrap().insert(chat_id);
    }

    /// Every later send to `from` answers 400 with `migrate_to_chat_id = to`.
    pub fn migrate_chat(&self, from: i64, to: i64) {
        self.inner.migrated.lock().unwrap().insert(from, to);
    }

    /// Sends to `chat_id` are delivered again.
    pub fn unblock_chat(&self, chat_id: i64) {
        self.inner.blocked.lock().unwrap().remove(&chat_id);
    }

    /// The calls of one method, in order.
    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .collect()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// The answer to a pushed pre-checkout query, if one came.
    pub fn answer(&self, query_id: &str) -> Option<PreCheckoutAnswer> {
        self.inner.answers.lock().unwrap().get(query_id).cloned()
    }

    /// Delivers an update to the bot's webhook with the secret-token header, as Telegram does.
    pub async fn push_update(&self, url: &str, secret: &str, update: &Value) -> reqwest::Response {
        if let Some(id) = update["pre_checkout_query"]["id"].as_str() {
            self.inner
                .pushed_queries
                .lock()
                .unwrap()
                .insert(id.to_owned(), std::time::Instant::now());
        }
        reqwest::Client::new()
            .post(url)
            .header("X-Telegram-Bot-Api-Secret-Token", secret)
            .json(update)
            .send()
            .await
            .unwrap()
    }

    /// Calls that reached a known method with the right token.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().unwrap().clone()
    }
}

fn reply_ok(result: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": true, "result": result}))
}

/// A Bot API error; the HTTP status mirrors `error_code`.
fn reply_err(code: u16, description: &str, parameters: Option<Value>) -> HttpResponse {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    HttpResponse::build(StatusCode::from_u16(code).unwrap()).json(body)
}

async fn handle(req: HttpRequest, body: Bytes, inner: web::Data<Inner>) -> HttpResponse {
    inner
        .requests
        .lock()
        .unwrap()
        .push(Recorded::from_request(&req, &body));
    let Some((token, method)) = req
        .path()
        .strip_prefix("/bot")
        .and_then(|rest| rest.split_once('/'))
    else {
        return reply_err(404, "Not Found", None);
    };
    if token != BOT_TOKEN {
        return reply_err(401, "Unauthorized", None);
    }
    let method = method.to_owned();
    let known = [
        "sendmessage",
        "sendphoto",
        "getme",
        "createinvoicelink",
        "answerprecheckoutquery",
        "answercallbackquery",
        "editmessagetext",
        "setwebhook",
        "getwebhookinfo",
        "setmycommands",
        "setchatmenubutton",
    ];
    if !known.contains(&method.to_ascii_lowercase().as_str()) {
        return reply_err(404, "Not Found", None);
    }
    let call = match parse_call(&req, body, &method).await {
        Ok(call) => call,
        Err(description) => return reply_err(400, &description, None),
    };
    inner.calls.lock().unwrap().push(call.clone());

    let mode = inner.modes.lock().unwrap().pop_front();
    match mode.unwrap_or(Mode::Normal) {
        Mode::Normal => {}
        Mode::RetryAfter(secs) => {
            return reply_err(
                429,
                &format!("Too Many Requests: retry after {secs}"),
                Some(json!({"retry_after": secs})),
            );
        }
        Mode::Blocked => return reply_err(403, "Forbidden: bot was blocked by the user", None),
        Mode::ChatNotFound => return reply_err(400, "Bad Request: chat not found", None),
        Mode::ServerError(code) => return reply_err(code, "Internal Server Error", None),
        Mode::Migrate(to) => return migrated(to),
        Mode::Html(status) => {
            return HttpResponse::build(StatusCode::from_u16(status).unwrap())
                .content_type("text/html")
                .body("<html><body><h1>Bad Gateway</h1></body></html>");
        }
        Mode::SlowReply(delay) => tokio::time::sleep(delay).await,
    }
    match method.to_ascii_lowercase().as_str() {
        "getme" => reply_ok(bot_user()),
        "createinvoicelink" => create_invoice_link(&call),
        "answerprecheckoutquery" => answer_pre_checkout_query(&inner, &call),
        "sendmessage" => send(&inner, &call, false),
        "answercallbackquery" => match call.params.get("callback_query_id") {
            Some(id) if !id.is_empty() => reply_ok(json!(true)),
            _ => reply_err(400, "Bad Request: QUERY_ID_INVALID", None),
        },
        "editmessagetext" => edit_message_text(&inner, &call),
        "setwebhook" => set_webhook(&inner, &call),
        "getwebhookinfo" => webhook_info(&inner),
        "setmycommands" => set_my_commands(&call),
        "setchatmenubutton" => {
            let button: Value = call
                .params
                .get("menu_button")
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(Value::Null);
            if button["type"] == "web_app" && !button["web_app"]["url"].is_string() {
                return reply_err(400, "Bad Request: web app URL is required", None);
            }
            reply_ok(json!(true))
        }
        _ => send(&inner, &call, true),
    }
}

fn migrated(to: i64) -> HttpResponse {
    reply_err(
        400,
        "Bad Request: group chat was upgraded to a supergroup chat",
        Some(json!({"migrate_to_chat_id": to})),
    )
}

fn bot_user() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "Atelier", "username": "atelier_bot"})
}

fn send(inner: &Inner, call: &Call, photo: bool) -> HttpResponse {
    let Some(raw_chat) = call.params.get("chat_id").filter(|c| !c.is_empty()) else {
        return reply_err(400, "Bad Request: chat_id is empty", None);
    };
    let Ok(chat_id) = raw_chat.parse::<i64>() else {
        return reply_err(400, "Bad Request: chat not found", None);
    };
    if let Some(to) = inner.migrated.lock().unwrap().get(&chat_id) {
        return migrated(*to);
    }
    if inner.blocked.lock().unwrap().contains(&chat_id) {
        return reply_err(403, "Forbidden: bot was blocked by the user", None);
    }
    let mut message = json!({
        "message_id": inner.next_message_id.fetch_add(1, Ordering::SeqCst),
        "date": chrono::Utc::now().timestamp(),
        "from": bot_user(),
        "chat": if chat_id > 0 {
            json!({"id": chat_id, "type": "private", "first_name": "Anna"})
        } else {
            json!({"id": chat_id, "type": "supergroup", "title": "Fitting room"})
        },
    });
    if !photo {
        let text = call.params.get("text").cloned().unwrap_or_default();
        match text.chars().count() {
            0 => return reply_err(400, "Bad Request: message text is empty", None),
            n if n > 4096 => return reply_err(400, "Bad Request: message is too long", None),
            _ => {}
        }
        message["text"] = json!(text);
        return reply_ok(message);
    }
    if let Some(caption) = call.params.get("caption").filter(|c| !c.is_empty()) {
        if caption.chars().count() > 1024 {
            return reply_err(400, "Bad Request: message caption is too long", None);
        }
        message["caption"] = json!(caption);
    }
    let sizes = match (&call.photo, call.params.get("photo")) {
        (Some(upload), _) => {
            if upload.bytes.len() > 10 * 1024 * 1024 {
                return reply_err(400, "Bad Request: file is too big", None);
            }
            let Ok((w, h)) = image::ImageReader::new(Cursor::new(&upload.bytes))
                .with_guessed_format()
                .map_err(|_| ())
                .and_then(|r| r.into_dimensions().map_err(|_| ()))
            else {
                return reply_err(400, "Bad Request: IMAGE_PROCESS_FAILED", None);
            };
            if w + h > 10_000 || w.max(h) > 20 * w.min(h) {
                return reply_err(400, "Bad Request: PHOTO_INVALID_DIMENSIONS", None);
            }
            photo_sizes(w, h, upload.bytes.len())
        }
        (None, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
            // The fake cannot fetch URLs: behave as when Telegram could not.
            return reply_err(
                400,
                "Bad Request: wrong file identifier/HTTP URL specified",
                None,
            );
        }
        (None, Some(file_id)) if !file_id.is_empty() => photo_sizes(960, 1280, 98_311),
        _ => return reply_err(400, "Bad Request: there is no photo in the request", None),
    };
    message["photo"] = sizes;
    reply_ok(message)
}

/// Telegram's renditions: a thumbnail and the photo scaled to at most 1280, largest last.
fn photo_sizes(w: u32, h: u32, bytes: usize) -> Value {
    let scaled = |side: u32| {
        let long = w.max(h);
        if long <= side {
            (w, h)
        } else {
            (
                (u64::from(w) * u64::from(side) / u64::from(long)).max(1) as u32,
                (u64::from(h) * u64::from(side) / u64::from(long)).max(1) as u32,
            )
        }
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    [
        (90u32, bytes / 60 + 100),
        (320, bytes / 8 + 100),
        (1280, bytes),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (side, size))| {
        let (sw, sh) = scaled(side);
        json!({
            "file_id": format!("AgACAgIAAxkBAAI{}{i}", &id[..12]),
            "file_unique_id": format!("AQAD{}{i}", &id[12..20]),
            "width": sw,
            "height": sh,
            "file_size": size,
        })
    })
    .collect::<Vec<_>>()
    .into()
}

/// Reads the parameters of a call, whatever its encoding.
async fn parse_call(req: &HttpRequest, body: Bytes, method: &str) -> Result<Call, String> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut params = HashMap::new();
    let mut photo = None;
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        params.insert(k.into_owned(), v.into_owned());
    }
    if content_type.starts_with("application/json") {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&body) else {
            return Err("Bad Request: can't parse JSON object".into());
        };
        params.extend(flatten(map));
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in form_urlencoded::parse(&body) {
            params.insert(k.into_owned(), v.into_owned());
        }
    } else if content_type.starts_with("multipart/form-data") {
        let stream =
            futures_util::stream::once(
                async move { Ok::<_, actix_web::error::PayloadError>(body) },
            );
        let mut form = actix_multipart::Multipart::new(req.headers(), stream);
        while let Some(mut field) = form
            .try_next()
            .await
            .map_err(|e| format!("Bad Request: bad multipart: {e}"))?
        {
            let name = field.name().unwrap_or_default().to_owned();
            let filename = field
                .content_disposition()
                .and_then(|cd| cd.get_filename())
                .map(str::to_owned);
            let field_type = field.content_type().map(|m| m.to_string());
            let mut bytes = Vec::new();
            while let Some(chunk) = field
                .try_next()
                .await
                .map_err(|e| format!("Bad Request: bad multipart: {e}"))?
            {
                bytes.extend_from_slice(&chunk);
            }
            if filename.is_some() {
                if name == "photo" {
                    photo = Some(Upload {
                        filename,
                        content_type: field_type,
                        bytes,
                    });
                }
            } else {
                params.insert(name, String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    Ok(Call {
        method: method.to_owned(),
        params,
        photo,
        content_type,
    })
}

fn flatten(map: Map<String, Value>) -> impl Iterator<Item = (String, String)> {
    map.into_iter().map(|(k, v)| {
        let v = match v {
            Value::String(s) => s,
            other => other.to_string(),
        };
        (k, v)
    })
}

/// Stars invoices: XTR, no provider token, exactly one price in whole Stars.
fn create_invoice_link(call: &Call) -> HttpResponse {
    let p = &call.params;
    let chars = |k: &str| p.get(k).map_or(0, |v| v.chars().count());
    if !(1..=32).contains(&chars("title")) || !(1..=255).contains(&chars("description")) {
        return reply_err(400, "Bad Request: invalid title or description", None);
    }
    if !p
        .get("payload")
        .is_some_and(|v| (1..=128).contains(&v.len()))
    {
        return reply_err(400, "Bad Request: INVOICE_PAYLOAD_INVALID", None);
    }
    if p.get("currency").map(String::as_str) != Some("XTR")
        || p.get("provider_token").is_some_and(|t| !t.is_empty())
    {
        return reply_err(400, "Bad Request: CURRENCY_INVALID", None);
    }
    let prices: Value = p
        .get("prices")
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or(Value::Null);
    let valid = prices.as_array().is_some_and(|a| {
        a.len() == 1 && a[0]["label"].is_string() && a[0]["amount"].as_i64().is_some_and(|n| n > 0)
    });
    if !valid {
        return reply_err(400, "Bad Request: STARS_INVOICE_INVALID", None);
    }
    reply_ok(json!(format!(
        "https://t.me/${}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )))
}

fn answer_pre_checkout_query(inner: &Inner, call: &Call) -> HttpResponse {
    let Some(id) = call.params.get("pre_checkout_query_id") else {
        return reply_err(400, "Bad Request: QUERY_ID_INVALID", None);
    };
    let ok = match call.params.get("ok").map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        _ => return reply_err(400, "Bad Request: ok is required", None),
    };
    let error_message = call.params.get("error_message").cloned();
    if !ok && error_message.as_deref().is_none_or(str::is_empty) {
        return reply_err(400, "Bad Request: error_message is required", None);
    }
    let Some(pushed) = inner.pushed_queries.lock().unwrap().get(id).copied() else {
        return reply_err(400, "Bad Request: QUERY_ID_INVALID", None);
    };
    let after = pushed.elapsed();
    if after > Duration::from_secs(10) {
        return reply_err(
            400,
            "Bad Request: query is too old and response timeout expired",
            None,
        );
    }
    inner.answers.lock().unwrap().insert(
        id.clone(),
        PreCheckoutAnswer {
            ok,
            error_message,
            after,
        },
    );
    reply_ok(json!(true))
}

/// Parses a parameter sent as JSON (`reply_markup`, `commands`, ...).
pub fn json_param(call: &Call, name: &str) -> Value {
    call.params
        .get(name)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or(Value::Null)
}

fn edit_message_text(inner: &Inner, call: &Call) -> HttpResponse {
    let (Some(chat_id), Some(message_id)) = (
        call.chat_id(),
        call.params
            .get("message_id")
            .and_then(|m| m.parse::<i64>().ok()),
    ) else {
        return reply_err(400, "Bad Request: message to edit not found", None);
    };
    if inner.blocked.lock().unwrap().contains(&chat_id) {
        return reply_err(403, "Forbidden: bot was blocked by the user", None);
    }
    let text = call.params.get("text").cloned().unwrap_or_default();
    if text.is_empty() {
        return reply_err(400, "Bad Request: message text is empty", None);
    }
    reply_ok(json!({
        "message_id": message_id,
        "date": chrono::Utc::now().timestamp(),
        "edit_date": chrono::Utc::now().timestamp(),
        "from": bot_user(),
        "chat": {"id": chat_id, "type": "private", "first_name": "Anna"},
        "text": text,
    }))
}

fn set_webhook(inner: &Inner, call: &Call) -> HttpResponse {
    let url = call.params.get("url").cloned().unwrap_or_default();
    if !url.is_empty() && !url.starts_with("https://") && !url.starts_with("http://") {
        return reply_err(400, "Bad Request: bad webhook: invalid URL", None);
    }
    *inner.webhook.lock().unwrap() = Some(call.params.clone()).filter(|_| !url.is_empty());
    reply_ok(json!(true))
}

fn webhook_info(inner: &Inner) -> HttpResponse {
    let webhook = inner.webhook.lock().unwrap().clone();
    let Some(params) = webhook else {
        return reply_ok(
            json!({"url": "", "has_custom_certificate": false, "pending_update_count": 0}),
        );
    };
    let allowed: Value = params
        .get("allowed_updates")
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or(Value::Null);
    reply_ok(json!({
        "url": params.get("url"),
        "has_custom_certificate": false,
        "pending_update_count": 0,
        "max_connections": 40,
        "allowed_updates": allowed,
    }))
}

/// At most 100 commands of 1-32 lowercase letters, digits and underscores, with descriptions of
/// 1-256 characters.
fn set_my_commands(call: &Call) -> HttpResponse {
    let commands = json_param(call, "commands");
    let valid = commands.as_array().is_some_and(|list| {
        list.len() <= 100
            && list.iter().all(|c| {
                let name = c["command"].as_str().unwrap_or("");
                let description = c["description"].as_str().map_or(0, |d| d.chars().count());
                (1..=32).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    && (1..=256).contains(&description)
            })
    });
    if !valid {
        return reply_err(400, "Bad Request: BOT_COMMAND_INVALID", None);
    }
    reply_ok(json!(true))
}
