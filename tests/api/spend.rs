//! SMS spend per host: the monthly budget, its warning webhook and its
//! refusal, and the host's sends by day, channel, country and outcome.
use chrono::{Datelike, Duration, TimeZone, Utc};
use customer_registration::{clock::Clock, domain::MonthlySmsBudget, service::spend};
use entity::{outbox_message, registration};
use reqwest::{StatusCode, header};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::{
    helpers::{
        PHONE, TestApp, assert_error, assert_quota_refused, gql_code, register_body, spawn_app_with,
    },
    webhooks::{answering, endpoint, received, wait_received},
};

/// The `n`th of a run of distinct Indonesian mobile numbers.
fn phone(n: usize) -> String {
    format!("+62812345{n:05}")
}

async fn set_budget(app: &TestApp, sms: i64) {
    let budget = MonthlySmsBudget::parse(sms).unwrap();
    spend::set_budget(&app.core, "host-a", Some(budget))
        .await
        .expect("budget set");
}

const STATISTICS: &str = "query($from: String, $to: String) { sendStatistics(from: $from, to: $to) { from to sends { day channel country outcome count } smsBudget { month monthlySms smsQueued remaining warnedAt renewsAt } } }";

async fn statistics(app: &TestApp, variables: Value) -> Value {
    let (status, body) = app.graphql(STATISTICS, variables).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["sendStatistics"].clone()
}

async fn budget_warnings(server: &wiremock::MockServer, secret: &str) -> Vec<Value> {
    received(server, secret)
        .await
        .into_iter()
        .filter(|r| r.body["type"] == "host.budget_warning")
        .map(|r| r.body)
        .collect()
}

#[tokio::test]
async fn a_budget_warns_once_at_80_percent_and_refuses_beyond_it_until_the_month_ends() {
    let server = answering(204).await;
    let app = spawn_app_with(|s| {
        // The test moves the clock into the next month.
        s.auth.access_token_ttl_seconds = 40 * 86_400;
    })
    .await;
    let secret = endpoint(&app, "host-a", &server).await;
    set_budget(&app, 5).await;

    for n in 0..3 {
        app.register(&register_body(&phone(n))).await;
    }
    // Each register also queues registration.started: wait for those.
    wait_received(&server, &secret, 3).await;
    assert!(budget_warnings(&server, &secret).await.is_empty());
    // The fourth SMS is 80 % of five.
    app.register(&register_body(&phone(3))).await;
    let got = wait_received(&server, &secret, 5).await;
    let warning = got
        .iter()
        .find(|r| r.body["type"] == "host.budget_warning")
        .expect("host.budget_warning");
    let month = app.clock.now().format("%Y-%m").to_string();
    assert_eq!(warning.body["data"]["month"], month.as_str());
    assert_eq!(warning.body["data"]["monthlySmsBudget"], 5);
    assert_eq!(warning.body["data"]["smsQueued"], 4);
    assert_eq!(warning.body["data"]["warningPercent"], 80);
    assert!(
        !warning.raw.contains(&phone(3)),
        "no customer data: {}",
        warning.raw
    );

    // The fifth is the last: no second warning.
    app.register(&register_body(&phone(4))).await;
    wait_received(&server, &secret, 6).await;

    // The sixth is refused, until the month ends, and leaves nothing.
    let refused = app
        .post("/b2b/customer/register", &register_body(&phone(5)))
        .await;
    let retry_after: i64 = refused.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = app.clock.now();
    let next_month = if now.month() == 12 {
        Utc.with_ymd_and_hms(now.year() + 1, 1, 1, 0, 0, 0)
    } else {
        Utc.with_ymd_and_hms(now.year(), now.month() + 1, 1, 0, 0, 0)
    }
    .unwrap();
    assert_eq!(retry_after, (next_month - now).num_seconds());
    assert_quota_refused(refused, "monthly SMS budget").await;
    let stored = registration::Entity::find()
        .filter(registration::Column::Phone.eq(phone(5)))
        .count(&app.core.db)
        .await
        .unwrap();
    assert_eq!(stored, 0, "a refused register stores nothing");
    // A resend is an SMS too.
    app.clock.advance(Duration::seconds(61));
    let resend = json!({"username": phone(0), "phone": phone(0)});
    let refused = app
        .post("/b2b/customer/resend/registration/sms", &resend)
        .await;
    assert_error(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "SEND_QUOTA_EXCEEDED",
    )
    .await;
    // GraphQL says the same.
    let (_, body) = app
        .graphql(
            "mutation($i: RegisterInput!) { register(input: $i) { id } }",
            json!({"i": {
                "phone": phone(6), "name": "Ann Lee", "birthDate": "1990-01-01",
                "birthPlace": "Jakarta", "gender": false, "countryId": "ID",
                "accountGroupId": "01"
            }}),
        )
        .await;
    assert_eq!(gql_code(&body), "SEND_QUOTA_EXCEEDED", "{body}");

    let stats = statistics(&app, json!({})).await;
    let budget = &stats["smsBudget"];
    assert_eq!(budget["month"], month.as_str());
    assert_eq!(budget["monthlySms"], 5);
    assert_eq!(budget["smsQueued"], 5);
    assert_eq!(budget["remaining"], 0);
    assert!(budget["warnedAt"].is_string(), "{budget}");
    assert_eq!(budget["renewsAt"], next_month.to_rfc3339().as_str());
    assert_eq!(budget_warnings(&server, &secret).await.len(), 1);

    // A new month, a new budget.
    app.clock
        .advance(next_month - app.clock.now() + Duration::minutes(1));
    app.register(&register_body(&phone(7))).await;
    let stats = statistics(&app, json!({})).await;
    assert_eq!(stats["smsBudget"]["smsQueued"], 1);
    assert!(stats["smsBudget"]["warnedAt"].is_null());
}

#[tokio::test]
async fn racing_sends_at_the_budget_let_exactly_the_budget_through_and_warn_once() {
    let server = answering(204).await;
    let app = spawn_app_with(|_| {}).await;
    let secret = endpoint(&app, "host-a", &server).await;
    set_budget(&app, 8).await;

    let attempts = (0..12).map(|n| {
        let app = &app;
        async move {
            app.post("/b2b/customer/register", &register_body(&phone(n)))
                .await
                .status()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((ok, refused), (8, 4), "{statuses:?}");
    let sms = outbox_message::Entity::find()
        .filter(outbox_message::Column::Channel.eq(entity::states::Channel::Sms))
        .count(&app.core.db)
        .await
        .unwrap();
    assert_eq!(sms, 8);
    // 8 registration.started and one warning.
    wait_received(&server, &secret, 9).await;
    app.outbox_drained().await;
    assert_eq!(budget_warnings(&server, &secret).await.len(), 1);
}

#[tokio::test]
async fn a_budget_set_mid_month_counts_what_was_already_sent_and_can_be_removed() {
    let app = spawn_app_with(|_| {}).await;
    for n in 0..3 {
        app.register(&register_body(&phone(n))).await;
    }
    let status = spend::set_budget(
        &app.core,
        "host-a",
        Some(MonthlySmsBudget::parse(3).unwrap()),
    )
    .await
    .unwrap()
    .expect("a status");
    assert_eq!((status.sms_queued, status.remaining()), (3, 0));
    let refused = app
        .post("/b2b/customer/register", &register_body(&phone(3)))
        .await;
    assert_error(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "SEND_QUOTA_EXCEEDED",
    )
    .await;
    // Another host's budget is its own: host-b has none.
    let other = app.new_host_token("host-b").await;
    let response = app
        .post_as(&other, "/b2b/customer/register", &register_body(&phone(3)))
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    assert_eq!(
        spend::set_budget(&app.core, "host-a", None).await.unwrap(),
        None
    );
    app.register(&register_body(&phone(4))).await;
    assert!(statistics(&app, json!({})).await["smsBudget"].is_null());
    let missing = spend::set_budget(&app.core, "nobody", None)
        .await
        .unwrap_err();
    assert!(
        format!("{missing:?}").contains("no host named nobody"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn sends_are_counted_by_day_channel_country_and_outcome() {
    let app = spawn_app_with(|s| {
        s.auth.access_token_ttl_seconds = 3 * 86_400;
        s.quotas.allowed_countries = vec!["ID".into(), "DE".into()];
    })
    .await;
    let first_day = app.clock.now().date_naive();
    app.register(&register_body(PHONE)).await;
    // A German mobile number, without email.
    let mut german = register_body("+4915112345678");
    german.as_object_mut().unwrap().remove("email");
    app.register(&german).await;
    app.outbox_drained().await;
    app.clock.advance(Duration::days(1));
    let second_day = app.clock.now().date_naive();
    app.register(&register_body(&phone(1))).await;

    let stats = statistics(
        &app,
        json!({"from": first_day.to_string(), "to": second_day.to_string()}),
    )
    .await;
    assert_eq!(stats["from"], first_day.to_string().as_str());
    assert_eq!(stats["to"], second_day.to_string().as_str());
    let rows: Vec<(String, String, Value, String, u64)> = stats["sends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["day"].as_str().unwrap().to_owned(),
                r["channel"].as_str().unwrap().to_owned(),
                r["country"].clone(),
                r["outcome"].as_str().unwrap().to_owned(),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let (d1, d2) = (first_day.to_string(), second_day.to_string());
    // The second day's messages may or may not have gone out yet.
    let second_day_outcome = rows
        .iter()
        .find(|r| r.0 == d2 && r.1 == "SMS")
        .map(|r| r.3.clone())
        .expect("a second-day SMS");
    assert!(["PENDING", "SENT"].contains(&second_day_outcome.as_str()));
    let second_day_email = rows
        .iter()
        .find(|r| r.0 == d2 && r.1 == "EMAIL")
        .map(|r| r.3.clone())
        .expect("a second-day email");
    assert_eq!(
        rows,
        vec![
            (d1.clone(), "EMAIL".into(), Value::Null, "SENT".into(), 1),
            (d1.clone(), "SMS".into(), json!("DE"), "SENT".into(), 1),
            (d1, "SMS".into(), json!("ID"), "SENT".into(), 1),
            (d2.clone(), "EMAIL".into(), Value::Null, second_day_email, 1),
            (d2, "SMS".into(), json!("ID"), second_day_outcome, 1),
        ]
    );
    // One day only; another host sees none of these.
    let only_second = statistics(
        &app,
        json!({"from": second_day.to_string(), "to": second_day.to_string()}),
    )
    .await;
    assert_eq!(only_second["sends"].as_array().unwrap().len(), 2);
    let other = app.new_host_token("host-b").await;
    let (_, body) = app
        .graphql_as(
            &other,
            STATISTICS,
            json!({"from": first_day.to_string(), "to": second_day.to_string()}),
        )
        .await;
    assert_eq!(body["data"]["sendStatistics"]["sends"], json!([]), "{body}");
}

#[tokio::test]
async fn a_bad_statistics_range_names_the_field_and_the_rule() {
    let app = spawn_app_with(|_| {}).await;
    for (variables, field, code) in [
        (json!({"from": "01/12/2026"}), "from", "invalid_date"),
        (
            json!({"from": "2026-12-10", "to": "2026-12-09"}),
            "to",
            "before_from",
        ),
        (
            json!({"from": "2026-01-01", "to": "2026-12-31"}),
            "to",
            "range_too_long",
        ),
    ] {
        let (status, body) = app.graphql(STATISTICS, variables.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(gql_code(&body), "VALIDATION_FAILED", "{variables}: {body}");
        let detail = &body["errors"][0]["extensions"]["details"][0];
        assert_eq!(detail["field"], field, "{body}");
        assert_eq!(detail["code"], code, "{body}");
    }
}
