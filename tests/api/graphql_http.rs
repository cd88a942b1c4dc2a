//! GraphQL over HTTP as its specification and the graphql-http audit ask,
//! schema reads without a token, and the operation policy at any depth.
use entity::outbox_message;
use reqwest::{Response, StatusCode, header};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::helpers::{PHONE, TestApp, register_body, spawn_app, spawn_app_with};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

async fn send(app: &TestApp, accept: Option<&str>, body: &Value) -> Response {
    let mut request = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&app.token)
        .json(body);
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    request.send().await.unwrap()
}

async fn read(response: Response) -> (StatusCode, String, Value) {
    let status = response.status();
    let media = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    (status, media, response.json().await.unwrap())
}

#[tokio::test]
async fn the_response_media_type_follows_accept() {
    let app = spawn_app().await;
    let body = json!({"query": "{ __typename }"});
    for (accept, expected) in [
        (Some("application/json"), "application/json"),
        (Some(GRAPHQL_RESPONSE), GRAPHQL_RESPONSE),
        (
            Some("application/graphql-response+json, application/json;q=0.9"),
            GRAPHQL_RESPONSE,
        ),
        (Some("*/*"), "application/json"),
        (None, "application/json"),
    ] {
        let (status, media, value) = read(send(&app, accept, &body).await).await;
        assert_eq!(status, StatusCode::OK);
        assert!(media.starts_with(expected), "{accept:?}: {media}");
        assert_eq!(value["data"]["__typename"], "QueryRoot");
    }
}

#[tokio::test]
async fn documents_that_cannot_run_are_request_errors() {
    let app = spawn_app().await;
    let cases = [
        (json!({"query": "{"}), "GRAPHQL_PARSE_FAILED"),
        (
            json!({"query": "{ notAField }"}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            json!({"query": "query Q($id: ID!) { registration(id: $id) { id } }", "variables": {"id": null}}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
    ];
    for (body, code) in cases {
        // The new media type: 400 and no data.
        let (status, _, value) = read(send(&app, Some(GRAPHQL_RESPONSE), &body).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {value}");
        assert!(value.get("data").is_none(), "{value}");
        assert_eq!(value["errors"][0]["extensions"]["code"], code, "{value}");
        // The legacy one keeps 200, still without data.
        let (status, _, value) = read(send(&app, Some("application/json"), &body).await).await;
        assert_eq!(status, StatusCode::OK);
        assert!(value.get("data").is_none(), "{value}");
        assert_eq!(value["errors"][0]["extensions"]["code"], code);
    }
}

/// A document's validation that passed is reused (`graphql::documents`),
/// but never for variables the engine would refuse: after the same
/// document ran with a string, a number or a null for its `String!`
/// variable is refused as on a fresh instance, and the string still runs.
#[tokio::test]
async fn a_document_that_passed_still_refuses_variables_that_do_not_coerce() {
    let query = "query Verify($u: String!) { verifyUsername(username: $u) { exists } }";
    let body = |u: Value| json!({"query": query, "operationName": "Verify", "variables": {"u": u}});
    let fresh = spawn_app().await;
    let app = spawn_app().await;
    for good in ["+6281200012345", "+6281200012346"] {
        let (status, _, value) =
            read(send(&app, Some(GRAPHQL_RESPONSE), &body(json!(good))).await).await;
        assert_eq!(status, StatusCode::OK, "{value}");
        assert_eq!(value["data"]["verifyUsername"]["exists"], false, "{value}");
    }
    for bad in [
        json!(6281200012345_u64),
        Value::Null,
        json!(["+6281200012345"]),
    ] {
        let (_, _, expected) =
            read(send(&fresh, Some(GRAPHQL_RESPONSE), &body(bad.clone())).await).await;
        let (status, _, value) =
            read(send(&app, Some(GRAPHQL_RESPONSE), &body(bad.clone())).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {value}");
        assert!(value.get("data").is_none(), "{value}");
        assert_eq!(
            value["errors"][0]["extensions"]["code"],
            "GRAPHQL_VALIDATION_FAILED"
        );
        assert_eq!(value, expected, "{bad}");
    }
    let (status, _, value) =
        read(send(&app, Some(GRAPHQL_RESPONSE), &body(json!("+6281200012347"))).await).await;
    assert_eq!(status, StatusCode::OK, "{value}");
}

/// The first request of a document runs in the engine, which validates
/// it; later ones of an availability query are answered without it
/// (`graphql::direct`). Both answer alike to the byte, with status and
/// media type, found or not, for good and refused input.
#[tokio::test]
async fn an_availability_query_answers_as_the_engine_once_its_document_is_known() {
    let app = spawn_app().await;
    let mut customer = register_body(PHONE);
    customer["email"] = json!("taken@example.com");
    app.register(&customer).await;
    let code = app.sms_token(PHONE, 1).await;
    let confirmed = app.confirm(PHONE, "secret password", &code).await;
    assert_eq!(confirmed.status(), StatusCode::OK);

    let username = "query($u: String!) { verifyUsername(username: $u) { username exists } }";
    let aliased = "query Check($u: String!) { taken: verifyUsername(username: $u) { __typename yes: exists username } }";
    let email = "query($e: String!) { verifyEmail(email: $e) { exists email } }";
    let two = "query A($e: String!) { verifyEmail(email: $e) { exists } } query B { verifyEmail(email: \"Taken@Example.com\") { email exists __typename } }";
    let cases = [
        json!({"query": username, "variables": {"u": PHONE}}),
        json!({"query": username, "variables": {"u": "0812-3456-7899"}}),
        json!({"query": username, "variables": {"u": "hello"}}),
        json!({"query": username, "variables": {"u": ""}}),
        json!({"query": aliased, "operationName": "Check", "variables": {"u": PHONE}}),
        json!({"query": aliased, "operationName": "Check", "variables": {"u": "12"}}),
        json!({"query": email, "variables": {"e": " Taken@Example.com"}}),
        json!({"query": email, "variables": {"e": "free@example.com"}}),
        json!({"query": email, "variables": {"e": "nope"}}),
        json!({"query": two, "operationName": "A", "variables": {"e": "taken@example.com"}}),
        json!({"query": two, "operationName": "B"}),
    ];
    let (mut texts, mut found) = (0, 0);
    for case in cases {
        for accept in [GRAPHQL_RESPONSE, "application/json"] {
            let answer = |response: Response| async move {
                let status = response.status();
                let media = response.headers()[header::CONTENT_TYPE].clone();
                (status, media, response.text().await.unwrap())
            };
            // A fresh text each time, so the first request is the engine's.
            texts += 1;
            let mut first_sight = case.clone();
            first_sight["query"] = json!(format!("{} # {texts}", case["query"].as_str().unwrap()));
            let engine = answer(send(&app, Some(accept), &first_sight).await).await;
            let direct = answer(send(&app, Some(accept), &first_sight).await).await;
            assert_eq!(direct, engine, "{case} ({accept})");
            let again = answer(send(&app, Some(accept), &first_sight).await).await;
            assert_eq!(again, engine, "{case} ({accept}), a third time");
            found += usize::from(engine.2.contains("true"));
        }
    }
    assert_eq!(found, 10, "the registered username and email were found");
}

#[tokio::test]
async fn malformed_request_parameters_are_named() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({}), "query"),
        (json!({"query": 1}), "query"),
        (
            json!({"query": "{ __typename }", "operationName": 1}),
            "operationName",
        ),
        (
            json!({"query": "{ __typename }", "variables": "x"}),
            "variables",
        ),
        (
            json!({"query": "{ __typename }", "extensions": []}),
            "extensions",
        ),
    ] {
        let (status, _, value) = read(send(&app, Some(GRAPHQL_RESPONSE), &body).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let extensions = &value["errors"][0]["extensions"];
        assert_eq!(extensions["code"], "VALIDATION_FAILED");
        assert_eq!(extensions["details"][0]["field"], field, "{value}");
    }
    // Nulls are allowed where the specification allows them.
    let body = json!({"query": "{ __typename }", "operationName": null, "variables": null, "extensions": null});
    let (status, _, _) = read(send(&app, None, &body).await).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn every_error_has_a_code() {
    let app = spawn_app().await;
    let (_, body) = app
        .graphql(
            "{ registrations(first: 81383306511) { nextCursor } }",
            json!({}),
        )
        .await;
    let errors = body["errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "{body}");
    for error in errors {
        assert!(error["extensions"]["code"].is_string(), "{error}");
    }
}

#[tokio::test]
async fn the_schema_can_be_read_without_a_token_by_graphql_js() {
    let app = spawn_app().await;
    for query in [
        include_str!("../fixtures/introspection-graphql-js-default.graphql"),
        include_str!("../fixtures/introspection-graphql-js-all-options.graphql"),
    ] {
        let response = app
            .client
            .post(format!("{}/graphql", app.address))
            .json(&json!({"query": query, "operationName": "IntrospectionQuery"}))
            .send()
            .await
            .unwrap();
        let (status, _, body) = read(response).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
        let types = body["data"]["__schema"]["types"].as_array().unwrap();
        assert!(types.iter().any(|t| t["name"] == "RegistrationTicket"));
    }
    // Data still needs a token, even beside a schema read.
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&json!({"query": "{ __typename verifyUsername(username: \"081234567890\") { exists } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // With introspection off, a schema read is just another unauthenticated request.
    let closed = spawn_app_with(|s| s.graphql.introspection = false).await;
    let response = closed
        .client
        .post(format!("{}/graphql", closed.address))
        .json(&json!({"query": "{ __schema { types { name } } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn mutations_hidden_in_nested_fragments_are_refused_whole() {
    let app = spawn_app().await;
    let register = |alias: &str| {
        format!(
            "{alias}: register(input: {{phone: \"081234567890\", name: \"A\", birthDate: \"1990-01-01\", birthPlace: \"B\", gender: true, countryId: \"ID\", accountGroupId: \"01\"}}) {{ id }}"
        )
    };
    for levels in [17, 30] {
        let open = "... on MutationRoot { ".repeat(levels);
        let close = "} ".repeat(levels);
        let query = format!(
            "mutation {{ {open} {} {} {close} }}",
            register("a"),
            register("b")
        );
        let (status, body) = app.graphql(&query, json!({})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "GRAPHQL_POLICY_VIOLATION"
        );
    }
    let aliases: String = (0..11)
        .map(|i| {
            format!(
                "v{i}: verifyUsername(username: \"08123456789{}\") {{ exists }} ",
                i % 10
            )
        })
        .collect();
    let (status, body) = app.graphql(&format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.get("data").is_none());
    let queued = outbox_message::Entity::find()
        .count(&app.core.db)
        .await
        .unwrap();
    assert_eq!(queued, 0, "nothing ran");
}
