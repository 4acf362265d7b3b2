//! The real `atelier` binary: `init-data verify` against every shared vector, `init-data sign`
//! round trips (also into a real login), and the exit-status contract (0 valid, 1 invalid,
//! 2 usage).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::helpers::{BOT_TOKEN, now, spawn_app};

const VECTORS_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/testdata/initdata_vectors.json"
);

#[derive(Debug, Deserialize)]
struct Vector {
    id: String,
    kind: String,
    bot_token: Option<String>,
    bot_id: Option<i64>,
    public_key_hex: Option<String>,
    init_data: String,
    now_unix: Option<i64>,
    max_age_seconds: u64,
    expect_valid: bool,
    note: String,
}

/// Runs `atelier <args>` with `stdin`, without the bot token of the environment.
fn atelier(args: &[&str], stdin: &str) -> Output {
    atelier_with_env(args, stdin, &[])
}

fn atelier_with_env(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
    cmd.args(args)
        .env_remove("TELEGRAM_BOT_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run the atelier binary");
    let mut pipe = child.stdin.take().unwrap();
    // The binary may exit (usage error) before reading stdin; a broken pipe is fine then.
    let _ = pipe.write_all(stdin.as_bytes());
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The one JSON line `init-data verify` prints.
fn verdict(out: &Output) -> Value {
    let text = stdout(out);
    let mut lines = text.lines();
    let line = lines.next().unwrap_or_else(|| {
        panic!(
            "no output; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(lines.next().is_none(), "one line expected: {text:?}");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn verify(bot_token: &str, init_data: &str, extra: &[&str]) -> Output {
    let mut args = vec!["init-data", "verify", "--bot-token", bot_token];
    args.extend_from_slice(extra);
    atelier(&args, init_data)
}

fn sign(args: &[&str]) -> String {
    let mut all = vec!["init-data", "sign"];
    all.extend_from_slice(args);
    let out = atelier(&all, "");
    assert_eq!(
        out.status.code(),
        Some(0),
        "sign failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text:?}");
    text.trim().to_owned()
}

/// The decoded value of `key` in a raw initData string.
fn field(init_data: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(init_data.trim().as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The user id in a vector's `user` JSON (a number, or a string of digits in some libraries).
fn user_id_of(init_data: &str) -> Option<i64> {
    let user: Value = serde_json::from_str(&field(init_data, "user")?).unwrap();
    match &user["id"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        other => panic!("user id {other}"),
    }
}

/// Why each invalid vector fails, read off its note (the same table as the unit test's).
fn expected_reason(id: &str) -> &'static str {
    match id {
        "go-expired-1s" | "tma-expired-10s" | "tma-expired-default-1d" | "tma-3rd-expired-10s" => {
            "expired"
        }
        "go-tampered-suffix" | "tma-wrong-token" | "aiogram-hmac-2" | "aiogram-hmac-3" => {
            "hash_mismatch"
        }
        "tma-3rd-wrong-botid" | "aiogram-ed25519-1" => "signature_mismatch",
        "aiogram-hmac-4" => "missing_hash",
        "aiogram-ed25519-2" => "missing_signature",
        other => panic!("no expected reason recorded for the invalid vector {other}"),
    }
}

#[test]
fn verify_agrees_with_every_shared_vector() {
    let vectors: Vec<Vector> =
        serde_json::from_str(&std::fs::read_to_string(VECTORS_PATH).unwrap()).unwrap();
    assert!(vectors.len() >= 20, "{} vectors", vectors.len());
    let mut kinds = (0, 0);
    for v in &vectors {
        let bot_id;
        let now_unix;
        let max_age = v.max_age_seconds.to_string();
        let mut args = vec!["init-data", "verify"];
        match v.kind.as_str() {
            "hmac" => {
                kinds.0 += 1;
                args.extend(["--bot-token", v.bot_token.as_deref().unwrap()]);
            }
            "ed25519" => {
                kinds.1 += 1;
                bot_id = v.bot_id.unwrap().to_string();
                args.extend([
                    "--bot-id",
                    &bot_id,
                    "--public-key",
                    v.public_key_hex.as_deref().unwrap(),
                ]);
            }
            other => panic!("{}: unknown kind {other}", v.id),
        }
        if let Some(n) = v.now_unix {
            now_unix = n.to_string();
            args.extend(["--now", &now_unix]);
        }
        args.extend(["--max-age", &max_age]);

        let out = atelier(&args, &v.init_data);
        let ctx = format!(
            "{} ({}); stderr: {}",
            v.id,
            v.note,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(if v.expect_valid { 0 } else { 1 }),
            "{ctx}"
        );
        let got = verdict(&out);
        assert_eq!(got["valid"], v.expect_valid, "{ctx}: {got}");
        let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4, "{ctx}: {got}");
        if v.expect_valid {
            assert_eq!(got["reason"], Value::Null, "{ctx}: {got}");
            let auth_date = got["auth_date"]
                .as_i64()
                .unwrap_or_else(|| panic!("{ctx}: {got}"));
            assert_eq!(
                Some(auth_date.to_string()),
                field(&v.init_data, "auth_date"),
                "{ctx}"
            );
            let want_user = user_id_of(&v.init_data);
            assert!(
                want_user.is_some(),
                "{ctx}: every valid vector carries a user"
            );
            assert_eq!(got["user_id"].as_i64(), want_user, "{ctx}: {got}");
        } else {
            assert_eq!(got["reason"], expected_reason(&v.id), "{ctx}: {got}");
            assert_eq!(got["user_id"], Value::Null, "{ctx}: {got}");
            assert_eq!(got["auth_date"], Value::Null, "{ctx}: {got}");
        }
    }
    assert!(
        kinds.0 > 0 && kinds.1 > 0,
        "both kinds are covered: {kinds:?}"
    );
}

#[test]
fn prod_and_test_key_names_are_accepted() {
    let vectors: Vec<Vector> =
        serde_json::from_str(&std::fs::read_to_string(VECTORS_PATH).unwrap()).unwrap();
    let v = vectors.iter().find(|v| v.id == "tma-3rd-valid").unwrap();
    assert_eq!(
        v.public_key_hex.as_deref(),
        Some(atelier::auth::initdata::PROD_PUBLIC_KEY_HEX)
    );
    let bot_id = v.bot_id.unwrap().to_string();
    let run = |key: &str| {
        atelier(
            &[
                "init-data",
                "verify",
                "--bot-id",
                &bot_id,
                "--public-key",
                key,
                "--max-age",
                "0",
            ],
            &v.init_data,
        )
    };

    let out = run("prod");
    assert_eq!(out.status.code(), Some(0), "{}", verdict(&out));
    assert_eq!(verdict(&out)["valid"], true);
    // Signed by the production key, so the test environment's key refuses it.
    let out = run("test");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&out)["reason"], "signature_mismatch");
}

#[test]
fn sign_then_verify_round_trips() {
    let token = "123456:round-trip-token";
    let raw = sign(&[
        "--bot-token",
        token,
        "--user-id",
        "777001",
        "--username",
        "alice",
        "--start-param",
        "ref_abcdefgh",
    ]);
    assert_eq!(field(&raw, "start_param").as_deref(), Some("ref_abcdefgh"));
    let user: Value = serde_json::from_str(&field(&raw, "user").unwrap()).unwrap();
    assert_eq!(user["id"], 777_001);
    assert_eq!(user["username"], "alice");
    assert!(field(&raw, "hash").is_some_and(|h| h.len() == 64));

    let out = verify(token, &raw, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = verdict(&out);
    assert_eq!(
        got,
        json!({"valid": true, "reason": null, "user_id": 777_001, "auth_date": got["auth_date"]})
    );
    let auth_date = got["auth_date"].as_i64().unwrap();
    assert!(
        (auth_date - now()).abs() < 60,
        "auth_date {auth_date} is now"
    );

    // A trailing newline on stdin (as `echo` adds) does not matter.
    assert_eq!(
        verify(token, &format!("{raw}\n"), &[]).status.code(),
        Some(0)
    );
    // Another bot's token refuses it.
    let out = verify("123456:another-token", &raw, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&out)["reason"], "hash_mismatch");
}

#[test]
fn auth_date_now_and_max_age_flags() {
    let token = "123456:clock-token";
    let raw = sign(&[
        "--bot-token",
        token,
        "--user-id",
        "42",
        "--auth-date",
        "1700000000",
    ]);
    assert_eq!(field(&raw, "auth_date").as_deref(), Some("1700000000"));
    let at = |now: i64, max_age: &str| {
        let now = now.to_string();
        verify(token, &raw, &["--now", &now, "--max-age", max_age])
    };
    let out = at(1_700_000_000 + 86_400, "86400");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(verdict(&out)["auth_date"], 1_700_000_000);
    let out = at(1_700_000_000 + 86_401, "86400");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&out)["reason"], "expired");
    // The default max age is one day.
    let out = verify(token, &raw, &["--now", "1700086401"]);
    assert_eq!(verdict(&out)["reason"], "expired");
    // 0 turns the expiry off; the wall clock (no --now) is far past 2023.
    assert_eq!(
        verify(token, &raw, &["--max-age", "0"]).status.code(),
        Some(0)
    );
    // Further than 60 s in the future is refused, within it accepted.
    let out = at(1_700_000_000 - 61, "0");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&out)["reason"], "auth_date_in_future");
    assert_eq!(at(1_700_000_000 - 30, "0").status.code(), Some(0));
}

#[test]
fn a_tampered_string_fails_with_hash_mismatch() {
    let token = "123456:tamper-token";
    let raw = sign(&[
        "--bot-token",
        token,
        "--user-id",
        "31337",
        "--username",
        "mallory",
    ]);
    let tampered = raw.replacen("mallory", "mallorz", 1);
    assert_ne!(raw, tampered);
    let out = verify(token, &tampered, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        verdict(&out),
        json!({"valid": false, "reason": "hash_mismatch", "user_id": null, "auth_date": null})
    );

    // Duplicate keys and a missing hash have their own reasons.
    let dup = format!("{raw}&auth_date={}", now());
    assert_eq!(
        verdict(&verify(token, &dup, &[]))["reason"],
        "duplicate_key"
    );
    let no_hash: Vec<&str> = raw.split('&').filter(|p| !p.starts_with("hash=")).collect();
    let out = verify(token, &no_hash.join("&"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict(&out)["reason"], "missing_hash");
}

#[test]
fn usage_errors_exit_2() {
    let raw = sign(&["--bot-token", "123456:usage-token", "--user-id", "1"]);
    for args in [
        vec!["init-data", "verify"],
        vec!["init-data", "verify", "--bot-id", "42"],
        vec!["init-data", "verify", "--public-key", "prod"],
        vec![
            "init-data",
            "verify",
            "--bot-id",
            "42",
            "--public-key",
            "not-a-key",
        ],
        vec![
            "init-data",
            "verify",
            "--bot-token",
            "1:a",
            "--bot-id",
            "42",
            "--public-key",
            "prod",
        ],
        vec![
            "init-data",
            "verify",
            "--bot-token",
            "1:a",
            "--now",
            "yesterday",
        ],
        vec!["init-data", "sign", "--user-id", "1"],
    ] {
        let out = atelier(&args, &raw);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?}: no verdict on a usage error"
        );
        assert!(!out.stderr.is_empty(), "{args:?}: a message on stderr");
    }
}

#[test]
fn the_bot_token_falls_back_to_the_environment() {
    let token = "123456:env-token";
    let raw = sign(&["--bot-token", token, "--user-id", "5"]);
    let out = atelier_with_env(
        &["init-data", "verify"],
        &raw,
        &[("TELEGRAM_BOT_TOKEN", token)],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(verdict(&out)["user_id"], 5);
    let signed = atelier_with_env(
        &["init-data", "sign", "--user-id", "5"],
        "",
        &[("TELEGRAM_BOT_TOKEN", token)],
    );
    assert_eq!(signed.status.code(), Some(0));
    assert_eq!(verify(token, &stdout(&signed), &[]).status.code(), Some(0));
}

#[tokio::test]
async fn signed_init_data_logs_in_against_the_server() {
    // The README walkthrough: sign with the CLI, log in, read /me.
    let app = spawn_app().await;
    let raw = sign(&[
        "--bot-token",
        BOT_TOKEN,
        "--user-id",
        "888001",
        "--username",
        "walker",
        "--first-name",
        "Wanda",
    ]);
    let res = app
        .post_json("/api/v1/auth/telegram", &json!({ "init_data": raw }), None)
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"]["id"], 888_001);
    assert_eq!(body["user"]["username"], "walker");
    assert_eq!(body["user"]["first_name"], "Wanda");
    assert_eq!(body["user"]["allows_write_to_pm"], true);
    let me: Value = app
        .get("/api/v1/me", body["access_token"].as_str())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], 888_001);
}

#[test]
fn verify_agrees_with_an_independent_signer() {
    let auth_date = now();
    for (case, telegram_id, raw) in crate::helpers::reference_cases(auth_date) {
        let out = verify(BOT_TOKEN, &raw, &[]);
        assert_eq!(out.status.code(), Some(0), "{case}: {}", stdout(&out));
        assert_eq!(
            verdict(&out),
            json!({"valid": true, "reason": null, "user_id": telegram_id, "auth_date": auth_date}),
            "{case}"
        );
        let out = verify("7000000001:another-bot", &raw, &[]);
        assert_eq!(verdict(&out)["reason"], "hash_mismatch", "{case}");
    }
}

#[test]
fn third_party_flags_work_with_a_bot_token_in_the_environment() {
    let vectors: Vec<Vector> =
        serde_json::from_str(&std::fs::read_to_string(VECTORS_PATH).unwrap()).unwrap();
    let v = vectors.iter().find(|v| v.id == "tma-3rd-valid").unwrap();
    let bot_id = v.bot_id.unwrap().to_string();
    let out = atelier_with_env(
        &[
            "init-data",
            "verify",
            "--bot-id",
            &bot_id,
            "--public-key",
            "prod",
            "--max-age",
            "0",
        ],
        &v.init_data,
        &[("TELEGRAM_BOT_TOKEN", BOT_TOKEN)],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(verdict(&out)["valid"], true);
}

#[tokio::test]
async fn healthcheck_exits_zero_only_when_the_server_is_ready() {
    let app = spawn_app().await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let ready = tokio::task::spawn_blocking(move || atelier(&["healthcheck", "--port", &port], ""))
        .await
        .unwrap();
    assert_eq!(ready.status.code(), Some(0), "{ready:?}");

    // Nothing listens on a port just freed.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let down = tokio::task::spawn_blocking(move || atelier(&["healthcheck", "--port", &free], ""))
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("no answer"));
}

/// `atelier serve` with exactly `env` (no `.env`, nothing inherited), expected to stop at once:
/// one still running after 20 s has started (it is killed, and `None` is returned).
fn serve_refused(env: &[(&str, &str)]) -> Option<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
    cmd.arg("serve")
        .env_clear()
        .env("ENV_FILE", "")
        .env("PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run the atelier binary");
    for _ in 0..200 {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_real_bot_token_without_secrets_stops_the_start_naming_each_one() {
    // APP_ENV unset (development), as on a staging box where it was forgotten.
    let out = serve_refused(&[("TELEGRAM_BOT_TOKEN", BOT_TOKEN)])
        .expect("the server started with the public development secrets");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {stderr}");
    for var in ["JWT_SECRET", "MEDIA_URL_SECRET"] {
        assert!(stderr.contains(var), "{var} not named: {stderr}");
    }
    assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
    // The token itself is never echoed.
    assert!(
        !stderr.contains(BOT_TOKEN.split(':').nth(1).unwrap()),
        "{stderr}"
    );
}
