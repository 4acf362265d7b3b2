//! Referrals: +10 credits to the referrer per new user arriving with `start_param=ref_<code>`,
//! once, never for oneself, up to a daily cap; or at the referred user's first payment.

use crate::helpers::{NewUser, payment_row, spawn_app_with};
use atelier::domain::vocabulary::PaymentStatus;

#[tokio::test]
async fn a_referred_signup_earns_the_referrer_a_bonus_once() {
    let app = spawn_app_with(&[("TELEGRAM_MINI_APP_URL", "https://t.me/atelier_bot/app")]).await;
    let alice = app.user().await;
    let mine = alice.referrals().await;
    let code = mine.code;
    assert_eq!(
        mine.link,
        format!("https://t.me/atelier_bot/app?startapp=ref_{code}")
    );
    assert_eq!((mine.invited, mine.credits_earned), (0, 0));

    let link = format!("ref_{code}");
    let bob = app.user_with(NewUser::id(2).start_param(&link)).await;
    assert_eq!(alice.credits().await, 10);
    assert_eq!(bob.credits().await, 0, "the referred user earns nothing");
    // Bob opening the link again, or Alice's link used by an existing user: nothing more.
    bob.sign_in_again().await;
    let carol = app.user_with(NewUser::id(3)).await;
    carol.sign_in_with_start_param(&link).await;
    assert_eq!(alice.credits().await, 10);
    let mine = alice.referrals().await;
    assert_eq!((mine.invited, mine.credits_earned), (1, 10));

    // Bob's own link does not pay him for himself, and one referrer per user.
    let bob_code = bob.referrals().await.code;
    bob.sign_in_with_start_param(&format!("ref_{bob_code}"))
        .await;
    assert_eq!(bob.credits().await, 0);
    assert_eq!(carol.credits().await, 0);
    let ledger = alice.ledger("").await;
    assert_eq!(ledger.items[0].reason, "referral_bonus");
    assert_eq!(ledger.items[0].description, "Referral bonus");
}

#[tokio::test]
async fn unknown_codes_earn_nothing() {
    let app = spawn_app_with(&[]).await;
    let alice = app.user().await;
    for param in ["ref_zzzzzzzz", "ref_", "promo", "ref_ABCDEFGH"] {
        app.user_with(NewUser::id(10 + param.len() as i64).start_param(param))
            .await;
    }
    assert_eq!(alice.credits().await, 0);
    assert_eq!(alice.referrals().await.invited, 0);
}

#[tokio::test]
async fn the_daily_cap_limits_bonuses_per_referrer() {
    let app = spawn_app_with(&[("REFERRAL_DAILY_CAP", "2"), ("REFERRAL_BONUS_CREDITS", "7")]).await;
    let alice = app.user().await;
    let link = format!("ref_{}", alice.referrals().await.code);
    let logins = (2..=5).map(|id| app.user_with(NewUser::id(id).start_param(&link)));
    futures_util::future::join_all(logins).await;
    assert_eq!(alice.credits().await, 14);
    let mine = alice.referrals().await;
    assert_eq!((mine.invited, mine.credits_earned), (4, 14));
}

#[tokio::test]
async fn with_the_first_payment_trigger_the_bonus_waits_for_a_payment() {
    let app = spawn_app_with(&[("REFERRAL_BONUS_TRIGGER", "first_payment")]).await;
    let alice = app.user().await;
    let link = format!("ref_{}", alice.referrals().await.code);
    let bob = app.user_with(NewUser::id(2).start_param(&link)).await;
    assert_eq!(alice.credits().await, 0);
    assert_eq!(alice.referrals().await.invited, 1);
    for expected in [10, 10] {
        let payment = bob.pay("pack_10").await;
        // The sandbox provider's payment page.
        let page = payment.confirmation_url.unwrap();
        let res = app
            .client
            .post(format!("{page}/succeed"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            payment_row(&app, payment.payment_id).await.status,
            PaymentStatus::Succeeded
        );
        assert_eq!(alice.credits().await, expected);
    }
    assert_eq!(bob.credits().await, 20);
}

#[tokio::test]
async fn an_account_erased_and_signed_up_again_earns_no_second_bonus() {
    let app = spawn_app_with(&[("SIGNUP_BONUS_CREDITS", "5")]).await;
    let alice = app.user().await;
    let link = format!("ref_{}", alice.referrals().await.code);
    let bob_signs_up = || app.user_with(NewUser::id(2).start_param(&link));
    let mut bob = bob_signs_up().await;
    assert_eq!(
        alice.credits().await,
        15,
        "her signup bonus and Bob's referral"
    );
    assert_eq!(bob.credits().await, 5);
    for _ in 0..2 {
        assert_eq!(bob.delete("/api/v1/me").await.status(), 200);
        bob = bob_signs_up().await;
        assert_eq!(bob.credits().await, 0, "no second signup bonus");
    }
    assert_eq!(alice.credits().await, 15, "no second referral bonus");
    assert_eq!(alice.referrals().await.invited, 1);
    // What is kept is a keyed hash, not the Telegram id.
    let mut conn = app.conn().await;
    let kept: Vec<Vec<u8>> = {
        use diesel::QueryDsl as _;
        use diesel_async::RunQueryDsl as _;
        atelier::db::schema::erased_identities::table
            .select(atelier::db::schema::erased_identities::identity_hash)
            .load(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].len(), 32);

    // Someone new still earns both.
    let carol = app.user_with(NewUser::id(3).start_param(&link)).await;
    assert_eq!(carol.credits().await, 5);
    assert_eq!(alice.credits().await, 25);
}
