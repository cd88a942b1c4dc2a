//! What is kept and for how long, and the host credential commands.
use chrono::Duration;
use customer_registration::service::{hosts, retention};
use entity::{completion_link, outbox_message, registration, sms_token};
use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};

use crate::helpers::{PHONE, register_body, spawn_app, spawn_app_with};

#[tokio::test]
async fn unconfirmed_registrations_are_deleted_after_their_retention() {
    let mut app = spawn_app_with(|s| s.retention.unconfirmed_registration_days = 30).await;
    // One confirmed and one abandoned, long ago; one abandoned today.
    app.register(&register_body(PHONE)).await;
    let code = app.sms_token(PHONE, 1).await;
    assert_eq!(
        app.confirm(PHONE, "Kopi-Tubruk-42!", &code).await.status(),
        StatusCode::OK
    );
    app.register(&register_body("+6281234567891")).await;
    app.outbox_drained().await;
    app.clock.advance(Duration::days(31));
    app.token = app.new_host_token("host-b").await;
    app.register(&register_body("+6281234567892")).await;
    app.outbox_drained().await;

    let purged = retention::purge(&app.core).await.unwrap();
    assert_eq!(purged.registrations, 1, "{purged:?}");
    assert_eq!(purged.access_tokens, 1, "the month-old token: {purged:?}");
    let left: Vec<String> = registration::Entity::find()
        .all(&app.core.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.phone)
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(!left.contains(&"+6281234567891".to_owned()), "{left:?}");
    // Nothing of the deleted one is left behind, and its expired link is gone.
    let messages = outbox_message::Entity::find()
        .count(&app.core.db)
        .await
        .unwrap();
    assert_eq!(
        messages, 4,
        "two messages each for the two registrations kept"
    );
    let links = completion_link::Entity::find()
        .all(&app.core.db)
        .await
        .unwrap();
    assert_eq!(links.len(), 1, "only today's link is still usable");
    // The confirmed registration's used-up code is gone; the pending one keeps its code.
    let codes = sms_token::Entity::find().count(&app.core.db).await.unwrap();
    assert_eq!(codes, 1);
}

#[tokio::test]
async fn one_instance_at_a_time_runs_the_retention_job() {
    let app = spawn_app().await;
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    assert!(retention::run_if_due(&app.core, a).await.unwrap().is_some());
    assert!(retention::run_if_due(&app.core, b).await.unwrap().is_none());
    assert!(
        retention::run_if_due(&app.core, a).await.unwrap().is_none(),
        "not due yet"
    );
    app.clock.advance(Duration::minutes(61));
    assert!(retention::run_if_due(&app.core, b).await.unwrap().is_some());
}

#[tokio::test]
async fn a_rotated_secret_and_revoked_tokens_stop_working() {
    let app = spawn_app().await;
    let credentials = hosts::create_host(&app.core, "rotating").await.unwrap();
    let token = hosts::issue_access_token(
        &app.core,
        &credentials.client_id,
        &credentials.client_secret,
    )
    .await
    .unwrap();
    let rotated = hosts::rotate_secret(&app.core, "rotating").await.unwrap();
    assert_eq!(rotated.client_id, credentials.client_id);
    assert!(
        hosts::issue_access_token(
            &app.core,
            &credentials.client_id,
            &credentials.client_secret
        )
        .await
        .is_err(),
        "the old secret no longer works"
    );
    assert!(
        hosts::issue_access_token(&app.core, &rotated.client_id, &rotated.client_secret)
            .await
            .is_ok()
    );
    let verify = |token: String| {
        let app = &app;
        async move {
            app.client
                .get(format!(
                    "{}/b2b/customer/auth/verifyEmail?email=a@b.co",
                    app.address
                ))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(verify(token.access_token.clone()).await, StatusCode::OK);
    assert_eq!(
        hosts::revoke_tokens(&app.core, "rotating").await.unwrap(),
        2
    );
    assert_eq!(verify(token.access_token).await, StatusCode::UNAUTHORIZED);
    let unknown = hosts::revoke_tokens(&app.core, "nobody").await.unwrap_err();
    assert_eq!(unknown.code(), "VALIDATION_FAILED");
}
