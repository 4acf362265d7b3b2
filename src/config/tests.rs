use super::env::load_env_file;
use super::*;
use std::collections::HashMap;

fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn defaults_work_outside_production() {
    let s = settings(&[]).unwrap();
    assert_eq!(s.port, 8080);
    assert_eq!(s.free_actions_per_month, 10);
    assert_eq!(s.init_data_max_age_secs, 86_400);
    assert!(matches!(s.init_data_key, InitDataKey::BotToken(_)));
}

const REAL_BOT: (&str, &str) = ("TELEGRAM_BOT_TOKEN", "7000000001:AAreal-looking-token");

/// The error of `pairs`, which must name exactly `vars` (in its message, `var` the first).
fn refused_naming(pairs: &[(&str, &str)], vars: &[&str]) -> String {
    let err = settings(pairs).unwrap_err();
    assert_eq!(err.var, vars[0], "{err}");
    let shown = err.to_string();
    for var in vars {
        assert!(shown.contains(var), "{var} not named: {shown}");
    }
    shown
}

#[test]
fn a_real_bot_token_needs_its_own_jwt_and_media_secrets_outside_production_too() {
    let shown = refused_naming(&[REAL_BOT], &["JWT_SECRET", "MEDIA_URL_SECRET"]);
    assert!(shown.contains("TELEGRAM_BOT_TOKEN"), "{shown}");
    // APP_ENV does not matter: the credential decides.
    refused_naming(
        &[("APP_ENV", "test"), REAL_BOT],
        &["JWT_SECRET", "MEDIA_URL_SECRET"],
    );
    let jwt = "j".repeat(40);
    let media = "m".repeat(40);
    refused_naming(&[REAL_BOT, ("JWT_SECRET", &jwt)], &["MEDIA_URL_SECRET"]);
    let err = settings(&[REAL_BOT, ("MEDIA_URL_SECRET", &media)]).unwrap_err();
    assert_eq!(err.var, "JWT_SECRET");
    assert!(!err.to_string().contains("MEDIA_URL_SECRET"), "{err}");
    let s = settings(&[REAL_BOT, ("JWT_SECRET", &jwt), ("MEDIA_URL_SECRET", &media)]).unwrap();
    assert_eq!(s.jwt_secret.expose_secret(), jwt);
    assert_eq!(s.media.url_secret.expose_secret(), media);
}

#[test]
fn provider_keys_are_real_credentials_too() {
    let secrets = ["JWT_SECRET", "MEDIA_URL_SECRET"];
    for pairs in [
        &[("KIE_API_KEY", "kie-key")][..],
        &[("OPENROUTER_API_KEY", "sk-or-v1-x")][..],
        &[("YOOKASSA_SHOP_ID", "1"), ("YOOKASSA_SECRET_KEY", "live_x")][..],
        &[("TELEGRAM_BOT_ID", "1"), ("TELEGRAM_PUBLIC_KEY", "prod")][..],
    ] {
        refused_naming(pairs, &secrets);
    }
}

#[test]
fn the_development_bot_token_keeps_the_development_defaults() {
    for pairs in [&[][..], &[("TELEGRAM_BOT_TOKEN", DEV_BOT_TOKEN)][..]] {
        let s = settings(pairs).unwrap();
        assert!(s.real_credentials().is_empty());
        assert_eq!(s.jwt_secret.expose_secret(), DEV_JWT_SECRET);
        assert_eq!(s.media.url_secret.expose_secret(), DEV_MEDIA_SECRET);
    }
    let err = settings(&[
        ("APP_ENV", "production"),
        ("TELEGRAM_BOT_TOKEN", DEV_BOT_TOKEN),
    ])
    .unwrap_err();
    assert_eq!(err.var, "TELEGRAM_BOT_TOKEN");
}

#[test]
fn production_names_every_missing_variable_at_once() {
    refused_naming(
        &[("APP_ENV", "production")],
        &[
            "TELEGRAM_BOT_TOKEN",
            "JWT_SECRET",
            "MEDIA_URL_SECRET",
            "KIE_API_KEY",
            "YOOKASSA_SHOP_ID",
            "YOOKASSA_SECRET_KEY",
            "OPENROUTER_API_KEY",
        ],
    );
}

#[test]
fn production_requires_secrets_and_names_them() {
    let err = settings(&[("APP_ENV", "production"), ("JWT_SECRET", &"x".repeat(40))]).unwrap_err();
    assert_eq!(err.var, "TELEGRAM_BOT_TOKEN");
    let err = settings(&[("APP_ENV", "production"), ("TELEGRAM_BOT_TOKEN", "1:abc")]).unwrap_err();
    assert_eq!(err.var, "JWT_SECRET");
}

#[test]
fn the_env_file_is_optional_only_by_default_and_never_malformed() {
    assert!(
        load_env_file(Some(String::new())).is_ok(),
        "empty: no file is read"
    );
    let missing = std::env::temp_dir().join(format!("atelier-missing-{}.env", std::process::id()));
    let err = load_env_file(Some(missing.display().to_string())).unwrap_err();
    assert_eq!(err.var, "ENV_FILE", "a file named on purpose must be there");

    let file = std::env::temp_dir().join(format!("atelier-{}.env", std::process::id()));
    std::fs::write(
        &file,
        "ATELIER_ENV_FILE_TEST=from-file\nthis line has no equals sign\n",
    )
    .unwrap();
    let err = load_env_file(Some(file.display().to_string())).unwrap_err();
    assert_eq!(err.var, "ENV_FILE");
    std::fs::write(&file, "# a comment\nATELIER_ENV_FILE_TEST=from-file\n").unwrap();
    load_env_file(Some(file.display().to_string())).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(std::env::var("ATELIER_ENV_FILE_TEST").unwrap(), "from-file");
}

#[test]
fn malformed_values_name_the_variable() {
    assert_eq!(settings(&[("PORT", "eighty")]).unwrap_err().var, "PORT");
    assert_eq!(
        settings(&[("APP_ENV", "staging")]).unwrap_err().var,
        "APP_ENV"
    );
    assert_eq!(
        settings(&[("JWT_SECRET", "short")]).unwrap_err().var,
        "JWT_SECRET"
    );
    assert_eq!(
        settings(&[("TELEGRAM_BOT_TOKEN", "nocolon")])
            .unwrap_err()
            .var,
        "TELEGRAM_BOT_TOKEN"
    );
    assert_eq!(
        settings(&[("TELEGRAM_PUBLIC_KEY", "prod")])
            .unwrap_err()
            .var,
        "TELEGRAM_BOT_ID"
    );
    assert_eq!(
        settings(&[("TELEGRAM_BOT_ID", "1"), ("TELEGRAM_PUBLIC_KEY", "zz")])
            .unwrap_err()
            .var,
        "TELEGRAM_PUBLIC_KEY"
    );
}

#[test]
fn payment_settings_are_checked() {
    let s = settings(&[]).unwrap();
    assert!(s.payments.yookassa.is_none(), "sandbox without keys");
    assert!(!s.payments.allowed_networks.is_empty());
    assert_eq!(s.payments.return_url, s.payments.mini_app_url);
    assert_eq!(
        settings(&[("YOOKASSA_SHOP_ID", "1")]).unwrap_err().var,
        "YOOKASSA_SECRET_KEY"
    );
    assert_eq!(
        settings(&[("YOOKASSA_ALLOWED_NETWORKS", "10.0.0.0/99")])
            .unwrap_err()
            .var,
        "YOOKASSA_ALLOWED_NETWORKS"
    );
    assert_eq!(
        settings(&[("REFERRAL_BONUS_TRIGGER", "sometimes")])
            .unwrap_err()
            .var,
        "REFERRAL_BONUS_TRIGGER"
    );
    assert_eq!(
        settings(&[("TELEGRAM_WEBHOOK_SECRET", "has space")])
            .unwrap_err()
            .var,
        "TELEGRAM_WEBHOOK_SECRET"
    );
    let prod = settings(&[
        ("APP_ENV", "production"),
        ("TELEGRAM_BOT_TOKEN", "1:abc"),
        ("JWT_SECRET", &"j".repeat(40)),
        ("MEDIA_URL_SECRET", &"m".repeat(40)),
        ("KIE_API_KEY", "k"),
    ])
    .unwrap_err();
    assert_eq!(prod.var, "YOOKASSA_SHOP_ID");
}

#[test]
fn trusted_proxies_are_networks_and_hop_counts_are_refused() {
    assert!(settings(&[]).unwrap().trusted_proxies.is_empty());
    let s = settings(&[("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1/32,::1/128")]).unwrap();
    assert_eq!(s.trusted_proxies.len(), 3);
    assert!(s.trusted_proxies[0].contains("10.20.30.40".parse().unwrap()));
    assert_eq!(
        settings(&[("TRUSTED_PROXIES", "10.0.0.0/40")])
            .unwrap_err()
            .var,
        "TRUSTED_PROXIES"
    );
    let err = settings(&[("TRUSTED_PROXY_HOPS", "1")]).unwrap_err();
    assert_eq!(err.var, "TRUSTED_PROXY_HOPS");
    assert!(err.to_string().contains("TRUSTED_PROXIES"), "{err}");
}

#[test]
fn debug_output_hides_secrets() {
    let s = settings(&[
        ("TELEGRAM_BOT_TOKEN", "42:very-secret-token"),
        ("JWT_SECRET", &"s".repeat(40)),
        ("MEDIA_URL_SECRET", &"s".repeat(40)),
    ])
    .unwrap();
    let shown = format!("{s:?}");
    assert!(!shown.contains("very-secret-token"));
    assert!(!shown.contains(&"s".repeat(40)));
}

#[test]
fn production_refuses_the_sandbox_assistant_and_bad_chat_limits() {
    let secret = "x".repeat(40);
    let prod = [
        ("APP_ENV", "production"),
        ("TELEGRAM_BOT_TOKEN", "1:abc"),
        ("JWT_SECRET", secret.as_str()),
        ("MEDIA_URL_SECRET", secret.as_str()),
        ("KIE_API_KEY", "kie"),
        ("YOOKASSA_SHOP_ID", "100500"),
        ("YOOKASSA_SECRET_KEY", "test_secret"),
    ];
    assert_eq!(settings(&prod).unwrap_err().var, "OPENROUTER_API_KEY");
    let s = settings(&[
        ("OPENROUTER_API_KEY", "sk-or-v1-x"),
        ("JWT_SECRET", secret.as_str()),
        ("MEDIA_URL_SECRET", secret.as_str()),
    ])
    .unwrap();
    assert_eq!(s.assistant.openrouter_model, "anthropic/claude-haiku-4.5");
    assert_eq!(s.assistant.session_ttl_secs, 30 * 86_400);
    assert_eq!(
        settings(&[
            ("OPENROUTER_TIMEOUT_SECS", "60"),
            ("CHAT_TURN_TIMEOUT_SECS", "30")
        ])
        .unwrap_err()
        .var,
        "CHAT_TURN_TIMEOUT_SECS"
    );
    assert_eq!(
        settings(&[("CHAT_PRICE_CREDITS", "0")]).unwrap_err().var,
        "CHAT_PRICE_CREDITS"
    );
}

#[test]
fn compose_keeps_the_production_image_in_production() {
    // A .env copied from .env.example says APP_ENV=development and HOST=127.0.0.1: the
    // compose file has to say otherwise, above it, and bring no development secret.
    let lines: Vec<&str> = include_str!("../../docker-compose.yml")
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(lines.contains(&"APP_ENV: production"));
    assert!(lines.contains(&"HOST: 0.0.0.0"));
    for line in &lines {
        assert!(!line.contains("development"), "{line}");
        for var in [
            "JWT_SECRET",
            "MEDIA_URL_SECRET",
            "TELEGRAM_BOT_TOKEN",
            "TRUSTED_PROXY_HOPS",
        ] {
            assert!(!line.contains(var), "secrets come from .env only: {line}");
        }
    }
    let dockerfile = include_str!("../../Dockerfile");
    assert!(dockerfile.contains("APP_ENV=production"));
    assert!(dockerfile.contains("METRICS_PORT=9090"));
}

#[test]
fn env_example_lists_exactly_the_variables_read() {
    let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
    Settings::from_lookup(|k| {
        asked.borrow_mut().insert(k.to_owned());
        None
    })
    .unwrap();
    let mut asked = asked.into_inner();
    asked.insert("RUST_LOG".into()); // read by the log filter
    asked.remove("TRUSTED_PROXY_HOPS"); // read only to refuse it
    let listed: std::collections::BTreeSet<String> = include_str!("../../.env.example")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .collect();
    assert_eq!(asked, listed);
}
