//! Benchmarks of Telegram initData validation and signing.

use std::hint::black_box;

use atelier::auth::initdata::{Options, Verifier, sign, validate};
use criterion::{Criterion, criterion_group, criterion_main};

/// `go-valid` from shared/testdata/initdata_vectors.json (HMAC).
const HMAC_TOKEN: &str = "5768337691:AAH5YkoiEuPk8-FZa32hStHTqXiLPtAEhx8";
const HMAC_INIT_DATA: &str = "query_id=AAHdF6IQAAAAAN0XohDhrOrc&user=%7B%22id%22%3A279058397%2C%22first_name%22%3A%22Vladislav%22%2C%22last_name%22%3A%22Kibenko%22%2C%22username%22%3A%22vdkfrost%22%2C%22language_code%22%3A%22ru%22%2C%22is_premium%22%3Atrue%7D&auth_date=1662771648&hash=c501b71e775f74ce10e377dea85a7ea24ecd640b223ea86dfe453e0eaed2e2b2";
const HMAC_AUTH_DATE: i64 = 1_662_771_648;

/// `tma-3rd-valid` from shared/testdata/initdata_vectors.json (Ed25519, production key).
const ED_BOT_ID: i64 = 7_342_037_359;
const ED_INIT_DATA: &str = "user=%7B%22id%22%3A279058397%2C%22first_name%22%3A%22Vladislav%20%2B%20-%20%3F%20%5C%2F%22%2C%22last_name%22%3A%22Kibenko%22%2C%22username%22%3A%22vdkfrost%22%2C%22language_code%22%3A%22ru%22%2C%22is_premium%22%3Atrue%2C%22allows_write_to_pm%22%3Atrue%2C%22photo_url%22%3A%22https%3A%5C%2F%5C%2Ft.me%5C%2Fi%5C%2Fuserpic%5C%2F320%5C%2F4FPEE4tmP3ATHa57u6MqTDih13LTOiMoKoLDRG4PnSA.svg%22%7D&chat_instance=8134722200314281151&chat_type=private&auth_date=1733584787&signature=zL-ucjNyREiHDE8aihFwpfR9aggP2xiAo3NSpfe-p7IbCisNlDKlo7Kb6G4D0Ao2mBrSgEk4maLSdv6MLIlADQ&hash=2174df5b000556d044f3f020384e879c8efcab55ddea2ced4eb752e93e7080d6";
const ED_AUTH_DATE: i64 = 1_733_584_787;

fn bench_initdata(c: &mut Criterion) {
    let opts = Options::default();

    let hmac = Verifier::BotToken(HMAC_TOKEN.to_owned());
    assert!(validate(HMAC_INIT_DATA, &hmac, &opts, HMAC_AUTH_DATE).is_ok());
    c.bench_function("initdata/validate_hmac", |b| {
        b.iter(|| {
            validate(
                black_box(HMAC_INIT_DATA),
                black_box(&hmac),
                &opts,
                black_box(HMAC_AUTH_DATE),
            )
        })
    });

    let Ok(public_key) = Verifier::public_key_from_name_or_hex("prod") else {
        panic!("the production public key must parse");
    };
    let ed = Verifier::ThirdParty {
        bot_id: ED_BOT_ID,
        public_key,
    };
    assert!(validate(ED_INIT_DATA, &ed, &opts, ED_AUTH_DATE).is_ok());
    c.bench_function("initdata/validate_ed25519", |b| {
        b.iter(|| {
            validate(
                black_box(ED_INIT_DATA),
                black_box(&ed),
                &opts,
                black_box(ED_AUTH_DATE),
            )
        })
    });

    let pairs: [(&str, &str); 3] = [
        ("query_id", "AAHdF6IQAAAAAN0XohDhrOrc"),
        (
            "user",
            r#"{"id":279058397,"first_name":"Vladislav","last_name":"Kibenko","username":"vdkfrost","language_code":"ru","is_premium":true}"#,
        ),
        ("auth_date", "1662771648"),
    ];
    assert_eq!(sign(HMAC_TOKEN, &pairs), HMAC_INIT_DATA);
    c.bench_function("initdata/sign", |b| {
        b.iter(|| sign(black_box(HMAC_TOKEN), black_box(&pairs)))
    });
}

criterion_group!(benches, bench_initdata);
criterion_main!(benches);
