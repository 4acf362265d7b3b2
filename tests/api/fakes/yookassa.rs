//! A fake YooKassa API v3: Basic auth, `Idempotence-Key` semantics (same key + same body
//! replays the first reply, a different body is 400), payment creation with 54-FZ receipt
//! checks, GET as the truth, a payment state machine the test drives, refunds, scripted
//! failures, and a notification sender whose source address the test picks.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{Recorded, Running, bind};

pub const SHOP_ID: &str = "506751";
pub const SECRET_KEY: &str = "test_Fh8hUAVVBGUGbjmlzba6TB0iyUbos_lueTHE-axOwM0";

/// How the next call of a route behaves (an empty queue is Normal).
#[derive(Debug, Clone)]
pub enum Mode {
    /// 500 without doing anything.
    Error500Before,
    /// Do the operation (and remember it under the key), then answer 500.
    Error500After,
    /// This status with this error `code` and `parameter`, doing nothing.
    Error(u16, &'static str, Option<&'static str>),
    /// Create the payment, let it succeed and deliver `payment.succeeded` to the webhook,
    /// and only then answer the create (with the payment as it was when created).
    NotifyBeforeReply,
}

/// Where a notification appears to come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The TCP peer (127.0.0.1), no header.
    Direct,
    /// The TCP peer plus this `X-Forwarded-For` header.
    Forwarded(String),
}

#[derive(Default)]
struct Inner {
    requests: Mutex<Vec<Recorded>>,
    payments: Mutex<HashMap<String, Value>>,
    refunds: Mutex<HashMap<String, Value>>,
    /// Idempotence-Key → (request body, status, reply).
    keys: Mutex<HashMap<String, (Value, u16, Value)>>,
    create_modes: Mutex<VecDeque<Mode>>,
    get_modes: Mutex<VecDeque<Mode>>,
    webhook_url: Mutex<Option<String>>,
    next: AtomicU64,
    base_url: Mutex<String>,
}

pub struct FakeYooKassa {
    /// What `YOOKASSA_BASE_URL` must be (`…/v3`).
    pub base_url: String,
    inner: Arc<Inner>,
    http: reqwest::Client,
    _server: Running,
}

impl FakeYooKassa {
    pub async fn start() -> Self {
        let (listener, root) = bind();
        let inner = Arc::new(Inner::default());
        *inner.base_url.lock().unwrap() = root.clone();
        let data = web::Data::from(inner.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/v3/payments", web::post().to(create_payment))
                .route("/v3/payments/{id}", web::get().to(get_payment))
                .route("/v3/refunds/{id}", web::get().to(get_refund))
                .default_service(web::to(not_found))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .unwrap()
        .run();
        Self {
            base_url: format!("{root}/v3"),
            inner,
            http: reqwest::Client::new(),
            _server: Running::spawn(server),
        }
    }

    /// The settings that point the app at this fake, with notifications accepted from
    /// 127.0.0.0/8 (the sender's address).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("YOOKASSA_SHOP_ID", SHOP_ID.to_owned()),
            ("YOOKASSA_SECRET_KEY", SECRET_KEY.to_owned()),
            ("YOOKASSA_BASE_URL", self.base_url.clone()),
            ("YOOKASSA_ALLOWED_NETWORKS", "127.0.0.0/8".to_owned()),
        ]
    }

    /// Where `Mode::NotifyBeforeReply` delivers.
    pub fn set_webhook(&self, url: &str) {
        *self.inner.webhook_url.lock().unwrap() = Some(url.to_owned());
    }

    pub fn push_create(&self, mode: Mode) {
        self.inner.create_modes.lock().unwrap().push_back(mode);
    }

    pub fn push_get(&self, mode: Mode) {
        self.inner.get_modes.lock().unwrap().push_back(mode);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    pub fn creates(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/v3/payments")
            .collect()
    }

    pub fn gets(&self) -> usize {
        self.requests().iter().filter(|r| r.method == "GET").count()
    }

    pub fn payment(&self, id: &str) -> Value {
        self.inner.payments.lock().unwrap()[id].clone()
    }

    pub fn payment_count(&self) -> usize {
        self.inner.payments.lock().unwrap().len()
    }

    /// The payer paid: `succeeded`, with what YooKassa adds then.
    pub fn succeed(&self, id: &str) {
        succeed(&mut self.inner.payments.lock().unwrap(), id);
    }

    pub fn cancel(&self, id: &str) {
        let mut payments = self.inner.payments.lock().unwrap();
        let p = payments.get_mut(id).unwrap();
        p["status"] = json!("canceled");
        p["cancellation_details"] =
            json!({"party": "yoo_kassa", "reason": "expired_on_confirmation"});
    }

    /// Makes GET report another amount (what a tampered or confused record looks like).
    pub fn set_amount(&self, id: &str, value: &str) {
        let mut payments = self.inner.payments.lock().unwrap();
        payments.get_mut(id).unwrap()["amount"]["value"] = json!(value);
    }

    pub fn set_metadata(&self, id: &str, metadata: Value) {
        let mut payments = self.inner.payments.lock().unwrap();
        payments.get_mut(id).unwrap()["metadata"] = metadata;
    }

    /// A succeeded refund of `value` roubles of the payment; returns its id.
    pub fn refund(&self, payment_id: &str, value: &str) -> String {
        let id = format!("{}-0015-5000-9000-{:012x}", hex8(self.bump()), self.bump());
        let refund = json!({
            "id": id, "payment_id": payment_id, "status": "succeeded",
            "amount": {"value": value, "currency": "RUB"},
            "created_at": now(),
        });
        self.inner
            .refunds
            .lock()
            .unwrap()
            .insert(id.clone(), refund);
        let mut payments = self.inner.payments.lock().unwrap();
        let p = payments.get_mut(payment_id).unwrap();
        p["refunded_amount"] = json!({"value": value, "currency": "RUB"});
        id
    }

    pub fn refund_object(&self, id: &str) -> Value {
        self.inner.refunds.lock().unwrap()[id].clone()
    }

    fn bump(&self) -> u64 {
        self.inner.next.fetch_add(1, Ordering::SeqCst)
    }

    /// A notification body as YooKassa sends it: the event and the whole object.
    pub fn notification(event: &str, object: Value) -> Value {
        json!({"type": "notification", "event": event, "object": object})
    }

    /// POSTs a notification to `url` from `source`.
    pub async fn notify(&self, url: &str, body: &Value, source: Source) -> reqwest::Response {
        let mut req = self.http.post(url).json(body);
        if let Source::Forwarded(header) = source {
            req = req.header("X-Forwarded-For", header);
        }
        req.send().await.unwrap()
    }

    /// `payment.succeeded` (or another event) carrying the payment as GET shows it now.
    pub async fn notify_payment(&self, url: &str, event: &str, id: &str) -> reqwest::Response {
        let body = Self::notification(event, self.payment(id));
        self.notify(url, &body, Source::Direct).await
    }
}

fn hex8(n: u64) -> String {
    format!("{:08x}", 0x2f00_0000 + n)
}

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn succeed(payments: &mut HashMap<String, Value>, id: &str) {
    let p = payments.get_mut(id).unwrap();
    let value = p["amount"]["value"].as_str().unwrap().to_owned();
    let (units, frac) = value.split_once('.').unwrap();
    let minor: i64 = units.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap();
    let income = minor - minor * 35 / 1000;
    p["status"] = json!("succeeded");
    p["paid"] = json!(true);
    p["refundable"] = json!(true);
    p["captured_at"] = json!(now());
    p["income_amount"] =
        json!({"value": format!("{}.{:02}", income / 100, income % 100), "currency": "RUB"});
    p["payment_method"] = json!({"type": "bank_card", "id": id, "saved": false, "title": "Bank card *4444",
        "card": {"first6": "555555", "last4": "4444", "expiry_month": "12", "expiry_year": "2030", "card_type": "MasterCard"}});
}

fn error(status: u16, code: &str, description: &str, parameter: Option<&str>) -> HttpResponse {
    let mut body = json!({"type": "error", "id": uuid::Uuid::new_v4().to_string(), "code": code, "description": description});
    if let Some(p) = parameter {
        body["parameter"] = json!(p);
    }
    HttpResponse::build(StatusCode::from_u16(status).unwrap()).json(body)
}

async fn not_found(req: HttpRequest, body: Bytes, inner: web::Data<Inner>) -> HttpResponse {
    inner
        .requests
        .lock()
        .unwrap()
        .push(Recorded::from_request(&req, &body));
    error(404, "not_found", "Incorrect URL", None)
}

fn authorised(req: &HttpRequest) -> bool {
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{SHOP_ID}:{SECRET_KEY}"));
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Basic {expected}"))
}

fn unauthorised() -> HttpResponse {
    error(
        401,
        "invalid_credentials",
        "Login has illegal format. Use shopId as login.",
        None,
    )
}

fn two_decimals(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.split_once('.').is_some_and(|(u, f)| {
            !u.is_empty()
                && u.bytes().all(|b| b.is_ascii_digit())
                && f.len() == 2
                && f.bytes().all(|b| b.is_ascii_digit())
        })
    })
}

/// The checks YooKassa makes on a create; `Err((description, parameter))`.
fn validate(body: &Value) -> Result<(), (&'static str, &'static str)> {
    if !two_decimals(&body["amount"]["value"]) {
        return Err(("Invalid amount value", "amount.value"));
    }
    if body["amount"]["currency"] != "RUB" {
        return Err(("Invalid currency", "amount.currency"));
    }
    if !body["capture"].is_boolean() {
        return Err(("capture must be a boolean", "capture"));
    }
    let confirmation = &body["confirmation"];
    if confirmation["type"] != "redirect" || !confirmation["return_url"].is_string() {
        return Err(("Redirect confirmation needs return_url", "confirmation"));
    }
    if body["description"]
        .as_str()
        .is_some_and(|d| d.chars().count() > 128)
    {
        return Err(("Description is too long", "description"));
    }
    if let Some(meta) = body["metadata"].as_object()
        && (meta.len() > 16 || meta.values().any(|v| !v.is_string()))
    {
        return Err(("Metadata must be a flat map of strings", "metadata"));
    }
    let receipt = &body["receipt"];
    let customer = &receipt["customer"];
    if !customer["email"].is_string() && !customer["phone"].is_string() {
        return Err(("Receipt customer needs email or phone", "receipt.customer"));
    }
    let Some(items) = receipt["items"].as_array().filter(|i| !i.is_empty()) else {
        return Err(("Receipt has no items", "receipt.items"));
    };
    let mut total = 0i64;
    for item in items {
        let valid = item["description"].is_string()
            && item["quantity"].is_string()
            && two_decimals(&item["amount"]["value"])
            && item["vat_code"]
                .as_u64()
                .is_some_and(|c| (1..=12).contains(&c))
            && item["payment_mode"].is_string()
            && item["payment_subject"].is_string();
        if !valid {
            return Err(("Invalid receipt item", "receipt.items"));
        }
        let v = item["amount"]["value"].as_str().unwrap().replace('.', "");
        total += v.parse::<i64>().unwrap();
    }
    let amount: i64 = body["amount"]["value"]
        .as_str()
        .unwrap()
        .replace('.', "")
        .parse()
        .unwrap();
    if total != amount {
        return Err(("Receipt items do not add up to the amount", "receipt.items"));
    }
    Ok(())
}

async fn create_payment(req: HttpRequest, body: Bytes, inner: web::Data<Inner>) -> HttpResponse {
    inner
        .requests
        .lock()
        .unwrap()
        .push(Recorded::from_request(&req, &body));
    if !authorised(&req) {
        return unauthorised();
    }
    let Some(key) = req
        .headers()
        .get("idempotence-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 64)
        .map(str::to_owned)
    else {
        return error(
            400,
            "invalid_request",
            "Idempotence key is missing or too long",
            Some("Idempotence-Key"),
        );
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "invalid_request", "Request body is not JSON", None);
    };
    // One key is one operation, even for requests racing each other: the key table stays
    // locked from the look-up to the insert (nothing in between awaits).
    let (id, payment, mode) = {
        let mut keys = inner.keys.lock().unwrap();
        if let Some((seen, status, reply)) = keys.get(&key).cloned() {
            if seen != request {
                return error(
                    400,
                    "invalid_request",
                    "Idempotence key duplicated",
                    Some("Idempotence-Key"),
                );
            }
            return HttpResponse::build(StatusCode::from_u16(status).unwrap()).json(reply);
        }
        let mode = inner.create_modes.lock().unwrap().pop_front();
        match &mode {
            Some(Mode::Error500Before) => {
                return error(500, "internal_server_error", "Internal server error", None);
            }
            Some(Mode::Error(status, code, parameter)) => {
                return error(*status, code, "Request rejected", *parameter);
            }
            _ => {}
        }
        if let Err((description, parameter)) = validate(&request) {
            return error(400, "invalid_request", description, Some(parameter));
        }
        let n = inner.next.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-000f-5000-8000-{:012x}", hex8(n), n * 7919);
        let root = inner.base_url.lock().unwrap().clone();
        let payment = json!({
            "id": id, "status": "pending", "paid": false, "amount": request["amount"],
            "created_at": now(), "description": request["description"],
            "confirmation": {"type": "redirect", "confirmation_url": format!("{root}/payments/confirm?orderId={id}")},
            "metadata": request["metadata"], "recipient": {"account_id": SHOP_ID, "gateway_id": "100700"},
            "refundable": false, "test": true,
        });
        inner
            .payments
            .lock()
            .unwrap()
            .insert(id.clone(), payment.clone());
        keys.insert(key, (request, 200, payment.clone()));
        (id, payment, mode)
    };
    match mode {
        Some(Mode::Error500After) => {
            error(500, "internal_server_error", "Internal server error", None)
        }
        Some(Mode::NotifyBeforeReply) => {
            succeed(&mut inner.payments.lock().unwrap(), &id);
            let url = inner.webhook_url.lock().unwrap().clone().unwrap();
            let object = inner.payments.lock().unwrap()[&id].clone();
            let res = reqwest::Client::new()
                .post(url)
                .json(&FakeYooKassa::notification("payment.succeeded", object))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "the early notification was accepted");
            HttpResponse::Ok().json(payment)
        }
        _ => HttpResponse::Ok().json(payment),
    }
}

async fn get_payment(
    req: HttpRequest,
    path: web::Path<String>,
    inner: web::Data<Inner>,
) -> HttpResponse {
    inner
        .requests
        .lock()
        .unwrap()
        .push(Recorded::from_request(&req, &Bytes::new()));
    if !authorised(&req) {
        return unauthorised();
    }
    match inner.get_modes.lock().unwrap().pop_front() {
        Some(Mode::Error500Before | Mode::Error500After) => {
            return error(500, "internal_server_error", "Internal server error", None);
        }
        Some(Mode::Error(status, code, parameter)) => {
            return error(status, code, "Request rejected", parameter);
        }
        _ => {}
    }
    match inner.payments.lock().unwrap().get(path.as_str()) {
        Some(p) => HttpResponse::Ok().json(p),
        None => error(404, "not_found", "Payment not found", Some("payment_id")),
    }
}

async fn get_refund(
    req: HttpRequest,
    path: web::Path<String>,
    inner: web::Data<Inner>,
) -> HttpResponse {
    inner
        .requests
        .lock()
        .unwrap()
        .push(Recorded::from_request(&req, &Bytes::new()));
    if !authorised(&req) {
        return unauthorised();
    }
    match inner.refunds.lock().unwrap().get(path.as_str()) {
        Some(r) => HttpResponse::Ok().json(r),
        None => error(404, "not_found", "Refund not found", Some("refund_id")),
    }
}
