use chrono::Duration;
use customer_registration::service::hosts;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{PHONE, assert_error, register_body, spawn_app};

#[tokio::test]
async fn token_endpoint_accepts_form_credentials() {
    let app = spawn_app().await;
    let credentials = hosts::create_host(&app.core, "form-host").await.unwrap();
    let response = app
        .client
        .post(format!("{}/oauth/token", app.address))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &credentials.client_id),
            ("client_secret", &credentials.client_secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap();
    let response = app
        .post_as(token, "/b2b/customer/register", &register_body(PHONE))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_endpoint_rejects_bad_clients_per_rfc6749() {
    let app = spawn_app().await;
    let credentials = hosts::create_host(&app.core, "basic-host").await.unwrap();
    let url = format!("{}/oauth/token", app.address);

    let wrong_secret = app
        .client
        .post(&url)
        .basic_auth(&credentials.client_id, Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert!(
        wrong_secret.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let body = assert_error(wrong_secret, StatusCode::UNAUTHORIZED, "INVALID_CLIENT").await;
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_description"], "client authentication failed");

    let wrong_grant = app
        .client
        .post(&url)
        .basic_auth(&credentials.client_id, Some(&credentials.client_secret))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    let body = assert_error(
        wrong_grant,
        StatusCode::BAD_REQUEST,
        "UNSUPPORTED_GRANT_TYPE",
    )
    .await;
    assert_eq!(body["error"], "unsupported_grant_type");

    // RFC 6749 §5.2: every malformed token request is a 400 invalid_request,
    // and no answer may be cached.
    let malformed = [
        app.client
            .post(&url)
            .json(&json!({"grant_type": "client_credentials"})),
        app.client
            .post(&url)
            .form(&[("client_id", credentials.client_id.as_str())]),
        app.client.post(&url).form(&[
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
        ]),
        app.client
            .post(&url)
            .basic_auth(&credentials.client_id, Some(&credentials.client_secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", credentials.client_id.as_str()),
            ]),
    ];
    for request in malformed {
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[header::PRAGMA], "no-cache");
        let body = assert_error(response, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
        assert_eq!(body["error"], "invalid_request");
        assert!(body["error_description"].is_string());
    }
}

/// RFC 7009: a client revokes one of its tokens; the answer never tells
/// whether a token existed, and another client's tokens are untouched.
#[tokio::test]
async fn a_client_revokes_its_own_token() {
    let app = spawn_app().await;
    let credentials = hosts::create_host(&app.core, "revoking-host")
        .await
        .unwrap();
    let token_url = format!("{}/oauth/token", app.address);
    let revoke_url = format!("{}/oauth/revoke", app.address);
    let issue = || async {
        let body: Value = app
            .client
            .post(&token_url)
            .basic_auth(&credentials.client_id, Some(&credentials.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    };
    let app = &app;
    let works = |token: String| async move {
        app.client
            .get(format!(
                "{}/b2b/customer/auth/verifyUsername?username={PHONE}",
                app.address
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::OK
    };
    let kept = issue().await;
    let revoked = issue().await;

    // Another host cannot revoke it, and is not told so.
    let response = app
        .client
        .post(&revoke_url)
        .form(&[
            ("token", revoked.as_str()),
            ("client_id", "host_unknown"),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    // Credentials in the form: 400 and no challenge (a browser would prompt).
    assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
    let body = assert_error(response, StatusCode::BAD_REQUEST, "INVALID_CLIENT").await;
    assert_eq!(body["error"], "invalid_client");
    let other = hosts::create_host(&app.core, "other-host").await.unwrap();
    let response = app
        .client
        .post(&revoke_url)
        .basic_auth(&other.client_id, Some(&other.client_secret))
        .form(&[("token", revoked.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        works(revoked.clone()).await,
        "another host's revocation is ignored"
    );

    for token in [revoked.as_str(), revoked.as_str(), "never-issued"] {
        let response = app
            .client
            .post(&revoke_url)
            .basic_auth(&credentials.client_id, Some(&credentials.client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{token}");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert!(response.bytes().await.unwrap().is_empty());
    }
    assert!(!works(revoked).await);
    assert!(works(kept).await, "only the named token is revoked");

    let missing = app
        .client
        .post(&revoke_url)
        .basic_auth(&credentials.client_id, Some(&credentials.client_secret))
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    let body = assert_error(missing, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    assert_eq!(body["error_description"], "token is required");
}

#[tokio::test]
async fn api_requires_a_valid_bearer_token() {
    let app = spawn_app().await;
    let url = format!(
        "{}/b2b/customer/auth/verifyUsername?username={PHONE}",
        app.address
    );

    let missing = app.client.get(&url).send().await.unwrap();
    assert_eq!(
        missing.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="customer-registration""#
    );
    assert_error(missing, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;

    // RFC 6750 §3.1: a malformed request is 400 invalid_request, a token
    // that does not work 401 invalid_token.
    for (authorization, status, error) in [
        ("Basic abc", StatusCode::BAD_REQUEST, "invalid_request"),
        ("Bearer", StatusCode::BAD_REQUEST, "invalid_request"),
        ("token", StatusCode::BAD_REQUEST, "invalid_request"),
        (
            "Bearer not-a-token",
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
    ] {
        let response = app
            .client
            .get(&url)
            .header(header::AUTHORIZATION, authorization)
            .send()
            .await
            .unwrap();
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.contains(&format!(r#"error="{error}""#)),
            "{authorization}: {challenge}"
        );
        assert_error(response, status, "UNAUTHENTICATED").await;
    }

    // GraphQL answers in its own shape, with the same status and challenge.
    let graphql = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&json!({"query": "{ verifyUsername(username: \"0812\") { exists } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(graphql.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        graphql.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="customer-registration""#
    );
    let body: Value = graphql.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    assert!(body.get("data").is_none(), "{body}");
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let app = spawn_app().await;
    app.clock.advance(Duration::seconds(3601));
    let response = app
        .get(&format!(
            "/b2b/customer/auth/verifyUsername?username={PHONE}"
        ))
        .await;
    let body = assert_error(response, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    assert!(body["message"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn disabling_a_host_stops_its_tokens_at_once() {
    let app = spawn_app().await;
    let path = format!("/b2b/customer/auth/verifyUsername?username={PHONE}");
    assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    hosts::disable_host(&app.core, "host-a").await.unwrap();
    assert_error(
        app.get(&path).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;
}

#[tokio::test]
async fn first_start_creates_a_usable_host_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let settings = customer_registration::config::Settings {
        data_dir: dir.path().to_owned(),
        ..Default::default()
    };
    let core = customer_registration::startup::build_core(
        settings,
        std::sync::Arc::new(customer_registration::clock::SystemClock),
    )
    .await
    .unwrap();
    let credentials = hosts::bootstrap_first_host(&core)
        .await
        .unwrap()
        .expect("host created");
    assert!(hosts::bootstrap_first_host(&core).await.unwrap().is_none());
    let issued =
        hosts::issue_access_token(&core, &credentials.client_id, &credentials.client_secret)
            .await
            .unwrap();
    let authorization = format!("Bearer {}", issued.access_token);
    let host = hosts::authenticate(&core, Some(&authorization))
        .await
        .unwrap();
    assert_eq!(host.name, "default");
}

/// Liveness and readiness need no token; readiness checks the database,
/// the migrations and the delivery loop.
#[tokio::test]
async fn health_and_readiness_answer_without_a_token() {
    let app = spawn_app().await;
    let live = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let ready = crate::helpers::eventually("the instance to be ready", || async {
        let response = app
            .client
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .unwrap();
        (response.status() == StatusCode::OK).then_some(response)
    })
    .await;
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"ready": true, "database": true, "cluster": true, "migrations": true, "dispatcher": true})
    );
    // A delivery loop that has not gone round for long is reported.
    app.clock.advance(Duration::minutes(10));
    let stale = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    let status = stale.status();
    let body: Value = stale.json().await.unwrap();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!(body["dispatcher"], false, "{body}");
    } else {
        // The loop went round between the clock moving and the probe.
        assert_eq!(body["dispatcher"], true, "{body}");
    }
}

/// Instances starting together on an empty database migrate it once.
#[tokio::test]
async fn instances_starting_together_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_database(dir.path()).await;
    let start = |n: usize| {
        let mut settings = customer_registration::config::Settings {
            data_dir: dir.path().join(n.to_string()),
            database_url: url.clone(),
            ..Default::default()
        };
        crate::helpers::shared_test_secrets(&mut settings);
        customer_registration::startup::build_core(
            settings,
            std::sync::Arc::new(customer_registration::clock::SystemClock),
        )
    };
    let (a, b, c) = tokio::join!(start(1), start(2), start(3));
    for core in [a, b, c] {
        let core = core.expect("every instance starts");
        assert!(
            customer_registration::db::migrations_applied(&core.db)
                .await
                .unwrap()
        );
    }
}

/// A token found valid is trusted for `auth.token_cache_seconds` without a
/// lookup: revoked behind this instance's back (another instance, the CLI),
/// it is refused once that time has passed; revoked through this instance,
/// at once.
#[tokio::test]
async fn a_token_revoked_elsewhere_is_refused_within_the_cache_lifetime() {
    let app = spawn_app().await;
    assert_eq!(app.core.settings.auth.token_cache_seconds, 5);
    let path = format!("/b2b/customer/auth/verifyUsername?username={PHONE}");
    assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    revoke_behind_the_instance(&app).await;
    assert_eq!(
        app.get(&path).await.status(),
        StatusCode::OK,
        "still trusted: the cache answered"
    );
    app.clock.advance(Duration::seconds(6));
    assert_error(
        app.get(&path).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;
}

#[tokio::test]
async fn with_the_token_cache_off_every_request_asks_the_database() {
    let app = crate::helpers::spawn_app_with(|s| s.auth.token_cache_seconds = 0).await;
    let path = format!("/b2b/customer/auth/verifyUsername?username={PHONE}");
    assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    revoke_behind_the_instance(&app).await;
    assert_error(
        app.get(&path).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;
}

/// Revokes the app's token in the database directly, as another instance
/// or the CLI would: this instance is not told.
async fn revoke_behind_the_instance(app: &crate::helpers::TestApp) {
    use customer_registration::{clock::Clock, crypto::sha256_hex};
    use entity::access_token;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

    access_token::Entity::update_many()
        .col_expr(
            access_token::Column::RevokedAt,
            Expr::value(app.clock.now()),
        )
        .filter(access_token::Column::TokenHash.eq(sha256_hex(&app.token)))
        .exec(&app.core.db)
        .await
        .unwrap();
}
