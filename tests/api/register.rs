use chrono::Duration;
use entity::states::RegistrationStatus;
use entity::{account_group, outbox_message, registration, sms_token};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{
    PHONE, assert_error, migrate_down_through, query_plan, register_body, spawn_app, spawn_app_with,
};

#[tokio::test]
async fn register_returns_the_documented_fields_and_sends_sms_and_email() {
    let app = spawn_app().await;
    let mut body = register_body("081234567890");
    body["email"] = json!(" Septian@Example.COM ");
    let ticket = app.register(&body).await;

    assert_eq!(ticket["username"], PHONE);
    assert_eq!(ticket["phone"], PHONE);
    assert_eq!(ticket["tokenType"], "SMS");
    assert_eq!(ticket["attempt"], 1);
    assert_eq!(ticket["active"], true);
    assert_eq!(ticket["expiryMinutes"], 10);
    assert_eq!(ticket["accountGroupId"], "01");
    // The legacy spec's misspelling, which existing clients parse.
    assert_eq!(ticket["accountGroipId"], "01");
    assert_eq!(ticket["attemptsRemaining"], 5);
    assert_eq!(ticket["smsResendsRemaining"], 4);
    let prefix = ticket["tokenPrefix"].as_str().unwrap();
    assert_eq!(prefix.len(), 3);
    assert!(
        prefix
            .chars()
            .all(|c| c.is_ascii_uppercase() && !"ILO".contains(c))
    );
    let requested =
        chrono::DateTime::parse_from_rfc3339(ticket["requestTimestamp"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(ticket["expiryTimestamp"].as_str().unwrap()).unwrap();
    assert_eq!((expires - requested).num_minutes(), 10);
    assert!(ticket["nextResendAt"].is_string());

    let token = app.sms_token(PHONE, 1).await;
    assert!(token.starts_with(prefix));
    assert_eq!(token.len(), 3 + 6);

    let emails = app.emails(1).await;
    assert_eq!(emails[0].recipient, "septian@example.com");
    // Unset, public_base_url follows the address actually listened on.
    let link_base = format!("{}/complete/", app.address);
    assert!(emails[0].text.contains(&link_base), "{:?}", emails[0]);
    // The HTML part escapes the link's slashes as `&#x2f;`.
    assert!(emails[0].html.as_ref().unwrap().contains("complete&#x2f;"));

    // Only keyed hashes of the token are stored.
    let stored = sms_token::Entity::find().all(&app.core.db).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].code_hash, token);
    assert!(!stored[0].code_hash.contains(&token[3..]));
}

#[tokio::test]
async fn register_reports_every_invalid_field_at_once() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/b2b/customer/register",
            &json!({
                "phone": 81234567890u64,
                "name": "",
                "birthDate": "31-12-1990",
                "email": "not-an-email",
                "gender": "yes",
                "countryId": "IDN",
                "sourceId": 1011,
                "accountGroupId": "99"
            }),
        )
        .await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    let fields = refused_fields(&body);
    let expected = [
        ("accountGroupId", "unknown_account_group"),
        ("birthDate", "invalid_date"),
        ("birthPlace", "required"),
        ("countryId", "invalid_country"),
        ("email", "invalid_email"),
        ("gender", "invalid_type"),
        ("name", "required"),
        ("phone", "invalid_type"),
        ("sourceId", "invalid_type"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(f, c)| (f.to_string(), c.to_string()))
        .collect();
    assert_eq!(fields, expected);
    assert!(
        registration::Entity::find()
            .all(&app.core.db)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn register_checks_phone_date_and_country_rules() {
    let app = spawn_app().await;
    let cases = [
        ("phone", json!("0812"), "invalid_phone"),
        ("phone", json!("+1 555 0100"), "invalid_phone"),
        ("birthDate", json!("2999-01-01"), "not_in_past"),
        ("birthDate", json!("1990-02-30"), "invalid_date"),
        ("countryId", json!("XX"), "invalid_country"),
        ("name", json!("x".repeat(101)), "too_long"),
        ("accountGroupId", json!("no spaces"), "invalid_identifier"),
    ];
    for (field, value, code) in cases {
        let mut body = register_body(PHONE);
        body[field] = value;
        let response = app.post("/b2b/customer/register", &body).await;
        let error = assert_error(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
        assert_eq!(error["details"][0]["field"], field, "{error}");
        assert_eq!(error["details"][0]["code"], code, "{error}");
    }
    // A number with an extension: the message names the rule.
    let mut body = register_body(PHONE);
    body["phone"] = json!("0812 3456 7890 ext. 12");
    let response = app.post("/b2b/customer/register", &body).await;
    let error = assert_error(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    let detail = &error["details"][0];
    assert_eq!(
        (&detail["field"], &detail["code"]),
        (&json!("phone"), &json!("invalid_phone"))
    );
    let message = detail["message"].as_str().unwrap_or_default();
    assert!(message.contains("has an extension"), "{error}");
}

#[tokio::test]
async fn the_legacy_sample_body_is_rejected_as_malformed_json() {
    let app = spawn_app().await;
    let sample = r#"{
    "phone":081234567890,
    "name": “Septian Cahyo”,
    "birthDate":1990-12-31,
    "countryId":”ID”,
    "accountGroupId":01
}"#;
    let response = app
        .client
        .post(format!("{}/b2b/customer/register", app.address))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(sample)
        .send()
        .await
        .unwrap();
    let body = assert_error(response, StatusCode::BAD_REQUEST, "MALFORMED_JSON").await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("line 2"), "{body}");
    assert!(
        message.contains("send phone numbers and ids as strings"),
        "{body}"
    );

    // Fixing the numbers leaves the typographic quotes, and the answer says so.
    let quotes = "{\"phone\": \"081234567890\", \"name\": \u{201c}Septian\u{201d}}";
    let response = app
        .client
        .post(format!("{}/b2b/customer/register", app.address))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(quotes)
        .send()
        .await
        .unwrap();
    let body = assert_error(response, StatusCode::BAD_REQUEST, "MALFORMED_JSON").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("typographic quotes"),
        "{body}"
    );
}

#[tokio::test]
async fn bodies_of_the_wrong_kind_get_json_errors() {
    let app = spawn_app_with(|s| s.limits.max_body_bytes = 2048).await;
    let url = format!("{}/b2b/customer/register", app.address);
    let as_text = app
        .client
        .post(&url)
        .bearer_auth(&app.token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_error(
        as_text,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;

    let huge = json!({"name": "x".repeat(4096)});
    let too_large = app.post("/b2b/customer/register", &huge).await;
    assert_error(
        too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    )
    .await;

    let array = app.post("/b2b/customer/register", &json!([1, 2])).await;
    let body = assert_error(array, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    assert_eq!(body["details"][0]["field"], "body");

    let unknown = app.get("/b2b/customer/nope").await;
    assert_error(unknown, StatusCode::NOT_FOUND, "ROUTE_NOT_FOUND").await;
    let wrong_method = app.get("/b2b/customer/register").await;
    assert_error(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    )
    .await;
}

#[tokio::test]
async fn a_new_registration_supersedes_the_pending_one() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let first_token = app.sms_token(PHONE, 1).await;
    app.clock.advance(Duration::seconds(61));
    app.register(&register_body(PHONE)).await;
    let second_token = app.sms_token(PHONE, 2).await;

    let stale = app.confirm(PHONE, "secret-pass", &first_token).await;
    assert_error(stale, StatusCode::UNPROCESSABLE_ENTITY, "TOKEN_SUPERSEDED").await;
    let pending = registration::Entity::find()
        .filter(registration::Column::Status.eq(RegistrationStatus::Pending))
        .all(&app.core.db)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].failed_attempts, 0,
        "a stale code spends no attempt"
    );
    assert_eq!(
        app.confirm(PHONE, "secret-pass", &second_token)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn registered_phone_or_email_is_a_conflict() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    assert_eq!(
        app.confirm(PHONE, "secret-pass", &token).await.status(),
        StatusCode::OK
    );

    let mut same_phone = register_body("0812 3456 7890");
    same_phone["email"] = json!("someone.else@example.com");
    let again = app.post("/b2b/customer/register", &same_phone).await;
    assert_error(again, StatusCode::CONFLICT, "USERNAME_TAKEN").await;

    let mut same_email = register_body("+6281298765432");
    same_email["email"] = register_body(PHONE)["email"].clone();
    let response = app.post("/b2b/customer/register", &same_email).await;
    assert_error(response, StatusCode::CONFLICT, "EMAIL_TAKEN").await;
}

#[tokio::test]
async fn token_digits_and_expiry_are_configurable() {
    let app = spawn_app_with(|s| {
        s.registration.token_digits = 4;
        s.registration.legacy_short_codes = true;
        s.registration.token_expiry_minutes = 3;
    })
    .await;
    let mut body = register_body(PHONE);
    body.as_object_mut().unwrap().remove("email");
    let ticket = app.register(&body).await;
    assert_eq!(ticket["expiryMinutes"], 3);
    assert_eq!(ticket["emailResendsRemaining"], 0);
    let token = app.sms_token(PHONE, 1).await;
    assert_eq!(token.len(), 7, "like the spec's UhY1234");
    // No email: nothing but the SMS is queued.
    let queued = outbox_message::Entity::find()
        .all(&app.core.db)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
}

#[tokio::test]
async fn account_groups_added_later_are_accepted() {
    let app = spawn_app().await;
    let mut body = register_body(PHONE);
    body["accountGroupId"] = Value::from("VIP");
    let refused = app.post("/b2b/customer/register", &body).await;
    assert_error(refused, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    customer_registration::service::account_groups::add_group(&app.core, "VIP", "Very important")
        .await
        .unwrap();
    let ticket = app.register(&body).await;
    assert_eq!(ticket["accountGroupId"], "VIP");
    assert_eq!(ticket["accountGroipId"], "VIP");
}

/// The fields a validation refusal names, with their codes, sorted.
fn refused_fields(body: &Value) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["field"].as_str().unwrap().into(),
                d["code"].as_str().unwrap().into(),
            )
        })
        .collect();
    fields.sort();
    fields
}

/// A group once found is trusted from memory (groups are only ever added):
/// the next check does not read it again.
#[tokio::test]
async fn an_account_group_once_found_is_not_looked_up_again() {
    use customer_registration::{domain::AccountGroupId, service::account_groups};
    let app = spawn_app().await;
    let group = AccountGroupId::parse("KEPT").unwrap();
    assert!(!account_groups::exists(&app.core, &group).await.unwrap());
    account_groups::add_group(&app.core, "KEPT", "Kept")
        .await
        .unwrap();
    // Not found before, found now: a miss is never remembered.
    assert!(account_groups::exists(&app.core, &group).await.unwrap());
    account_group::Entity::delete_by_id("KEPT")
        .exec(&app.core.db)
        .await
        .unwrap();
    assert!(
        account_groups::exists(&app.core, &group).await.unwrap(),
        "answered from memory, without reading the table"
    );
    assert!(
        !account_groups::exists(&app.core.another_instance(), &group)
            .await
            .unwrap(),
        "an instance that never found it reads the table"
    );
}

/// Should a group the service found be deleted by hand in the database, a
/// register naming it is refused by the registration's foreign key: with
/// the same field error as any unknown group, never as a server failure.
#[tokio::test]
async fn an_account_group_deleted_by_hand_is_refused_as_unknown() {
    use customer_registration::service::account_groups;
    let app = spawn_app().await;
    account_groups::add_group(&app.core, "GONE", "Deleted by hand")
        .await
        .unwrap();
    // Found, and so remembered, by a register refused for its name.
    let mut body = register_body(PHONE);
    body["accountGroupId"] = Value::from("GONE");
    body["name"] = Value::from("");
    let refused = app.post("/b2b/customer/register", &body).await;
    let refused = assert_error(refused, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    assert_eq!(
        refused_fields(&refused),
        [("name".into(), "required".into())]
    );
    account_group::Entity::delete_by_id("GONE")
        .exec(&app.core.db)
        .await
        .unwrap();
    body["name"] = Value::from("Septian Cahyo");
    // Trusted from memory, refused by the key; then forgotten and read.
    for _ in 0..2 {
        let refused = app.post("/b2b/customer/register", &body).await;
        let refused = assert_error(refused, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
        assert_eq!(
            refused_fields(&refused),
            [("accountGroupId".into(), "unknown_account_group".into())]
        );
    }
    assert!(
        registration::Entity::find()
            .all(&app.core.db)
            .await
            .unwrap()
            .is_empty()
    );
    // The registrations of other groups go on being written.
    app.register(&register_body(PHONE)).await;
}

/// The database keeps one pending registration per host and phone
/// (`idx_registration_one_pending`), which is what settles registers of
/// one phone racing on different instances. Its migration supersedes the
/// older of pending duplicates written before it. MySQL has no partial
/// index: there the key is on a stored column, the phone while pending
/// (m20261206_000002), and migrating down through m20261202_000002 undoes
/// that one too.
#[tokio::test]
async fn one_pending_registration_per_phone_is_a_key_and_its_migration_settles_duplicates() {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let db = &app.core.db;
    let first = registration::Entity::find().one(db).await.unwrap().unwrap();
    let duplicate = |created: chrono::DateTime<chrono::Utc>| {
        let mut row = first.clone().into_active_model();
        row.id = Set(uuid::Uuid::now_v7());
        row.created_at = Set(created);
        row.reset_all()
    };

    let refused = duplicate(first.created_at + Duration::seconds(1))
        .insert(db)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused.sql_err(),
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
        ),
        "{refused}"
    );

    // Written before the key: two newer duplicates, then the migration
    // (down to before the key's migration, the later ones undone too).
    migrate_down_through(db, "m20261202_000002_one_pending_registration_per_phone").await;
    let newest = duplicate(first.created_at + Duration::seconds(2))
        .insert(db)
        .await
        .unwrap();
    duplicate(first.created_at + Duration::seconds(1))
        .insert(db)
        .await
        .unwrap();
    Migrator::up(db, None).await.unwrap();
    let pending: Vec<uuid::Uuid> = registration::Entity::find()
        .filter(registration::Column::Status.eq(RegistrationStatus::Pending))
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(pending, vec![newest.id], "only the newest stays pending");
    let superseded = registration::Entity::find()
        .filter(registration::Column::Status.eq(RegistrationStatus::Superseded))
        .all(db)
        .await
        .unwrap();
    assert_eq!(superseded.len(), 2);
}

/// A host's registrations are only ever searched by (host, phone): every
/// index of the table but its key leads with the two, and the register
/// check's "last registration of this phone" is a search of both. While an
/// index on (host, created) existed, PostgreSQL planned that lookup, and
/// the superseding update, as a walk of the host's registrations filtered
/// for the phone whenever its statistics made the two indexes cost the
/// same (docs/PERFORMANCE.md, session 25).
#[tokio::test]
async fn a_hosts_registrations_are_searched_by_phone() {
    use customer_registration::{domain::PhoneNumber, service::registration::checks};
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let app = spawn_app().await;
    let db = &app.core.db;
    let backend = db.get_database_backend();
    let indexes = match backend {
        DbBackend::Postgres => {
            "SELECT indexdef AS definition FROM pg_indexes \
             WHERE tablename = 'registration' AND indexname <> 'registration_pkey'"
        }
        // The key is SQLite's own, without a definition.
        DbBackend::Sqlite => {
            "SELECT sql AS definition FROM sqlite_master \
             WHERE type = 'index' AND tbl_name = 'registration' AND sql IS NOT NULL"
        }
        // MySQL: the same migrations, and no partial index to compare.
        _ => return,
    };
    let definitions: Vec<String> = db
        .query_all_raw(Statement::from_string(backend, indexes))
        .await
        .unwrap()
        .iter()
        .map(|row| {
            row.try_get::<String>("", "definition")
                .unwrap()
                .replace('"', "")
        })
        .collect();
    let columns = |definition: &str| -> String {
        let on = definition.find(" ON ").unwrap();
        let open = on + definition[on..].find('(').unwrap();
        let close = open + definition[open..].find(')').unwrap();
        definition[open + 1..close].replace(' ', "")
    };
    assert!(!definitions.is_empty());
    assert!(
        definitions
            .iter()
            .all(|definition| columns(definition).starts_with("host_id,phone")),
        "{definitions:#?}"
    );

    app.register(&register_body(PHONE)).await;
    let phones = [
        PhoneNumber::parse("+6281299999999", "ID").unwrap(),
        PhoneNumber::parse("+6281299999998", "ID").unwrap(),
    ];
    let host_id = app.host_id().await;
    let applicants: Vec<checks::Applicant<'_>> = phones
        .iter()
        .map(|phone| checks::Applicant {
            host_id,
            phone,
            email: None,
        })
        .collect();
    let checks = checks::register_checks_query(&applicants);
    let plan = query_plan(db, backend.build(&checks)).await;
    let lines: Vec<&str> = plan.lines().collect();
    let search = lines
        .iter()
        .position(|line| line.contains(" registration"))
        .unwrap_or_else(|| panic!("no read of registration in\n{plan}"));
    // PostgreSQL puts the index's condition on the next line, SQLite on the same.
    let condition = lines[search..=(search + 1).min(lines.len() - 1)].join(" ");
    assert!(
        condition.contains("idx_registration_host_phone_created")
            && (condition.contains("phone = ") || condition.contains("phone=?")),
        "{plan}"
    );
}

/// PostgreSQL searches the registrations a batch supersedes, and those
/// whose last register it reads, by (host, phone) even for a host its
/// statistics have not seen. Written as `host_id = $ AND phone IN (...)`,
/// both statements were planned for such a host as a search of the host
/// alone, filtering every registration it had for the phones, inside the
/// batch's transaction (docs/PERFORMANCE.md, session 25).
#[tokio::test]
async fn a_batch_searches_its_phones_for_a_host_the_statistics_have_not_seen() {
    use customer_registration::{domain::PhoneNumber, service::registration as batch};
    use sea_orm::{ConnectionTrait, DbBackend};
    let app = spawn_app().await;
    let db = &app.core.db;
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    // Pending registrations of `host` with 2,000 more phones.
    let copy_pending = |host: uuid::Uuid, prefix: &'static str| async move {
        db.execute_unprepared(&format!(
            "INSERT INTO registration SELECT (jsonb_populate_record(NULL::registration, \
             to_jsonb(r) || jsonb_build_object('id', gen_random_uuid(), \
             'phone', '{prefix}' || (1000000 + n), 'status', 'pending'))).* \
             FROM registration r, generate_series(1, 2000) n \
             WHERE r.host_id = '{host}' LIMIT 2000"
        ))
        .await
        .unwrap();
    };
    app.register(&register_body(PHONE)).await;
    copy_pending(app.host_id().await, "+628121").await;
    db.execute_unprepared("ANALYZE registration").await.unwrap();
    // A host that began registering after the statistics were taken.
    let token = app.new_host_token("newcomer").await;
    let registered = app
        .post_as(
            &token,
            "/b2b/customer/register",
            &register_body("081299990000"),
        )
        .await;
    assert_eq!(registered.status(), StatusCode::OK);
    let newcomer = entity::host::Entity::find()
        .filter(entity::host::Column::Name.eq("newcomer"))
        .one(db)
        .await
        .unwrap()
        .unwrap()
        .id;
    copy_pending(newcomer, "+628122").await;

    let phones = [
        PhoneNumber::parse("+6281299990001", "ID").unwrap(),
        PhoneNumber::parse("+6281299990002", "ID").unwrap(),
    ];
    let targets: Vec<(uuid::Uuid, &PhoneNumber)> =
        phones.iter().map(|phone| (newcomer, phone)).collect();
    let backend = DbBackend::Postgres;
    for plan in [
        query_plan(
            db,
            backend.build(&batch::supersede_pending_query(backend, &targets)),
        )
        .await,
        query_plan(
            db,
            backend.build(&batch::last_registered_query(backend, &targets)),
        )
        .await,
    ] {
        let reads: Vec<&str> = plan
            .lines()
            .filter(|line| line.contains("Index Cond") || line.contains("Seq Scan on registration"))
            .collect();
        assert!(!reads.is_empty(), "{plan}");
        assert!(
            reads
                .iter()
                .all(|line| line.contains("Index Cond") && line.contains("phone")),
            "{plan}"
        );
    }
}
