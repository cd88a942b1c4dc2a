//! The completion page over plain HTTP, as a browser without JavaScript
//! uses it: form posts, the CSRF cookie, security headers, resend, expiry.
use chrono::Duration;
use reqwest::{StatusCode, header};

use crate::{
    confirm::wrong,
    helpers::{PHONE, TestApp, register_body, spawn_app},
};

/// Opens the page like a browser: returns its HTML and the CSRF cookie.
async fn open(app: &TestApp, path: &str) -> (StatusCode, String, Option<String>) {
    let response = app
        .client
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    (status, response.text().await.unwrap(), cookie)
}

fn csrf_field(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    html[start..start + 43].to_owned()
}

/// A page opened in a "browser": its link, CSRF cookie and form token.
struct PageSession {
    path: String,
    cookie: String,
    csrf: String,
}

impl PageSession {
    async fn open(app: &TestApp) -> Self {
        let path = app.completion_link_path().await;
        let (_, html, cookie) = open(app, &path).await;
        Self {
            csrf: csrf_field(&html),
            cookie: cookie.expect("the page sets the CSRF cookie"),
            path,
        }
    }

    async fn submit(
        &self,
        app: &TestApp,
        code: &str,
        password: &str,
        confirmation: &str,
    ) -> (StatusCode, String) {
        let form = [
            ("csrf", self.csrf.as_str()),
            ("code", code),
            ("password", password),
            ("passwordConfirmation", confirmation),
        ];
        post_form(app, &self.path, Some(&self.cookie), &form).await
    }

    async fn resend(&self, app: &TestApp) -> (StatusCode, String) {
        let form = [("csrf", self.csrf.as_str())];
        post_form(
            app,
            &format!("{}/resend", self.path),
            Some(&self.cookie),
            &form,
        )
        .await
    }
}

async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut request = app.client.post(format!("{}{path}", app.address)).form(form);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_page_sends_strict_security_headers() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let path = app.completion_link_path().await;
    let response = app
        .client
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    let headers = response.headers();
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(
        headers[header::REFERRER_POLICY],
        "no-referrer",
        "the link must not leak via Referer"
    );
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let html = response.text().await.unwrap();
    assert!(!html.contains("<script"), "the page needs no JavaScript");
    assert!(html.contains("<label for=\"code\">"));
}

#[tokio::test]
async fn a_post_without_the_csrf_cookie_is_refused_and_spends_nothing() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    let path = app.completion_link_path().await;
    let (_, html, _) = open(&app, &path).await;
    let csrf = csrf_field(&html);
    let form = [
        ("csrf", csrf.as_str()),
        ("code", &token[3..]),
        ("password", "Kopi-Tubruk-42!"),
        ("passwordConfirmation", "Kopi-Tubruk-42!"),
    ];
    let (status, html) = post_form(&app, &path, None, &form).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("Formulir sudah kedaluwarsa"), "{html}");
    let (status, _) = post_form(
        &app,
        &path,
        Some("cr_csrf=forged-value-forged-value-forged-value-00"),
        &form,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let exists = app
        .get("/b2b/customer/auth/verifyUsername?username=081234567890")
        .await
        .text()
        .await
        .unwrap();
    assert!(exists.contains("\"exists\":false"));
}

const GOOD: &str = "Kopi-Tubruk-42!";

#[tokio::test]
async fn the_form_works_without_javascript_and_never_echoes_the_password() {
    let app = spawn_app().await;
    let mut body = register_body(PHONE);
    body["language"] = serde_json::json!("en");
    app.register(&body).await;
    let token = app.sms_token(PHONE, 1).await;
    let page = PageSession::open(&app).await;

    let (status, html) = page.submit(&app, &wrong(&token)[3..], GOOD, "nope").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("The two passwords are not the same."),
        "{html}"
    );
    assert!(!html.contains(GOOD));

    let (status, html) = page.submit(&app, &wrong(&token)[3..], GOOD, GOOD).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("That code is wrong. Attempts left: 4."),
        "{html}"
    );

    // The whole token, prefix included, is accepted too; the 303 leads to
    // the confirmation.
    let (status, html) = page.submit(&app, &token, GOOD, GOOD).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Registration complete"), "{html}");
    let (_, again, _) = open(&app, &page.path).await;
    assert!(again.contains("already complete"), "{again}");
}

#[tokio::test]
async fn the_page_resends_under_the_same_cooldown_and_old_codes_are_stale() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let first = app.sms_token(PHONE, 1).await;
    let page = PageSession::open(&app).await;

    let (status, html) = page.resend(&app).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        html.contains("Anda dapat meminta kode baru dalam 60 detik"),
        "{html}"
    );

    app.clock.advance(Duration::seconds(60));
    let (status, html) = page.resend(&app).await;
    assert_eq!(status, StatusCode::OK);
    let second = app.sms_token(PHONE, 2).await;
    let notice = format!("Kode baru telah dikirim. Kode diawali {}.", &second[..3]);
    assert!(html.contains(&notice), "{html}");

    let (status, html) = page.submit(&app, &first, GOOD, GOOD).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Kode ini berasal dari SMS lama"), "{html}");
}

#[tokio::test]
async fn expired_and_replaced_links_get_friendly_pages() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let path = app.completion_link_path().await;
    app.clock.advance(Duration::hours(25));
    let (status, html, _) = open(&app, &path).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("Tautan ini sudah kedaluwarsa"), "{html}");

    let (status, html, _) = open(&app, "/complete/%3Cscript%3E").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!html.contains("<script>"));
}

#[tokio::test]
async fn locking_by_wrong_codes_shows_a_page_not_a_form() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    for _ in 0..5 {
        app.confirm(PHONE, "pw", &wrong(&token)).await;
    }
    let page = PageSession::open(&app).await;
    let (status, html) = page.submit(&app, &token[3..], GOOD, GOOD).await;
    assert_eq!(status, StatusCode::LOCKED);
    assert!(html.contains("pendaftaran ini dikunci"), "{html}");
}
