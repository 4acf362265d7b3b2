//! A fake kie.ai: `createTask`, `recordInfo`, `chat/credit`, result images, and a callback
//! sender. Envelopes `{code,msg,data}` at HTTP 200 (or mirroring the code when switched),
//! `param`/`resultJson` as JSON inside strings, tasks that advance one state per poll.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Recorded, Running, bind, now_ms, png};

pub const API_KEY: &str = "kie-test-api-key";
pub const WEBHOOK_KEY: &[u8] = b"kie-test-webhook-hmac-key";
pub const EDIT_MODEL: &str = "google/nano-banana-edit";
pub const TEXT_MODEL: &str = "google/nano-banana";

const CREATE: &str = "/api/v1/jobs/createTask";
const RECORD: &str = "/api/v1/jobs/recordInfo";
const ASPECT_RATIOS: [&str; 11] = [
    "1:1", "9:16", "16:9", "3:4", "4:3", "3:2", "2:3", "5:4", "4:5", "21:9", "auto",
];

/// How the next call to a route behaves (one mode is used per call; an empty queue is Normal).
#[derive(Debug, Clone)]
pub enum Mode {
    Normal,
    /// An error envelope with this `code` and `msg` (HTTP 200 unless status mirroring is on).
    Code(i64, &'static str),
    /// A raw HTTP reply (a proxy's error page, say).
    Http(u16, &'static str),
    /// Do the work, then answer only after this long (a create whose reply is lost).
    SlowReply(Duration),
}

/// How a task's state moves as it is polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// waiting → queuing → generating → success, one step per poll.
    Advance,
    /// As `Advance`, ending in `fail` with this `failCode`/`failMsg`.
    Fail { code: String, msg: String },
    /// waiting → queuing → generating forever.
    StuckGenerating,
    /// Only [`FakeKie::set_state`] moves it.
    Manual,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Waiting,
    Queuing,
    Generating(u8),
    Success,
    Fail { code: String, msg: String },
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Queuing => "queuing",
            Self::Generating(_) => "generating",
            Self::Success => "success",
            Self::Fail { .. } => "fail",
        }
    }

    fn terminal(&self) -> bool {
        matches!(self, Self::Success | Self::Fail { .. })
    }
}

#[derive(Debug, Clone)]
struct Task {
    model: String,
    param: String,
    polls: u32,
    plan: Plan,
    state: State,
    created_ms: i64,
    updated_ms: i64,
}

/// How a callback is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    Valid,
    Unsigned,
    BadSignature,
}

#[derive(Debug, Clone)]
pub struct CallbackOptions {
    pub signing: Signing,
    /// `X-Webhook-Timestamp` (Unix seconds); now when `None`.
    pub timestamp: Option<i64>,
    /// Send `data.task_id` instead of `data.taskId` (the vendor's verification sample).
    pub snake_case_id: bool,
}

impl Default for CallbackOptions {
    fn default() -> Self {
        Self {
            signing: Signing::Valid,
            timestamp: None,
            snake_case_id: false,
        }
    }
}

/// A callback as kie.ai would POST it.
#[derive(Debug, Clone)]
pub struct Callback {
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    pub body: Vec<u8>,
}

struct Inner {
    base_url: String,
    requests: Mutex<Vec<Recorded>>,
    create_modes: Mutex<VecDeque<Mode>>,
    record_modes: Mutex<VecDeque<Mode>>,
    tasks: Mutex<HashMap<String, Task>>,
    default_plan: Mutex<Plan>,
    accepted: Mutex<VecDeque<Instant>>,
    last_id_ms: Mutex<i64>,
    mirror_status: AtomicBool,
    unknown_as_404: AtomicBool,
    images_gone: AtomicBool,
    /// While set, result images are answered only as permits are added to `released`.
    hold_results: AtomicBool,
    released: tokio::sync::Semaphore,
    png: Vec<u8>,
}

pub struct FakeKie {
    pub base_url: String,
    inner: Arc<Inner>,
    _server: Running,
}

impl FakeKie {
    pub async fn start() -> Self {
        let (listener, base_url) = bind();
        let inner = Arc::new(Inner {
            base_url: base_url.clone(),
            requests: Mutex::default(),
            create_modes: Mutex::default(),
            record_modes: Mutex::default(),
            tasks: Mutex::default(),
            default_plan: Mutex::new(Plan::Advance),
            accepted: Mutex::default(),
            last_id_ms: Mutex::new(0),
            mirror_status: AtomicBool::new(false),
            unknown_as_404: AtomicBool::new(false),
            images_gone: AtomicBool::new(false),
            hold_results: AtomicBool::new(false),
            released: tokio::sync::Semaphore::new(0),
            png: png(96, 128),
        });
        let data = web::Data::from(inner.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(16 << 20))
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

    pub fn push_create(&self, mode: Mode) {
        self.inner.create_modes.lock().unwrap().push_back(mode);
    }

    pub fn push_record(&self, mode: Mode) {
        self.inner.record_modes.lock().unwrap().push_back(mode);
    }

    /// The plan of tasks created from now on.
    pub fn set_default_plan(&self, plan: Plan) {
        *self.inner.default_plan.lock().unwrap() = plan;
    }

    pub fn set_plan(&self, task_id: &str, plan: Plan) {
        self.inner
            .tasks
            .lock()
            .unwrap()
            .get_mut(task_id)
            .unwrap()
            .plan = plan;
    }

    /// Moves a task by hand (and stops it advancing on its own).
    pub fn set_state(&self, task_id: &str, state: State) {
        let mut tasks = self.inner.tasks.lock().unwrap();
        let task = tasks.get_mut(task_id).unwrap();
        task.plan = Plan::Manual;
        task.state = state;
        task.updated_ms = now_ms();
    }

    /// Error replies carry their `code` as the HTTP status too.
    pub fn mirror_status(&self, on: bool) {
        self.inner.mirror_status.store(on, Ordering::SeqCst);
    }

    /// Unknown task ids get the documented 404 instead of the observed 422.
    pub fn unknown_as_404(&self, on: bool) {
        self.inner.unknown_as_404.store(on, Ordering::SeqCst);
    }

    /// Result URLs answer 404, as after their ~24 h expiry.
    /// Result downloads wait (their request is recorded at once) until [`Self::release_results`].
    pub fn hold_results(&self) {
        self.inner.hold_results.store(true, Ordering::SeqCst);
    }

    /// Lets every held result download, and those to come, through.
    pub fn release_results(&self) {
        self.inner.hold_results.store(false, Ordering::SeqCst);
        self.inner
            .released
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }

    pub fn images_gone(&self, on: bool) {
        self.inner.images_gone.store(on, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    pub fn create_calls(&self) -> Vec<Recorded> {
        self.requests_to(CREATE)
    }

    pub fn record_calls(&self) -> Vec<Recorded> {
        self.requests_to(RECORD)
    }

    pub fn task_ids(&self) -> Vec<String> {
        self.inner.tasks.lock().unwrap().keys().cloned().collect()
    }

    pub fn state_of(&self, task_id: &str) -> Option<State> {
        self.inner
            .tasks
            .lock()
            .unwrap()
            .get(task_id)
            .map(|t| t.state.clone())
    }

    /// The PNG every result URL serves.
    pub fn png(&self) -> &[u8] {
        &self.inner.png
    }

    pub fn result_url(&self, task_id: &str) -> String {
        format!("{}/results/{task_id}.png", self.base_url)
    }

    /// `len` bytes sent in chunks, without a Content-Length.
    pub fn stream_url(&self, len: usize) -> String {
        format!("{}/results/stream/{len}", self.base_url)
    }

    /// A 302 to `to`.
    pub fn redirect_url(&self, to: &str) -> String {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("to", to)
            .finish();
        format!("{}/results/redirect?{query}", self.base_url)
    }

    /// The callback kie.ai would send for the task in its current state.
    pub fn callback(&self, task_id: &str, options: &CallbackOptions) -> Callback {
        let task = self.inner.tasks.lock().unwrap().get(task_id).cloned();
        let (code, msg, mut data) = match &task {
            Some(task) => {
                let data = record_data(&self.inner.base_url, task_id, task);
                match task.state {
                    State::Fail { .. } => (501, "Playground task failed.", data),
                    _ => (200, "Playground task completed successfully.", data),
                }
            }
            None => (
                200,
                "Playground task completed successfully.",
                json!({"taskId": task_id, "state": "success"}),
            ),
        };
        if options.snake_case_id {
            let map = data.as_object_mut().unwrap();
            let id = map.remove("taskId").unwrap();
            map.insert("task_id".into(), id);
        }
        let timestamp = options
            .timestamp
            .unwrap_or_else(|| chrono::Utc::now().timestamp())
            .to_string();
        let signature = match options.signing {
            Signing::Unsigned => None,
            Signing::Valid => Some(sign(WEBHOOK_KEY, task_id, &timestamp)),
            Signing::BadSignature => Some(sign(b"some-other-key", task_id, &timestamp)),
        };
        Callback {
            timestamp: (options.signing != Signing::Unsigned).then_some(timestamp),
            signature,
            body: serde_json::to_vec(&json!({"code": code, "msg": msg, "data": data})).unwrap(),
        }
    }

    /// POSTs the callback to `url`; returns the receiver's status.
    pub async fn send_callback(
        &self,
        url: &str,
        task_id: &str,
        options: &CallbackOptions,
    ) -> reqwest::StatusCode {
        let callback = self.callback(task_id, options);
        let mut req = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(callback.body);
        if let Some(ts) = callback.timestamp {
            req = req.header("X-Webhook-Timestamp", ts);
        }
        if let Some(sig) = callback.signature {
            req = req.header("X-Webhook-Signature", sig);
        }
        req.send().await.unwrap().status()
    }
}

pub fn sign(key: &[u8], task_id: &str, timestamp: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{task_id}.{timestamp}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn handle(req: HttpRequest, body: Bytes, inner: web::Data<Inner>) -> HttpResponse {
    inner
        .requests
        .lock()
        .unwrap()
        .push(Recorded::from_request(&req, &body));
    let path = req.path().to_owned();
    match (req.method().as_str(), path.as_str()) {
        ("POST", CREATE) => {
            let mode = inner.create_modes.lock().unwrap().pop_front();
            scripted(&inner, mode, || create_task(&inner, &req, &body)).await
        }
        ("GET", RECORD) => {
            let mode = inner.record_modes.lock().unwrap().pop_front();
            scripted(&inner, mode, || record_info(&inner, &req)).await
        }
        ("GET", "/api/v1/chat/credit") if authorised(&req) => {
            envelope(&inner, 200, "success", json!(100))
        }
        ("GET", "/api/v1/chat/credit") => unauthorised(&inner),
        ("GET", "/results/redirect") => {
            let to = form_urlencoded::parse(req.query_string().as_bytes())
                .find(|(k, _)| k == "to")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            HttpResponse::Found()
                .insert_header(("location", to))
                .finish()
        }
        ("GET", p) if p.starts_with("/results/stream/") => {
            let len: usize = p["/results/stream/".len()..].parse().unwrap_or(0);
            let chunks: Vec<Result<Bytes, actix_web::Error>> = (0..len)
                .step_by(8192)
                .map(|start| Ok(Bytes::from(vec![0x42u8; (len - start).min(8192)])))
                .collect();
            HttpResponse::Ok()
                .content_type("application/octet-stream")
                .streaming(futures_util::stream::iter(chunks))
        }
        ("GET", p) if p.starts_with("/results/") && p.ends_with(".png") => {
            if inner.hold_results.load(Ordering::SeqCst)
                && let Ok(permit) = inner.released.acquire().await
            {
                permit.forget();
            }
            if inner.images_gone.load(Ordering::SeqCst) {
                HttpResponse::NotFound().body("Not Found")
            } else {
                HttpResponse::Ok()
                    .content_type("image/png")
                    .body(inner.png.clone())
            }
        }
        _ => HttpResponse::NotFound().json(json!({"code": 404, "msg": "Not Found", "data": null})),
    }
}

/// Applies a scripted mode around the route's normal behaviour.
async fn scripted(
    inner: &Inner,
    mode: Option<Mode>,
    normal: impl FnOnce() -> HttpResponse,
) -> HttpResponse {
    match mode.unwrap_or(Mode::Normal) {
        Mode::Normal => normal(),
        Mode::Code(code, msg) => envelope(inner, code, msg, Value::Null),
        Mode::Http(status, body) => HttpResponse::build(StatusCode::from_u16(status).unwrap())
            .content_type("text/html")
            .body(body),
        Mode::SlowReply(delay) => {
            let reply = normal();
            tokio::time::sleep(delay).await;
            reply
        }
    }
}

fn envelope(inner: &Inner, code: i64, msg: &str, data: Value) -> HttpResponse {
    let status = if code != 200 && inner.mirror_status.load(Ordering::SeqCst) {
        StatusCode::from_u16(code as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    } else {
        StatusCode::OK
    };
    HttpResponse::build(status).json(json!({"code": code, "msg": msg, "data": data}))
}

fn authorised(req: &HttpRequest) -> bool {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {API_KEY}"))
}

fn unauthorised(inner: &Inner) -> HttpResponse {
    envelope(
        inner,
        401,
        "You do not have access permissions",
        Value::Null,
    )
}

fn create_task(inner: &Inner, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    if !authorised(req) {
        return unauthorised(inner);
    }
    let invalid = |msg: &str| envelope(inner, 422, msg, Value::Null);
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return invalid("Invalid JSON body");
    };
    let model = request["model"].as_str().unwrap_or_default().to_owned();
    if ![EDIT_MODEL, TEXT_MODEL].contains(&model.as_str()) {
        return invalid("The model is not supported");
    }
    let input = &request["input"];
    if !input.is_object() {
        return invalid("input is required");
    }
    match input["prompt"].as_str() {
        Some(p) if !p.trim().is_empty() && p.chars().count() <= 5000 => {}
        Some(p) if !p.trim().is_empty() => return invalid("prompt is too long"),
        _ => return invalid("prompt is required"),
    }
    if let Some(ratio) = input.get("aspect_ratio") {
        if !ratio.as_str().is_some_and(|r| ASPECT_RATIOS.contains(&r)) {
            return invalid("aspect_ratio is invalid");
        }
    } else if input.get("image_size").is_none() {
        // Both are optional upstream; our client always sends one, so insist on it here.
        return invalid("aspect_ratio is required");
    }
    if input
        .get("output_format")
        .is_some_and(|f| !matches!(f.as_str(), Some("png" | "jpeg")))
    {
        return invalid("output_format is invalid");
    }
    if model == EDIT_MODEL {
        let urls = input["image_urls"].as_array().cloned().unwrap_or_default();
        if urls.is_empty() || urls.len() > 10 {
            return invalid("image_urls must hold 1 to 10 URLs");
        }
        if !urls.iter().all(|u| {
            u.as_str()
                .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"))
        }) {
            return invalid("image_urls must be URLs");
        }
    }
    {
        let mut accepted = inner.accepted.lock().unwrap();
        let now = Instant::now();
        while accepted
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(10))
        {
            accepted.pop_front();
        }
        if accepted.len() >= 20 {
            return envelope(
                inner,
                429,
                "Your call frequency is too high. Please try again later.",
                Value::Null,
            );
        }
        accepted.push_back(now);
    }
    let id = {
        let mut last = inner.last_id_ms.lock().unwrap();
        *last = now_ms().max(*last + 1);
        format!("task_google_{}", *last)
    };
    let now = now_ms();
    let task = Task {
        model,
        param: request.to_string(),
        polls: 0,
        plan: inner.default_plan.lock().unwrap().clone(),
        state: State::Waiting,
        created_ms: now,
        updated_ms: now,
    };
    inner.tasks.lock().unwrap().insert(id.clone(), task);
    envelope(inner, 200, "success", json!({"taskId": id}))
}

fn record_info(inner: &Inner, req: &HttpRequest) -> HttpResponse {
    if !authorised(req) {
        return unauthorised(inner);
    }
    let Some(task_id) = form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "taskId")
        .map(|(_, v)| v.into_owned())
    else {
        return envelope(inner, 422, "taskId is required", Value::Null);
    };
    let mut tasks = inner.tasks.lock().unwrap();
    let Some(task) = tasks.get_mut(&task_id) else {
        return if inner.unknown_as_404.load(Ordering::SeqCst) {
            envelope(inner, 404, "Task not found", Value::Null)
        } else {
            envelope(inner, 422, "recordInfo is null", Value::Null)
        };
    };
    task.polls += 1;
    if !task.state.terminal() {
        let next = match (&task.plan, task.polls) {
            (Plan::Manual, _) => task.state.clone(),
            (_, 1) => State::Waiting,
            (_, 2) => State::Queuing,
            (Plan::StuckGenerating, n) => State::Generating((40 + n).min(99) as u8),
            (_, 3) => State::Generating(60),
            (Plan::Advance, _) => State::Success,
            (Plan::Fail { code, msg }, _) => State::Fail {
                code: code.clone(),
                msg: msg.clone(),
            },
        };
        if next != task.state {
            task.state = next;
            task.updated_ms = now_ms();
        }
    }
    let data = record_data(&inner.base_url, &task_id, task);
    drop(tasks);
    envelope(inner, 200, "success", data)
}

/// The `data` of a recordInfo reply (and of a callback).
fn record_data(base_url: &str, task_id: &str, task: &Task) -> Value {
    let (result_json, fail_code, fail_msg) = match &task.state {
        State::Success => (
            json!({"resultUrls": [format!("{base_url}/results/{task_id}.png")]}).to_string(),
            String::new(),
            String::new(),
        ),
        State::Fail { code, msg } => (String::new(), code.clone(), msg.clone()),
        _ => (String::new(), String::new(), String::new()),
    };
    let terminal = task.state.terminal();
    let mut data = json!({
        "taskId": task_id,
        "model": task.model,
        "state": task.state.name(),
        "param": task.param,
        "resultJson": result_json,
        "failCode": fail_code,
        "failMsg": fail_msg,
        "costTime": if terminal { json!(task.updated_ms - task.created_ms) } else { Value::Null },
        "completeTime": if terminal { json!(task.updated_ms) } else { Value::Null },
        "createTime": task.created_ms,
        "updateTime": task.updated_ms,
    });
    match &task.state {
        State::Generating(p) => data["progress"] = json!(p),
        State::Success => data["progress"] = json!(100),
        _ => {}
    }
    if terminal {
        data["consumeCredits"] = json!(if task.state == State::Success { 4 } else { 0 });
        data["remainedCredits"] = json!(996);
    }
    data
}
