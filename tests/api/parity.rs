//! Table-driven parity: each case runs once over REST and once over
//! GraphQL, each on its own fresh app with the same setup, and both must
//! end with the same outcome code and HTTP status.
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    confirm::wrong,
    helpers::{PHONE, TestApp, md5_upper, register_body, spawn_app},
};

#[derive(Clone, Copy, Debug)]
enum Setup {
    Nothing,
    Registered,
    RegisteredWithoutEmail,
    Completed,
    Expired,
    Locked,
    CooledDown,
}

#[derive(Clone, Copy, Debug)]
enum Token {
    Right,
    Wrong,
    /// For cases where no SMS was ever sent.
    NeverSent,
}

#[derive(Clone, Debug)]
enum Op {
    Register(Value),
    Confirm { password: String, token: Token },
    ResendSms(Value),
    ResendEmail(Value),
    VerifyUsername(&'static str),
    VerifyEmail(&'static str),
}

async fn prepare(app: &TestApp, setup: Setup) {
    let without_email = || {
        let mut body = register_body(PHONE);
        body.as_object_mut().unwrap().remove("email");
        body
    };
    match setup {
        Setup::Nothing => {}
        Setup::Registered | Setup::Expired | Setup::Locked | Setup::CooledDown => {
            app.register(&register_body(PHONE)).await;
        }
        Setup::RegisteredWithoutEmail => {
            app.register(&without_email()).await;
        }
        Setup::Completed => {
            app.register(&register_body(PHONE)).await;
            let token = app.sms_token(PHONE, 1).await;
            assert_eq!(
                app.confirm(PHONE, "pw", &token).await.status(),
                StatusCode::OK
            );
        }
    }
    match setup {
        Setup::Expired => app.clock.advance(Duration::minutes(11)),
        Setup::CooledDown => app.clock.advance(Duration::seconds(61)),
        Setup::Locked => {
            let token = app.sms_token(PHONE, 1).await;
            for _ in 0..5 {
                app.confirm(PHONE, "pw", &wrong(&token)).await;
            }
        }
        _ => {}
    }
}

async fn token_for(app: &TestApp, token: Token) -> String {
    if let Token::NeverSent = token {
        return "ABC123456".into();
    }
    let right = app.sms_token(PHONE, 1).await;
    match token {
        Token::Right => right,
        Token::Wrong => wrong(&right),
        Token::NeverSent => unreachable!(),
    }
}

/// Runs over REST; returns the status and `OK` or the error code.
async fn over_rest(app: &TestApp, op: &Op) -> (u16, String) {
    let response = match op {
        Op::Register(body) => app.post("/b2b/customer/register", body).await,
        Op::Confirm { password, token } => {
            let token = token_for(app, *token).await;
            app.post(
                "/b2b/customer/register/confirm",
                &json!({"username": PHONE, "password": password, "token": token}),
            )
            .await
        }
        Op::ResendSms(body) => {
            app.post("/b2b/customer/resend/registration/sms", body)
                .await
        }
        Op::ResendEmail(body) => {
            app.post("/b2b/customer/resend/registration/email", body)
                .await
        }
        Op::VerifyUsername(u) => {
            app.get(&format!("/b2b/customer/auth/verifyUsername?username={u}"))
                .await
        }
        Op::VerifyEmail(e) => {
            app.get(&format!("/b2b/customer/auth/verifyEmail?email={e}"))
                .await
        }
    };
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let code = body["code"].as_str().unwrap_or("OK").to_owned();
    (status, code)
}

/// Runs over GraphQL; the status comes from the error's `extensions`.
async fn over_graphql(app: &TestApp, op: &Op) -> (u16, String) {
    let (query, variables) = match op {
        Op::Register(body) => (
            "mutation($i: RegisterInput!) { register(input: $i) { id } }",
            json!({"i": body}),
        ),
        Op::Confirm { password, token } => (
            "mutation($i: ConfirmRegistrationInput!) { confirmRegistration(input: $i) { id } }",
            json!({"i": {"username": PHONE, "password": password, "token": token_for(app, *token).await}}),
        ),
        Op::ResendSms(body) => (
            "mutation($i: ResendInput!) { resendRegistrationSms(input: $i) { id } }",
            json!({"i": body}),
        ),
        Op::ResendEmail(body) => (
            "mutation($i: ResendInput!) { resendRegistrationEmail(input: $i) { id } }",
            json!({"i": body}),
        ),
        Op::VerifyUsername(u) => (
            "query($u: String!) { verifyUsername(username: $u) { exists } }",
            json!({"u": u}),
        ),
        Op::VerifyEmail(e) => (
            "query($e: String!) { verifyEmail(email: $e) { exists } }",
            json!({"e": e}),
        ),
    };
    let (status, body) = app.graphql(query, variables).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    match body["errors"][0]["extensions"].as_object() {
        Some(extensions) => (
            u16::try_from(extensions["status"].as_u64().unwrap()).unwrap(),
            extensions["code"].as_str().unwrap().to_owned(),
        ),
        None => (200, "OK".to_owned()),
    }
}

#[tokio::test]
async fn rest_and_graphql_agree_on_every_outcome() {
    let resend = json!({"username": PHONE, "phone": "081234567890"});
    let mut bad_phone = register_body("12345");
    bad_phone["phone"] = json!("12345");
    let mut bad_group = register_body(PHONE);
    bad_group["accountGroupId"] = json!("ZZ");
    let md5 = md5_upper("pw");
    let confirm = |token| Op::Confirm {
        password: md5.clone(),
        token,
    };
    let cases: Vec<(&str, Setup, Op, u16, &str)> = vec![
        (
            "register",
            Setup::Nothing,
            Op::Register(register_body(PHONE)),
            200,
            "OK",
        ),
        (
            "register bad phone",
            Setup::Nothing,
            Op::Register(bad_phone),
            400,
            "VALIDATION_FAILED",
        ),
        (
            "register unknown group",
            Setup::Nothing,
            Op::Register(bad_group),
            400,
            "VALIDATION_FAILED",
        ),
        (
            "register again too soon",
            Setup::Registered,
            Op::Register(register_body(PHONE)),
            429,
            "REGISTER_TOO_SOON",
        ),
        (
            "register taken",
            Setup::Completed,
            Op::Register(register_body(PHONE)),
            409,
            "USERNAME_TAKEN",
        ),
        (
            "confirm nothing pending",
            Setup::Nothing,
            confirm(Token::NeverSent),
            404,
            "REGISTRATION_NOT_FOUND",
        ),
        (
            "confirm right",
            Setup::Registered,
            confirm(Token::Right),
            200,
            "OK",
        ),
        (
            "confirm wrong",
            Setup::Registered,
            confirm(Token::Wrong),
            422,
            "TOKEN_INVALID",
        ),
        (
            "confirm expired",
            Setup::Expired,
            confirm(Token::Right),
            410,
            "TOKEN_EXPIRED",
        ),
        (
            "confirm locked",
            Setup::Locked,
            confirm(Token::Right),
            423,
            "REGISTRATION_LOCKED",
        ),
        (
            "confirm completed",
            Setup::Completed,
            confirm(Token::Right),
            409,
            "REGISTRATION_COMPLETED",
        ),
        (
            "confirm bad md5",
            Setup::Registered,
            Op::Confirm {
                password: "password".into(),
                token: Token::Right,
            },
            400,
            "VALIDATION_FAILED",
        ),
        (
            "resend sms too soon",
            Setup::Registered,
            Op::ResendSms(resend.clone()),
            429,
            "RESEND_TOO_SOON",
        ),
        (
            "resend sms",
            Setup::CooledDown,
            Op::ResendSms(resend.clone()),
            200,
            "OK",
        ),
        (
            "resend email",
            Setup::CooledDown,
            Op::ResendEmail(resend.clone()),
            200,
            "OK",
        ),
        (
            "resend email without email",
            Setup::RegisteredWithoutEmail,
            Op::ResendEmail(resend.clone()),
            422,
            "NO_EMAIL_ON_REGISTRATION",
        ),
        (
            "resend mismatch",
            Setup::Registered,
            Op::ResendSms(json!({"username": PHONE, "phone": "+6281298765432"})),
            400,
            "VALIDATION_FAILED",
        ),
        (
            "resend nothing pending",
            Setup::Nothing,
            Op::ResendSms(resend),
            404,
            "REGISTRATION_NOT_FOUND",
        ),
        (
            "verify username",
            Setup::Completed,
            Op::VerifyUsername("081234567890"),
            200,
            "OK",
        ),
        (
            "verify username garbage",
            Setup::Nothing,
            Op::VerifyUsername("abc"),
            400,
            "VALIDATION_FAILED",
        ),
        (
            "verify email",
            Setup::Nothing,
            Op::VerifyEmail("a@example.com"),
            200,
            "OK",
        ),
        (
            "verify email garbage",
            Setup::Nothing,
            Op::VerifyEmail("a@"),
            400,
            "VALIDATION_FAILED",
        ),
    ];
    for (name, setup, op, status, code) in cases {
        let rest_app = spawn_app().await;
        prepare(&rest_app, setup).await;
        let rest = over_rest(&rest_app, &op).await;
        let graphql_app = spawn_app().await;
        prepare(&graphql_app, setup).await;
        let graphql = over_graphql(&graphql_app, &op).await;
        assert_eq!(rest, (status, code.to_owned()), "REST: {name}");
        assert_eq!(graphql, rest, "GraphQL differs from REST: {name}");
    }
}

/// The two faces write times the same way: a host can compare strings.
#[tokio::test]
async fn rest_and_graphql_write_timestamps_alike() {
    let app = spawn_app().await;
    // The test clock stands still, so both registrations start at one instant.
    let rest = app.register(&register_body(PHONE)).await;
    let (_, graphql) = app
        .graphql(
            "mutation($i: RegisterInput!) { register(input: $i) { requestTimestamp expiryTimestamp nextResendAt } }",
            json!({"i": register_body("+6281234567891")}),
        )
        .await;
    let graphql = &graphql["data"]["register"];
    for field in ["requestTimestamp", "expiryTimestamp", "nextResendAt"] {
        assert_eq!(rest[field], graphql[field], "{field}");
    }
    assert!(
        rest["expiryTimestamp"]
            .as_str()
            .unwrap()
            .ends_with("+00:00"),
        "{rest}"
    );
}
