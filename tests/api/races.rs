//! Concurrency: the counters and the one-customer rule hold under parallel
//! requests, over both transports at once.
use entity::{customer, registration};
use futures::future::join_all;
use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::{
    confirm::wrong,
    helpers::{PHONE, gql_code, md5_upper, register_body, spawn_app},
};

const CONFIRM: &str = "mutation($input: ConfirmRegistrationInput!) { confirmRegistration(input: $input) { customerId } }";

#[tokio::test]
async fn parallel_right_confirms_create_exactly_one_customer() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    let rest = (0..4).map(|_| async { app.confirm(PHONE, "pw", &token).await.status() });
    let statuses: Vec<StatusCode> = join_all(rest).await;
    let input = json!({"input": {"username": PHONE, "password": md5_upper("pw"), "token": token}});
    let graphql = (0..4).map(|_| async { app.graphql(CONFIRM, input.clone()).await });
    let graphql: Vec<(StatusCode, Value)> = join_all(graphql).await;

    let rest_ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let gql_ok = graphql
        .iter()
        .filter(|(_, b)| b["errors"].is_null())
        .count();
    assert_eq!(rest_ok + gql_ok, 1, "{statuses:?} {graphql:?}");
    for status in statuses.iter().filter(|s| **s != StatusCode::OK) {
        assert_eq!(*status, StatusCode::CONFLICT);
    }
    for (_, body) in graphql.iter().filter(|(_, b)| !b["errors"].is_null()) {
        assert_eq!(gql_code(body), "REGISTRATION_COMPLETED");
    }
    assert_eq!(
        customer::Entity::find()
            .all(&app.core.db)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn parallel_wrong_guesses_spend_exactly_the_allowed_attempts() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    let bad = wrong(&token);
    let rest = (0..6).map(|_| async {
        let response = app.confirm(PHONE, "pw", &bad).await;
        let body: Value = response.json().await.unwrap();
        (
            body["code"].as_str().unwrap().to_owned(),
            body["attemptsRemaining"].as_u64(),
        )
    });
    let input = json!({"input": {"username": PHONE, "password": md5_upper("pw"), "token": bad}});
    let graphql = (0..6).map(|_| async {
        let (_, body) = app.graphql(CONFIRM, input.clone()).await;
        let extensions = &body["errors"][0]["extensions"];
        (
            extensions["code"].as_str().unwrap().to_owned(),
            extensions["attemptsRemaining"].as_u64(),
        )
    });
    let (rest, graphql) = futures::join!(join_all(rest), join_all(graphql));
    let outcomes: Vec<(String, Option<u64>)> = rest.into_iter().chain(graphql).collect();

    let mut remaining: Vec<u64> = outcomes
        .iter()
        .filter(|(code, _)| code == "TOKEN_INVALID")
        .map(|(_, r)| r.unwrap())
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, [0, 1, 2, 3, 4], "{outcomes:?}");
    let locked = outcomes
        .iter()
        .filter(|(code, _)| code == "REGISTRATION_LOCKED")
        .count();
    assert_eq!(locked, 7, "{outcomes:?}");
    let stored = registration::Entity::find()
        .one(&app.core.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.failed_attempts, 5);
    // Even the right code no longer works.
    assert_eq!(
        app.confirm(PHONE, "pw", &token).await.status(),
        StatusCode::LOCKED
    );
}

#[tokio::test]
async fn aliases_cannot_multiply_guesses_in_one_operation() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    let guesses: String = (0..10)
        .map(|i| {
            format!(
                r#"g{i}: confirmRegistration(input: {{username: "{PHONE}", password: "{}", token: "{}"}}) {{ customerId }} "#,
                md5_upper("pw"),
                wrong(&token)
            )
        })
        .collect();
    let (status, body) = app
        .graphql(&format!("mutation {{ {guesses} }}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(gql_code(&body), "GRAPHQL_POLICY_VIOLATION");
    let stored = registration::Entity::find()
        .one(&app.core.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.failed_attempts, 0, "nothing ran");
}

/// A Galera node that rolls a transaction back for another node's write
/// set does not always tell the client; the statements that follow must
/// not commit one by one, and the commit must say the transaction is gone.
/// Simulated on any MySQL-family server with a `ROLLBACK` the transaction
/// does not see: with autocommit on, the insert after it was stored.
#[tokio::test]
async fn on_mysql_a_transaction_ended_unseen_keeps_nothing_that_followed() {
    use customer_registration::db::{TransactionEndedByCluster, begin, commit};
    use sea_orm::{ConnectionTrait, Database};
    let Some(server) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("mysql:"))
    else {
        return; // Runs in CI's MySQL and Galera steps.
    };
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_database(dir.path()).await;
    assert!(url.starts_with("mysql:"), "{server}");
    let db = Database::connect(&url).await.unwrap();
    db.execute_unprepared("CREATE TABLE probe (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    let stored = |db: sea_orm::DatabaseConnection| async move {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::MySql,
                "SELECT CAST(COUNT(*) AS SIGNED) AS n FROM probe",
            ))
            .await
            .unwrap()
            .unwrap();
        (row.try_get::<i64>("", "n").unwrap(), db)
    };

    let txn = begin(&db, true).await.unwrap();
    txn.execute_unprepared("INSERT INTO probe VALUES (1)")
        .await
        .unwrap();
    txn.execute_unprepared("ROLLBACK").await.unwrap();
    txn.execute_unprepared("INSERT INTO probe VALUES (2)")
        .await
        .unwrap();
    let error = commit(txn, true).await.unwrap_err();
    assert!(error.is::<TransactionEndedByCluster>(), "{error:#}");
    let (n, db) = stored(db).await;
    assert_eq!(n, 0, "nothing of the ended transaction, nor after it");

    let txn = begin(&db, true).await.unwrap();
    txn.execute_unprepared("INSERT INTO probe VALUES (3)")
        .await
        .unwrap();
    commit(txn, true).await.unwrap();
    assert_eq!(stored(db).await.0, 1, "a transaction left alone commits");
}

/// On SQLite the pool has fewer connections (4) than a busy instance has
/// requests in flight: writes wait for their turn in the process, and no
/// request may hold one connection while waiting for another. Registers,
/// resends, confirms and verifies, sixteen of each at once over both
/// transports, are all answered, and each did what it says.
#[tokio::test]
async fn more_requests_in_flight_than_pooled_connections_are_all_answered() {
    let app = &spawn_app().await;
    let phone = |i: usize| format!("+62812345{i:05}");
    let earlier = (0..16).map(|i| async move { app.register(&register_body(&phone(i))).await });
    join_all(earlier).await;
    let mut tokens = Vec::new();
    for i in 0..16 {
        tokens.push(app.sms_token(&phone(i), 1).await);
    }
    // Past the resend cooldown.
    app.clock.advance(chrono::Duration::seconds(60));

    let registers = (16..32).map(|i| async move {
        let input = json!({"input": register_body(&phone(i))});
        let (_, body) = app
            .graphql(
                "mutation($input: RegisterInput!) { register(input: $input) { id } }",
                input,
            )
            .await;
        body
    });
    let confirms = (0..8).map(|i| {
        let token = tokens[i].clone();
        async move { app.confirm(&phone(i), "pw", &token).await.status() }
    });
    let resends = (8..16).map(|i| async move {
        app.post(
            "/b2b/customer/resend/registration/email",
            &json!({"username": phone(i), "phone": phone(i)}),
        )
        .await
        .status()
    });
    // Phones that are registering or pending, none of them a customer.
    let verifies = (8..24).map(|i| async move {
        let response = app
            .get(&format!(
                "/b2b/customer/auth/verifyUsername?username=%2B{}",
                &phone(i)[1..]
            ))
            .await;
        let status = response.status();
        let body = response.json::<Value>().await.unwrap();
        (
            status,
            body == json!({"username": phone(i), "exists": false}),
        )
    });
    let (registers, confirms, resends, verifies) = futures::join!(
        join_all(registers),
        join_all(confirms),
        join_all(resends),
        join_all(verifies)
    );

    for body in &registers {
        assert!(body["errors"].is_null(), "{body}");
        assert!(body["data"]["register"]["id"].is_string(), "{body}");
    }
    assert_eq!(confirms, vec![StatusCode::OK; 8]);
    assert_eq!(resends, vec![StatusCode::OK; 8]);
    assert_eq!(verifies, vec![(StatusCode::OK, true); 16]);
    let db = &app.core.db;
    assert_eq!(customer::Entity::find().count(db).await.unwrap(), 8);
    assert_eq!(registration::Entity::find().count(db).await.unwrap(), 32);
}

/// A code typed right is read without counting an attempt, and the
/// confirming transaction completes only a registration that still has
/// attempts left: raced by enough wrong guesses to lock it, the right code
/// either completes it (and the guesses after find it completed) or finds
/// it locked, never both.
#[tokio::test]
async fn a_right_code_racing_the_guesses_that_lock_completes_or_is_locked() {
    for _ in 0..3 {
        let app = spawn_app().await;
        app.register(&register_body(PHONE)).await;
        let token = app.sms_token(PHONE, 1).await;
        let bad = wrong(&token);
        let guesses = (0..6).map(|_| async { app.confirm(PHONE, "pw", &bad).await.status() });
        let (right, guesses) = futures::join!(
            async { app.confirm(PHONE, "pw", &token).await.status() },
            join_all(guesses)
        );
        let stored = registration::Entity::find()
            .one(&app.core.db)
            .await
            .unwrap()
            .unwrap();
        let customers = customer::Entity::find().count(&app.core.db).await.unwrap();
        assert!(stored.failed_attempts <= 5, "{stored:?}");
        match right {
            StatusCode::OK => {
                assert_eq!(customers, 1);
                assert_eq!(stored.status, entity::states::RegistrationStatus::Completed);
            }
            StatusCode::LOCKED => {
                assert_eq!(customers, 0);
                assert_eq!(stored.failed_attempts, 5);
            }
            other => panic!("the right code answered {other} beside {guesses:?}"),
        }
    }
}
