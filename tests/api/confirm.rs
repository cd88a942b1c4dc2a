use chrono::Duration;
use customer_registration::domain::Md5PasswordHex;
use entity::{customer, registration};
use reqwest::{StatusCode, header};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::helpers::{PHONE, assert_error, md5_upper, register_body, spawn_app, spawn_app_with};

/// A wrong token for a real one: same prefix, other digits.
pub fn wrong(token: &str) -> String {
    let digits: String = token[3..]
        .chars()
        .map(|c| {
            if c == '9' {
                '0'
            } else {
                char::from(c as u8 + 1)
            }
        })
        .collect();
    format!("{}{digits}", &token[..3])
}

#[tokio::test]
async fn confirm_creates_the_customer_with_an_argon2id_hash() {
    let app = spawn_app().await;
    let ticket = app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    let lowercase_prefix = format!("{}{}", token[..3].to_lowercase(), &token[3..]);
    let response = app
        .post(
            "/b2b/customer/register/confirm",
            &json!({"username": "081234567890", "password": md5_upper("s3cret!").to_lowercase(), "token": lowercase_prefix}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["username"], PHONE);
    assert_eq!(body["id"], ticket["id"]);

    let customers = customer::Entity::find().all(&app.core.db).await.unwrap();
    assert_eq!(customers.len(), 1);
    let stored = &customers[0].password_hash;
    assert!(
        // keyid names the pepper: 1, base64 `AQ`.
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1,keyid=AQ$"),
        "{stored}"
    );
    assert!(!stored.contains(&md5_upper("s3cret!")));
    // Login later: the uppercase MD5 verifies, another password does not.
    let right = Md5PasswordHex::parse(&md5_upper("s3cret!")).unwrap();
    let other = Md5PasswordHex::parse(&md5_upper("other")).unwrap();
    assert!(
        app.core
            .hashing
            .verify(&right, stored.clone())
            .await
            .unwrap()
    );
    assert!(
        !app.core
            .hashing
            .verify(&other, stored.clone())
            .await
            .unwrap()
    );

    let exists: Value = app
        .get("/b2b/customer/auth/verifyUsername?username=081234567890")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(exists, json!({"username": PHONE, "exists": true}));

    let again = app.confirm(PHONE, "s3cret!", &token).await;
    assert_error(again, StatusCode::CONFLICT, "REGISTRATION_COMPLETED").await;
}

#[tokio::test]
async fn confirm_validates_its_fields() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/b2b/customer/register/confirm",
            &json!({"username": "hello", "password": "plain-text", "token": "12"}),
        )
        .await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["username", "password", "token"]);
}

#[tokio::test]
async fn confirm_without_a_pending_registration_is_not_found() {
    let app = spawn_app().await;
    let response = app.confirm(PHONE, "pw", "ABC123456").await;
    assert_error(response, StatusCode::NOT_FOUND, "REGISTRATION_NOT_FOUND").await;
}

#[tokio::test]
async fn an_expired_token_is_refused_without_spending_an_attempt() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    app.clock.advance(Duration::minutes(10));
    let response = app.confirm(PHONE, "pw", &token).await;
    assert_error(response, StatusCode::GONE, "TOKEN_EXPIRED").await;
    let stored = registration::Entity::find()
        .one(&app.core.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.failed_attempts, 0);
}

#[tokio::test]
async fn five_wrong_codes_lock_the_registration_even_across_resends() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    for expected_remaining in [4, 3] {
        let response = app.confirm(PHONE, "pw", &wrong(&token)).await;
        let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "TOKEN_INVALID").await;
        assert_eq!(body["attemptsRemaining"], expected_remaining);
    }
    // A resend issues a new token but does not reset the count.
    app.clock.advance(Duration::seconds(61));
    let resend = app
        .post(
            "/b2b/customer/resend/registration/sms",
            &json!({"username": PHONE, "phone": PHONE}),
        )
        .await;
    let ticket: Value = resend.json().await.unwrap();
    assert_eq!(ticket["attemptsRemaining"], 3);
    let token = app.sms_token(PHONE, 2).await;
    for expected_remaining in [2, 1, 0] {
        let response = app.confirm(PHONE, "pw", &wrong(&token)).await;
        let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "TOKEN_INVALID").await;
        assert_eq!(body["attemptsRemaining"], expected_remaining);
    }
    let locked = app.confirm(PHONE, "pw", &token).await;
    assert_error(locked, StatusCode::LOCKED, "REGISTRATION_LOCKED").await;

    // A new registration supersedes the locked one.
    app.register(&register_body(PHONE)).await;
    let fresh = app.sms_token(PHONE, 3).await;
    assert_eq!(
        app.confirm(PHONE, "pw", &fresh).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn too_many_wrong_codes_for_one_phone_refuse_the_number_for_a_while() {
    let app = spawn_app_with(|s| {
        s.registration.max_wrong_codes = 2;
        s.registration.phone_lock_threshold = 3;
        s.registration.phone_lock_minutes = 30;
    })
    .await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    for _ in 0..2 {
        let _ = app.confirm(PHONE, "pw", &wrong(&token)).await;
    }
    app.clock.advance(Duration::seconds(61));
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 2).await;
    // The third consecutive wrong code for the number trips the lock.
    let third = app.confirm(PHONE, "pw", &wrong(&token)).await;
    assert_error(third, StatusCode::UNPROCESSABLE_ENTITY, "TOKEN_INVALID").await;

    let refused = app.confirm(PHONE, "pw", &token).await;
    let retry_after: u64 = refused.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1800).contains(&retry_after), "{retry_after}");
    assert_error(refused, StatusCode::LOCKED, "PHONE_LOCKED").await;
    let register = app
        .post("/b2b/customer/register", &register_body(PHONE))
        .await;
    assert_error(register, StatusCode::LOCKED, "PHONE_LOCKED").await;

    app.clock.advance(Duration::minutes(31));
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 3).await;
    assert_eq!(
        app.confirm(PHONE, "pw", &token).await.status(),
        StatusCode::OK
    );
}

/// The phone's run of wrong codes on this host, as stored.
async fn phone_failures(app: &crate::helpers::TestApp) -> Option<i32> {
    entity::phone_guard::Entity::find()
        .one(&app.core.db)
        .await
        .unwrap()
        .map(|guard| guard.consecutive_failures)
}

#[tokio::test]
async fn a_confirm_clears_the_run_of_wrong_codes_it_follows() {
    let app = spawn_app_with(|s| {
        s.registration.max_wrong_codes = 5;
        s.registration.phone_lock_threshold = 3;
    })
    .await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    for _ in 0..2 {
        let _ = app.confirm(PHONE, "pw", &wrong(&token)).await;
    }
    assert_eq!(phone_failures(&app).await, Some(2));
    assert_eq!(
        app.confirm(PHONE, "pw", &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(phone_failures(&app).await, Some(0));
}

/// The phone's lock is read beside the registration; with no registration
/// to read it beside, it is still told before "not found".
#[tokio::test]
async fn a_locked_phone_with_no_registration_is_refused_as_locked() {
    use sea_orm::ActiveValue::Set;
    let app = spawn_app().await;
    let host_id = app.host_id().await;
    entity::phone_guard::Entity::insert(entity::phone_guard::ActiveModel {
        host_id: Set(host_id),
        phone: Set(PHONE.into()),
        consecutive_failures: Set(3),
        locked_until: Set(Some(app.core.clock.now() + Duration::minutes(30))),
    })
    .exec(&app.core.db)
    .await
    .unwrap();
    let confirm = app.confirm(PHONE, "pw", "ABC123456").await;
    assert_error(confirm, StatusCode::LOCKED, "PHONE_LOCKED").await;
    let resend = app
        .post(
            "/b2b/customer/resend/registration/sms",
            &json!({"username": PHONE, "phone": "081234567890"}),
        )
        .await;
    assert_error(resend, StatusCode::LOCKED, "PHONE_LOCKED").await;

    app.clock.advance(Duration::minutes(31));
    let confirm = app.confirm(PHONE, "pw", "ABC123456").await;
    assert_error(confirm, StatusCode::NOT_FOUND, "REGISTRATION_NOT_FOUND").await;
}

/// A code typed right spends no attempt, so it is read without the
/// transaction that counts guesses: the registration with the phone's
/// guard, the current code, then the confirming transaction's four
/// statements (use the code, complete, insert the customer, cancel what
/// waits to be sent). With the guess's transaction around it (take an
/// attempt, read the code, give the attempt back) it was 8.
#[tokio::test]
async fn a_confirm_typed_right_takes_no_attempt_and_six_statements() {
    let app = spawn_app_with(|s| s.delivery.poll_interval_ms = 3_600_000).await;
    let phones = ["+6281234567890", "+6281234567891", "+6281234567892"];
    for phone in phones {
        app.register(&register_body(phone)).await;
    }
    // Whatever background tasks run meanwhile only adds: the fewest over
    // three confirms is a confirm's own.
    let mut statements = u64::MAX;
    for phone in phones {
        let token = app.sms_token(phone, 1).await;
        app.outbox_drained().await;
        let before = app.core.metrics.db_statements();
        let response = app.confirm(phone, "s3cret!", &token).await;
        assert_eq!(response.status(), StatusCode::OK);
        statements = statements.min(app.core.metrics.db_statements() - before);
    }
    assert_eq!(statements, 6);
    let registrations = registration::Entity::find()
        .all(&app.core.db)
        .await
        .unwrap();
    assert_eq!(registrations.len(), 3);
    assert!(registrations.iter().all(|r| r.failed_attempts == 0));
    let customers = customer::Entity::find().count(&app.core.db).await.unwrap();
    assert_eq!(customers, 3);
}
