//! End-to-end tests in real headless Chromium, driven over WebDriver
//! (chromedriver). They need the Debian packages `chromium` and
//! `chromium-driver`, so a plain `cargo test` reports them as ignored;
//! `.ci/run` installs both and runs them with `--include-ignored`.
use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use customer_registration::{domain::Md5PasswordHex, service::hosts};
use entity::customer;
use fantoccini::{Client, ClientBuilder, Locator, wd::WebDriverCompatibleCommand};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::{
    confirm::wrong,
    helpers::{PHONE, TestApp, eventually, md5_upper, register_body, spawn_app},
};

const NEEDS_CHROMIUM: &str = "needs Chromium and chromedriver (apt-get install chromium chromium-driver); run: cargo test --test api -- --include-ignored";

struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (apt-get install chromium-driver)");
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": {"performance": "ALL"},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--no-first-run",
                    "--disable-sync", "--disable-quic", "--disable-extensions", "--disable-default-apps",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let capabilities: serde_json::Map<String, Value> =
            capabilities.as_object().unwrap().clone();
        // chromedriver takes a moment to listen.
        let client = eventually("a WebDriver session", || async {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
                .ok()
        })
        .await;
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    async fn resize(&self, phone: bool) {
        let (width, height) = if phone { (390, 844) } else { (1280, 900) };
        self.client.set_window_size(width, height).await.unwrap();
    }

    /// Saves the page at phone and at desktop width, then returns to phone width.
    async fn screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        for (phone, width) in [(false, "desktop"), (true, "phone")] {
            self.resize(phone).await;
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}-{width}.png")), png).unwrap();
        }
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn value(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    async fn fill(&self, css: &str, text: &str) {
        let element = self.client.find(Locator::Css(css)).await.unwrap();
        element.clear().await.unwrap();
        element.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Clicks a submit button and waits until the next page has replaced
    /// this one (WebDriver does not wait for a form's navigation).
    async fn submit(&self, css: &str) {
        let old_page = self.client.find(Locator::Css("html")).await.unwrap();
        self.click(css).await;
        eventually(format!("submitting {css} to load a new page"), || async {
            old_page.tag_name().await.is_err().then_some(())
        })
        .await;
        self.client
            .wait()
            .for_element(Locator::Css("h1"))
            .await
            .unwrap();
    }

    /// Every URL the browser requested so far, from Chrome's performance log.
    async fn requested_urls(&self) -> Vec<String> {
        let entries = self.client.issue_cmd(PerformanceLog).await.unwrap();
        entries
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|entry| serde_json::from_str::<Value>(entry["message"].as_str()?).ok())
            .filter(|m| m["message"]["method"] == "Network.requestWillBeSent")
            .filter_map(|m| {
                m["message"]["params"]["request"]["url"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }
}

/// chromedriver's log endpoint, which fantoccini does not wrap.
#[derive(Debug)]
struct PerformanceLog;

impl WebDriverCompatibleCommand for PerformanceLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "performance"}).to_string()),
        )
    }
}

fn assert_all_local(urls: &[String], app: &TestApp) {
    assert!(!urls.is_empty(), "the performance log recorded requests");
    // Only network schemes can leave the machine; chrome:// and data: cannot.
    let network = urls.iter().filter(|u| {
        ["http:", "https:", "ws:", "wss:"]
            .iter()
            .any(|s| u.starts_with(s))
    });
    let mut count = 0;
    for url in network {
        count += 1;
        assert!(
            url.starts_with(&app.address),
            "a request left 127.0.0.1: {url}"
        );
    }
    assert!(count > 0, "the page made network requests: {urls:?}");
}

/// The completion link from the delivered registration email.
async fn completion_link(app: &TestApp) -> String {
    format!("{}{}", app.address, app.completion_link_path().await)
}

#[tokio::test]
#[ignore = "needs Chromium and chromedriver (apt-get install chromium chromium-driver); run: cargo test --test api -- --include-ignored"]
async fn customer_completes_registration_in_the_browser() {
    let _ = NEEDS_CHROMIUM;
    let app = spawn_app().await;
    let ticket = app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    let link = completion_link(&app).await;
    let browser = Browser::start().await;
    browser.resize(true).await;
    browser.client.goto(&link).await.unwrap();

    // Indonesia: the page speaks Bahasa Indonesia, like the email.
    assert_eq!(browser.text("h1").await, "Selesaikan pendaftaran Anda");
    let intro = browser.text("main > p").await;
    assert!(intro.contains("+62 812-****-7890"), "{intro}");
    assert_eq!(
        browser.text(".prefix").await,
        ticket["tokenPrefix"].as_str().unwrap()
    );
    assert_eq!(
        browser
            .client
            .find(Locator::Css("label[for=code]"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "Kode SMS"
    );
    browser.screenshot("completion-form").await;

    // A wrong code: an inline error next to the code, attempts left, no password echoed.
    browser.fill("#code", &wrong(&token)[3..]).await;
    browser.fill("#password", "Kopi-Tubruk-42!").await;
    browser
        .fill("#passwordConfirmation", "Kopi-Tubruk-42!")
        .await;
    browser.submit("#submit").await;
    let error = browser.text("#code-error").await;
    assert_eq!(error, "Kode salah. Sisa percobaan: 4.");
    assert_eq!(
        browser
            .client
            .find(Locator::Css("#code"))
            .await
            .unwrap()
            .attr("aria-invalid")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    assert!(
        browser
            .text("#error-summary")
            .await
            .contains("Sisa percobaan: 4")
    );
    assert_eq!(browser.value("#password").await, "");
    assert!(
        !browser
            .client
            .source()
            .await
            .unwrap()
            .contains("Kopi-Tubruk")
    );
    browser.screenshot("completion-wrong-code").await;

    // A weak password is refused server-side, next to its field.
    browser.fill("#code", &token[3..]).await;
    browser.fill("#password", "password1").await;
    browser.fill("#passwordConfirmation", "password1").await;
    browser.submit("#submit").await;
    assert!(
        browser
            .text("#password-error")
            .await
            .contains("terlalu umum")
    );

    // The right code and a good password, at desktop width.
    browser.resize(false).await;
    browser.fill("#code", &token[3..]).await;
    browser.fill("#password", "Kopi-Tubruk-42!").await;
    browser
        .fill("#passwordConfirmation", "Kopi-Tubruk-42!")
        .await;
    browser.submit("#submit").await;
    assert_eq!(browser.text("h1").await, "Pendaftaran selesai");
    browser.screenshot("completion-success").await;

    // The API sees the customer; the stored hash verifies the password's MD5.
    let (_, body) = app
        .graphql(
            "{ verifyUsername(username: \"081234567890\") { exists } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["verifyUsername"]["exists"], true);
    let customer = customer::Entity::find()
        .one(&app.core.db)
        .await
        .unwrap()
        .unwrap();
    assert!(
        customer.email_verified,
        "completing through the email link verifies the email"
    );
    let md5 = Md5PasswordHex::parse(&md5_upper("Kopi-Tubruk-42!")).unwrap();
    assert!(
        app.core
            .hashing
            .verify(&md5, customer.password_hash)
            .await
            .unwrap()
    );

    // Opening the link again says the registration is complete.
    browser.client.goto(&link).await.unwrap();
    assert!(browser.text("#message").await.contains("sudah selesai"));
    browser.resize(true).await;
    browser.screenshot("completion-already-done").await;

    // An unknown link gets a friendly page.
    browser
        .client
        .goto(&format!("{}/complete/not-a-real-link", app.address))
        .await
        .unwrap();
    assert_eq!(browser.text("h1").await, "This link does not work");
    browser.screenshot("completion-invalid-link").await;

    assert_all_local(&browser.requested_urls().await, &app);
    browser.client.clone().close().await.unwrap();
}

#[tokio::test]
#[ignore = "needs Chromium and chromedriver (apt-get install chromium chromium-driver); run: cargo test --test api -- --include-ignored"]
async fn graphiql_runs_a_query_offline() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    browser.resize(false).await;
    browser
        .client
        .goto(&format!("{}/graphql", app.address))
        .await
        .unwrap();
    browser
        .client
        .wait()
        .for_element(Locator::Css(".graphiql-execute-button"))
        .await
        .expect("GraphiQL rendered from local bundles");
    browser.screenshot("graphiql").await;

    // The schema loads without a token: the docs list the operations.
    browser
        .click("button[aria-label='Show Documentation Explorer']")
        .await;
    eventually("the docs to show the schema", || async {
        let shown = browser
            .client
            .execute(
                "return document.querySelector('.graphiql-doc-explorer')?.innerText ?? ''",
                vec![],
            )
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_owned();
        shown.contains("QueryRoot").then_some(())
    })
    .await;
    browser.screenshot("graphiql-docs").await;
    // Back to the desktop width, docs closed, so the editor is in reach.
    browser.resize(false).await;
    browser
        .click("button[aria-label='Hide Documentation Explorer']")
        .await;

    // A wrong secret is explained; the right one gets a token.
    let credentials = hosts::create_host(&app.core, "graphiql").await.unwrap();
    browser.fill("#client-id", &credentials.client_id).await;
    browser.fill("#client-secret", "wrong").await;
    browser.click("#get-token").await;
    eventually("the refusal to show", || async {
        let status = browser.text("#token-status").await;
        status
            .contains("client authentication failed")
            .then_some(())
    })
    .await;
    browser
        .fill("#client-secret", &credentials.client_secret)
        .await;
    browser.click("#get-token").await;
    eventually("the token to be set", || async {
        let status = browser.text("#token-status").await;
        status.contains("Token set").then_some(())
    })
    .await;
    browser.click(".graphiql-execute-button").await;
    let result = eventually("GraphiQL to show the query result", || async {
        let shown = browser
            .client
            .execute(
                "return document.querySelector('.result-window')?.innerText ?? ''",
                vec![],
            )
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_owned();
        shown.contains("exists").then_some(shown)
    })
    .await;
    assert!(result.contains("\"exists\": false"), "{result}");
    assert!(result.contains("+6281234567890"), "{result}");
    browser.screenshot("graphiql-result").await;

    let urls = browser.requested_urls().await;
    assert!(
        urls.iter()
            .any(|u| u.ends_with("/static/graphiql/graphiql.min.js")),
        "{urls:?}"
    );
    assert_all_local(&urls, &app);
    browser.client.clone().close().await.unwrap();
}
