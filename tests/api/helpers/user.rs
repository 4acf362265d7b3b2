//! A signed-in test user: `app.user().await`, or `app.user_with(NewUser::id(555).language("ru"))`,
//! with one method per API call a test makes, each asserting the documented success status and
//! returning the typed response. Calls expected to fail go through `get`/`post`/`request` and
//! `assert_problem`.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

use super::fixtures::{grant_credits, photo, photo_part};
use super::responses::{
    Balance, ChatReply, FittingUpload, Generation, GenerationEnvelope, LedgerPage, Login,
    PaymentCreated, Referrals, ServerEvent, Session, StarsInvoice, Upload,
};
use super::{BOT_TOKEN, TestApp, now};

/// Who signs in: the Telegram user of the initData, its extra fields and the bot it is signed
/// for. By default `{"id", "first_name": "Test", "username": "user<id>", "language_code": "en"}`
/// (as `helpers::init_data` signs it) with the app's test bot token, dated now.
#[derive(Debug, Clone)]
pub struct NewUser {
    telegram_id: Option<i64>,
    fields: serde_json::Map<String, Value>,
    /// `username: "user<id>"` unless a username was set or removed.
    default_username: bool,
    extra: Vec<(String, String)>,
    bot_token: String,
}

impl Default for NewUser {
    fn default() -> Self {
        let mut fields = serde_json::Map::new();
        fields.insert("first_name".into(), json!("Test"));
        fields.insert("language_code".into(), json!("en"));
        Self {
            telegram_id: None,
            fields,
            default_username: true,
            extra: Vec::new(),
            bot_token: BOT_TOKEN.to_owned(),
        }
    }
}

impl NewUser {
    /// The Telegram user `telegram_id`.
    pub fn id(telegram_id: i64) -> Self {
        Self {
            telegram_id: Some(telegram_id),
            ..Self::default()
        }
    }

    pub fn language(self, code: &str) -> Self {
        self.field("language_code", json!(code))
    }

    pub fn first_name(self, name: &str) -> Self {
        self.field("first_name", json!(name))
    }

    /// Sets (or, with `Value::Null`, removes) a field of the initData's `user` object.
    pub fn field(mut self, key: &str, value: Value) -> Self {
        if key == "username" {
            self.default_username = false;
        }
        if value.is_null() {
            self.fields.remove(key);
        } else {
            self.fields.insert(key.to_owned(), value);
        }
        self
    }

    /// Only `id` and `first_name: "Test"`, as a minimal Mini App sends.
    pub fn bare(mut self) -> Self {
        self.fields.clear();
        self.fields.insert("first_name".into(), json!("Test"));
        self.default_username = false;
        self
    }

    /// `start_param` of the initData (`ref_<code>` for a referral).
    pub fn start_param(mut self, param: &str) -> Self {
        self.extra.retain(|(k, _)| k != "start_param");
        self.extra.push(("start_param".into(), param.to_owned()));
        self
    }

    /// Signs for another bot (the app must run with that bot's token).
    pub fn bot_token(mut self, token: &str) -> Self {
        self.bot_token = token.to_owned();
        self
    }

    fn init_data(&self, telegram_id: i64) -> String {
        let mut user = self.fields.clone();
        user.insert("id".into(), json!(telegram_id));
        if self.default_username {
            user.insert("username".into(), json!(format!("user{telegram_id}")));
        }
        let user = Value::Object(user).to_string();
        let auth_date = now().to_string();
        let mut pairs = vec![("user", user.as_str()), ("auth_date", auth_date.as_str())];
        pairs.extend(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        atelier::auth::initdata::sign(&self.bot_token, &pairs)
    }
}

/// A user signed in to `app` through `POST /api/v1/auth/telegram`.
pub struct TestUser<'a> {
    pub app: &'a TestApp,
    pub telegram_id: i64,
    pub token: String,
    /// The login's answer.
    pub login: Login,
    new: NewUser,
}

impl TestApp {
    /// The next new user (Telegram ids 1, 2, 3, … per app), signed in.
    pub async fn user(&self) -> TestUser<'_> {
        self.user_with(NewUser::default()).await
    }

    /// A user as `new` describes, signed in.
    pub async fn user_with(&self, new: NewUser) -> TestUser<'_> {
        let telegram_id = new.telegram_id.unwrap_or_else(|| {
            self.next_telegram_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        });
        let login = sign_in(self, &new, telegram_id).await;
        TestUser {
            app: self,
            telegram_id,
            token: login.access_token.clone(),
            login,
            new,
        }
    }
}

async fn sign_in(app: &TestApp, new: &NewUser, telegram_id: i64) -> Login {
    let init = new.init_data(telegram_id);
    let res = app
        .post_json("/api/v1/auth/telegram", &json!({"init_data": init}), None)
        .await;
    ok(res, 200, "login").await
}

/// Asserts `status` and reads the body as `T`, showing the body when either fails.
pub async fn ok<T: DeserializeOwned>(res: reqwest::Response, status: u16, what: &str) -> T {
    let got = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "{what}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e} in {text}"))
}

impl TestUser<'_> {
    /// Signs in again with the same initData fields (a new token; the profile refreshed).
    pub async fn sign_in_again(&self) -> Login {
        sign_in(self.app, &self.new, self.telegram_id).await
    }

    /// Signs in again with `start_param` (a referral link opened by an existing user).
    pub async fn sign_in_with_start_param(&self, param: &str) -> Login {
        let new = self.new.clone().start_param(param);
        sign_in(self.app, &new, self.telegram_id).await
    }

    /// The internal id of this user (from the database).
    pub async fn id(&self) -> atelier::domain::ids::UserId {
        self.app.user_id(self.telegram_id).await
    }

    /// A request to `path` with this user's bearer token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(&self.token)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::DELETE, path)
            .send()
            .await
            .unwrap()
    }

    /// Credits granted straight into the ledger (as an admin grant), not through the API.
    pub async fn grant(&self, credits: i64) {
        grant_credits(self.app, self.telegram_id, credits).await
    }

    /// `GET /api/v1/balance`.
    pub async fn balance(&self) -> Balance {
        ok(self.get("/api/v1/balance").await, 200, "balance").await
    }

    /// The balance's `balance_credits`.
    pub async fn credits(&self) -> i64 {
        self.balance().await.balance_credits
    }

    /// `POST /api/v1/fitting/upload` with a person (400×600) and an item (300×300) photo.
    pub async fn upload_fitting(&self) -> FittingUpload {
        let form = reqwest::multipart::Form::new()
            .part("person", photo_part(photo(400, 600, [200, 150, 120])))
            .part("item", photo_part(photo(300, 300, [20, 40, 200])));
        let res = self
            .request(reqwest::Method::POST, "/api/v1/fitting/upload")
            .multipart(form)
            .send()
            .await
            .unwrap();
        ok(res, 201, "fitting upload").await
    }

    /// `POST /api/v1/editing/upload` with a 400×400 photo.
    pub async fn upload_editing(&self) -> Upload {
        self.upload_editing_image(photo(400, 400, [90, 90, 90]))
            .await
    }

    /// `POST /api/v1/editing/upload` with these JPEG bytes.
    pub async fn upload_editing_image(&self, jpeg: Vec<u8>) -> Upload {
        let form = reqwest::multipart::Form::new().part("image", photo_part(jpeg));
        let res = self
            .request(reqwest::Method::POST, "/api/v1/editing/upload")
            .multipart(form)
            .send()
            .await
            .unwrap();
        ok(res, 201, "editing upload").await
    }

    /// `POST /api/v1/editing/generate`: accepted (202), or a repeat of an accepted one.
    pub async fn edit(&self, body: &Value) -> Generation {
        let res = self.post("/api/v1/editing/generate", body).await;
        ok::<GenerationEnvelope>(res, 202, "edit").await.generation
    }

    /// `POST /api/v1/fitting/generate`: accepted (202).
    pub async fn fit(&self, body: &Value) -> Generation {
        let res = self.post("/api/v1/fitting/generate", body).await;
        ok::<GenerationEnvelope>(res, 202, "fitting")
            .await
            .generation
    }

    /// A try-on of `upload`'s person and item in `zone`.
    pub async fn fit_zone(&self, upload: &FittingUpload, zone: &str, crid: &str) -> Generation {
        self.fit(
            &json!({"person_upload_id": upload.person.id, "item_upload_id": upload.item.id,
            "zone": zone, "client_request_id": crid}),
        )
        .await
    }

    /// `GET /api/v1/generations/{id}`.
    pub async fn generation(&self, id: Uuid) -> Generation {
        let res = self.get(&format!("/api/v1/generations/{id}")).await;
        ok::<GenerationEnvelope>(res, 200, "generation")
            .await
            .generation
    }

    /// `POST /api/v1/generations/{id}/cancel`, as sent (it may be refused).
    pub async fn cancel(&self, id: Uuid) -> reqwest::Response {
        self.request(
            reqwest::Method::POST,
            &format!("/api/v1/generations/{id}/cancel"),
        )
        .send()
        .await
        .unwrap()
    }

    /// Polls the generation until it reaches `want`; panics if it ends in another state or
    /// takes longer than 30 s.
    pub async fn wait_for_status(&self, id: Uuid, want: &str) -> Generation {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let g = self.generation(id).await;
            if g.status == want {
                return g;
            }
            assert!(
                !["succeeded", "failed", "canceled"].contains(&g.status.as_str()),
                "ended {}, wanted {want}: {g:?}",
                g.status
            );
            assert!(
                std::time::Instant::now() < deadline,
                "still {}: {g:?}",
                g.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `POST /api/v1/editing/chat`, answered (200).
    pub async fn chat(&self, body: &Value) -> ChatReply {
        ok(self.post("/api/v1/editing/chat", body).await, 200, "chat").await
    }

    /// `GET /api/v1/editing/sessions/{id}`.
    pub async fn session(&self, id: Uuid) -> Session {
        let res = self.get(&format!("/api/v1/editing/sessions/{id}")).await;
        ok(res, 200, "session").await
    }

    /// `GET /api/v1/editing/sessions`.
    pub async fn sessions(&self) -> super::responses::SessionPage {
        ok(self.get("/api/v1/editing/sessions").await, 200, "sessions").await
    }

    /// `POST /api/v1/editing/reset` of the session `id` (200).
    pub async fn reset(&self, id: Uuid) -> Session {
        let res = self
            .post("/api/v1/editing/reset", &json!({"session_id": id}))
            .await;
        ok(res, 200, "reset").await
    }

    /// `POST /api/v1/payments/create` for `product`, with a receipt email; as sent.
    pub async fn create_payment(&self, product: &str) -> reqwest::Response {
        self.post(
            "/api/v1/payments/create",
            &json!({"product_id": product, "email": "anna@example.com"}),
        )
        .await
    }

    /// A payment for `product`, created (201).
    pub async fn pay(&self, product: &str) -> PaymentCreated {
        ok(self.create_payment(product).await, 201, "payment").await
    }

    /// `GET /api/v1/payments/{id}`.
    pub async fn payment(&self, id: Uuid) -> super::responses::Payment {
        let res = self.get(&format!("/api/v1/payments/{id}")).await;
        ok(res, 200, "payment").await
    }

    /// `POST /api/v1/payments/stars/invoice` for `product`, created (201).
    pub async fn stars_invoice(&self, product: &str) -> StarsInvoice {
        let res = self
            .post(
                "/api/v1/payments/stars/invoice",
                &json!({"product_id": product}),
            )
            .await;
        ok(res, 201, "stars invoice").await
    }

    /// `GET /api/v1/referrals`.
    pub async fn referrals(&self) -> Referrals {
        ok(self.get("/api/v1/referrals").await, 200, "referrals").await
    }

    /// `GET /api/v1/ledger` with `query` (e.g. `?limit=2`).
    pub async fn ledger(&self, query: &str) -> LedgerPage {
        let res = self.get(&format!("/api/v1/ledger{query}")).await;
        ok(res, 200, "ledger").await
    }

    /// `DELETE /api/v1/me`: the account erased (200).
    pub async fn erase(&self) -> super::responses::Erasure {
        ok(self.delete("/api/v1/me").await, 200, "erasure").await
    }

    /// `GET /api/v1/generations` with `query`.
    pub async fn generations(&self, query: &str) -> super::responses::GenerationPage {
        let res = self.get(&format!("/api/v1/generations{query}")).await;
        ok(res, 200, "generations").await
    }

    /// A WebSocket opened with the token in the query; the snapshot is not yet read.
    pub async fn socket(&self) -> Socket {
        let url = format!(
            "{}/api/v1/ws?token={}",
            self.app.address.replacen("http", "ws", 1),
            self.token
        );
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Socket {
            ws,
            wait: Duration::from_secs(15),
        }
    }
}

/// A client's WebSocket to `/api/v1/ws`.
pub struct Socket {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// How long `next_event` waits for a message (15 s unless set by `within`).
    wait: Duration,
}

impl Socket {
    /// Waits at most `wait` for each message from now on.
    pub fn within(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The next event (pings and other frames skipped), within the wait.
    pub async fn next_event(&mut self) -> ServerEvent {
        serde_json::from_value(self.next_json().await).unwrap()
    }

    /// The next text message as JSON (pings and other frames skipped), within the wait.
    pub async fn next_json(&mut self) -> Value {
        use futures_util::StreamExt as _;
        loop {
            let msg = tokio::time::timeout(self.wait, self.ws.next())
                .await
                .expect("an event in time")
                .unwrap()
                .unwrap();
            if let WsMessage::Text(text) = msg {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// Reads events until one of `kind`; returns it.
    pub async fn until(&mut self, kind: &str) -> ServerEvent {
        loop {
            let event = self.next_event().await;
            if event.kind == kind {
                return event;
            }
        }
    }
}
