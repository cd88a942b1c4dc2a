//! Keys every instance shares: required off SQLite, fingerprinted in the
//! database, and rotatable without breaking codes or passwords.
use std::sync::Arc;

use customer_registration::{
    clock::SystemClock,
    config::Settings,
    service::{
        client::ClientPresence,
        hosts,
        registration::{self, ConfirmInput, Field},
    },
    startup,
};
use reqwest::StatusCode;

use crate::helpers::{PHONE, md5_upper, register_body, spawn_app_with};

fn secret(value: &str) -> Option<secrecy::SecretString> {
    Some(value.to_owned().into())
}

#[tokio::test]
async fn postgres_and_mysql_refuse_to_start_without_shared_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        data_dir: dir.path().to_owned(),
        // Never reached: the keys are checked before connecting.
        database_url: "postgres://nobody@127.0.0.1:1/none".into(),
        ..Default::default()
    };
    settings.secrets.token_key = secret("k");
    let error = startup::build_core(settings, Arc::new(SystemClock))
        .await
        .err()
        .expect("refused");
    let text = format!("{error:#}");
    assert!(
        text.contains("secrets.password_pepper must be set"),
        "{text}"
    );
    assert!(!text.contains("secrets.token_key and"), "{text}");
    assert!(text.contains("secrets generate"), "{text}");
    assert!(
        !dir.path().join("secrets.toml").exists(),
        "nothing generated"
    );
}

#[tokio::test]
async fn another_key_is_refused_and_a_rotation_keeps_old_codes_valid() {
    let app = spawn_app_with(|s| {
        s.secrets.token_key = secret("token-key-one");
        s.secrets.password_pepper = secret("pepper-one");
    })
    .await;
    app.register(&register_body(PHONE)).await;
    let code = app.sms_token(PHONE, 1).await;
    let second_instance = |token_key: &str, previous: Vec<&str>| {
        let mut settings = (*app.core.settings).clone();
        settings.secrets.token_key = secret(token_key);
        settings.secrets.previous_token_keys =
            previous.into_iter().map(|k| k.to_owned().into()).collect();
        // The same clock as the first instance: the code's expiry is on it.
        startup::build_core(settings, app.clock.clone())
    };

    let refused = second_instance("token-key-two", vec![])
        .await
        .err()
        .expect("another key is refused");
    assert!(
        format!("{refused:#}").contains("secrets.token_key is not the key this database"),
        "{refused:#}"
    );

    // The new key with the old one kept: the code sent before still works.
    let rotated = second_instance("token-key-two", vec!["token-key-one"])
        .await
        .expect("a rotation starts");
    let host = hosts::authenticate(&rotated, Some(&format!("Bearer {}", app.token)))
        .await
        .unwrap();
    let confirmed = registration::confirm(
        &rotated,
        &host,
        ConfirmInput {
            username: Field::Present(PHONE.into()),
            password: Field::Present(md5_upper("Kopi-Tubruk-42!")),
            token: Field::Present(code),
        },
        &ClientPresence::always_waiting(),
    )
    .await
    .expect("a code issued under the previous key verifies");
    assert_eq!(confirmed.username, PHONE);

    // Once rotated, the database expects the new key.
    let stale = second_instance("token-key-one", vec![])
        .await
        .err()
        .expect("the old key alone is refused after the rotation");
    assert!(
        format!("{stale:#}").contains("secrets.token_key"),
        "{stale:#}"
    );
}

#[tokio::test]
async fn password_hashes_name_their_pepper() {
    let app = spawn_app_with(|s| {
        s.secrets.token_key = secret("token-key");
        s.secrets.password_pepper = secret("pepper-one");
        s.secrets.password_pepper_id = 7;
    })
    .await;
    app.register(&register_body(PHONE)).await;
    let code = app.sms_token(PHONE, 1).await;
    let response = app.confirm(PHONE, "Kopi-Tubruk-42!", &code).await;
    assert_eq!(response.status(), StatusCode::OK);
    use sea_orm::EntityTrait;
    let customer = entity::customer::Entity::find()
        .one(&app.core.db)
        .await
        .unwrap()
        .unwrap();
    // Argon2's PHC string carries the pepper id as `keyid` (base64 of [7]).
    assert!(
        customer.password_hash.contains("keyid=Bw"),
        "{}",
        customer.password_hash
    );
    let md5 = customer_registration::domain::Md5PasswordHex::parse(&md5_upper("Kopi-Tubruk-42!"))
        .unwrap();
    assert!(
        app.core
            .hashing
            .verify(&md5, customer.password_hash.clone())
            .await
            .unwrap()
    );
}
