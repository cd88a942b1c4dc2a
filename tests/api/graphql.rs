use reqwest::StatusCode;
use serde_json::{Value, json};

use customer_registration::service::request_limits;

use crate::helpers::{PHONE, gql_code, md5_upper, register_body, spawn_app, spawn_app_with};

const REGISTER: &str = "mutation($input: RegisterInput!) { register(input: $input) { id username tokenPrefix attempt active attemptsRemaining } }";

#[tokio::test]
async fn the_whole_flow_works_over_graphql() {
    let app = spawn_app().await;
    let (status, body) = app
        .graphql(REGISTER, json!({"input": register_body("081234567890")}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let ticket = &body["data"]["register"];
    assert_eq!(ticket["username"], PHONE);
    assert_eq!(ticket["attempt"], 1);
    let token = app.sms_token(PHONE, 1).await;
    assert!(token.starts_with(ticket["tokenPrefix"].as_str().unwrap()));

    let (_, body) = app
        .graphql(
            "mutation($input: ConfirmRegistrationInput!) { confirmRegistration(input: $input) { id username } }",
            json!({"input": {"username": PHONE, "password": md5_upper("pw"), "token": token}}),
        )
        .await;
    assert_eq!(
        body["data"]["confirmRegistration"]["id"], ticket["id"],
        "{body}"
    );

    let (_, body) = app
        .graphql(
            r#"{ verifyUsername(username: "0812-3456-7890") { username exists } verifyEmail(email: "081234567890@EXAMPLE.com") { email exists } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["verifyUsername"],
        json!({"username": PHONE, "exists": true})
    );
    assert_eq!(
        body["data"]["verifyEmail"],
        json!({"email": "081234567890@example.com", "exists": true})
    );
}

/// A document validated once is not validated again while its variables
/// can only pass (`graphql::documents`); variables the engine would refuse
/// are refused as on a first request, with the engine's own answer.
#[tokio::test]
async fn a_document_validated_before_still_refuses_variables_of_the_wrong_type() {
    let mut wrong = register_body("081234567891");
    wrong["gender"] = json!("yes");
    let mut missing = register_body("081234567892");
    missing.as_object_mut().unwrap().remove("name");
    for input in [wrong, missing] {
        let (status, first) = spawn_app()
            .await
            .graphql(REGISTER, json!({ "input": input }))
            .await;
        assert!(first["errors"][0]["message"].is_string(), "{first}");
        assert!(first["data"].is_null(), "{first}");

        let app = spawn_app().await;
        let (passed, body) = app
            .graphql(REGISTER, json!({"input": register_body("081234567890")}))
            .await;
        assert_eq!(passed, StatusCode::OK, "{body}");
        assert!(body["errors"].is_null(), "{body}");
        let (again, body) = app.graphql(REGISTER, json!({ "input": input })).await;
        assert_eq!((again, body), (status, first));
    }
}

#[tokio::test]
async fn errors_carry_the_same_codes_and_details() {
    let app = spawn_app().await;
    let mut input = register_body("0812");
    input["birthDate"] = json!("tomorrow");
    let (_, body) = app.graphql(REGISTER, json!({"input": input})).await;
    let extensions = &body["errors"][0]["extensions"];
    assert_eq!(extensions["code"], "VALIDATION_FAILED");
    assert_eq!(extensions["status"], 400);
    let fields: Vec<&str> = extensions["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["phone", "birthDate"]);
}

#[tokio::test]
async fn secrets_are_not_echoed_in_graphql_errors() {
    let app = spawn_app().await;
    let (_, body) = app
        .graphql(
            "mutation { confirmRegistration(input: {username: \"x\", password: 42, token: \"SECRET99\"}) { id } }",
            json!({}),
        )
        .await;
    let text = body.to_string();
    assert!(!body["errors"].is_null());
    assert!(!text.contains("SECRET99"), "{text}");
}

#[tokio::test]
async fn batches_deep_queries_and_bad_json_are_refused() {
    let app = spawn_app_with(|s| s.graphql.max_depth = 3).await;
    let batch = app
        .post(
            "/graphql",
            &json!([{"query": "{ __typename }"}, {"query": "{ __typename }"}]),
        )
        .await;
    assert_eq!(batch.status(), StatusCode::BAD_REQUEST);
    let body: Value = batch.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "BATCH_NOT_SUPPORTED"
    );

    let (status, body) = app
        .graphql(
            "{ registrations { items { accountGroup { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "GRAPHQL_POLICY_VIOLATION"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at most 3 levels deep"),
        "{body}"
    );

    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{\"query\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "MALFORMED_JSON");
}

#[tokio::test]
async fn introspection_can_be_switched_off() {
    let app = spawn_app_with(|s| s.graphql.introspection = false).await;
    let (_, body) = app
        .graphql("{ __schema { types { name } } }", json!({}))
        .await;
    assert!(
        body["data"].is_null() || body["data"]["__schema"].is_null(),
        "{body}"
    );
    let on = spawn_app().await;
    let (_, body) = on
        .graphql("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "QueryRoot");
}

#[tokio::test]
async fn graphiql_is_served_to_browsers() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/graphql", app.address))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("graphiql")
    );
}

const LIST: &str = "query($after: String) { registrations(first: 4, after: $after) { nextCursor items { id username status attemptsRemaining currentToken { prefix attempt } accountGroup { id name } customer { id } } } }";

#[tokio::test]
async fn registrations_are_scoped_to_the_host_and_paginated_without_n_plus_one() {
    // Without polling the dispatcher is idle once the messages are out, so
    // the statement count below is the query's alone.
    let app = spawn_app_with(|s| s.delivery.poll_interval_ms = 3_600_000).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let ticket = app
            .register(&register_body(&format!("+62812345678{i:02}")))
            .await;
        ids.push(ticket["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    app.outbox_drained().await;

    // Request counts wait up to 100 ms to be stored: store them now.
    request_limits::sync(&app.core).await.unwrap();
    let before = app.core.metrics.db_statements();
    let (_, first_page) = app.graphql(LIST, json!({})).await;
    let statements = app.core.metrics.db_statements() - before;
    // The page, then one query each for tokens, groups, customers; the
    // bearer token was checked by an earlier request and comes from the
    // token cache.
    assert_eq!(statements, 4, "statements for one page");

    let page = &first_page["data"]["registrations"];
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["id"], ids[0].as_str(), "newest first");
    assert_eq!(items[0]["status"], "PENDING");
    assert_eq!(
        items[0]["accountGroup"],
        json!({"id": "01", "name": "Default"})
    );
    assert_eq!(items[0]["currentToken"]["attempt"], 1);
    assert!(items[0]["customer"].is_null());

    let mut seen: Vec<String> = Vec::new();
    let mut after = Value::Null;
    loop {
        let (_, body) = app.graphql(LIST, json!({"after": after})).await;
        let page = &body["data"]["registrations"];
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        after = page["nextCursor"].clone();
        if after.is_null() {
            break;
        }
    }
    assert_eq!(seen, ids);

    let other = app.new_host_token("host-b").await;
    let (_, body) = app.graphql_as(&other, LIST, json!({})).await;
    assert_eq!(body["data"]["registrations"]["items"], json!([]));
    let (_, body) = app
        .graphql_as(
            &other,
            "query($id: ID!) { registration(id: $id) { id } }",
            json!({"id": ids[0]}),
        )
        .await;
    assert!(body["data"]["registration"].is_null());
    let (_, body) = app
        .graphql(
            "query($id: ID!) { registration(id: $id) { id username } }",
            json!({"id": ids[0]}),
        )
        .await;
    assert_eq!(body["data"]["registration"]["id"], ids[0].as_str());

    let (_, body) = app
        .graphql("{ registrations(first: 0) { nextCursor } }", json!({}))
        .await;
    assert_eq!(gql_code(&body), "VALIDATION_FAILED");
}

#[tokio::test]
async fn another_host_cannot_confirm_or_resend_my_registration() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    let other = app.new_host_token("host-b").await;
    let response = app
        .post_as(
            &other,
            "/b2b/customer/register/confirm",
            &json!({"username": PHONE, "password": md5_upper("pw"), "token": token}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.confirm(PHONE, "pw", &token).await.status(),
        StatusCode::OK
    );
}

/// A stored state the code does not know is an error, never a guess.
#[tokio::test]
async fn an_unknown_stored_state_is_an_error_not_a_default() {
    use sea_orm::ConnectionTrait;
    let app = spawn_app().await;
    let ticket = app.register(&register_body(PHONE)).await;
    app.core
        .db
        .execute_unprepared("UPDATE registration SET status = 'archived'")
        .await
        .unwrap();
    let (_, body) = app
        .graphql(
            "query($id: ID!) { registration(id: $id) { status } }",
            json!({"id": ticket["id"]}),
        )
        .await;
    assert_eq!(gql_code(&body), "INTERNAL", "{body}");
    assert!(body["data"]["registration"].is_null(), "{body}");
    // The REST face refuses the same way instead of treating it as pending.
    let response = app
        .post(
            "/b2b/customer/resend/registration/sms",
            &json!({"username": PHONE, "phone": PHONE}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
