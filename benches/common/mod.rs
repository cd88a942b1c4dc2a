//! What the benchmarks share: the service as they run it, and a host's token.
use std::{path::Path, sync::Arc};

use customer_registration::{
    clock::SystemClock, config::Settings, service::hosts, startup::Application, state::Core,
};

/// The service, built (migrated, listening) but not yet running.
pub async fn service(data_dir: &Path) -> Application {
    let mut settings = settings(data_dir);
    every_quota_out_of_reach(&mut settings);
    Application::build(settings, Arc::new(SystemClock))
        .await
        .unwrap()
}

/// A host named `bench` and an access token of its.
pub async fn access_token(core: &Core) -> String {
    let credentials = hosts::create_host(core, "bench").await.unwrap();
    hosts::issue_access_token(core, &credentials.client_id, &credentials.client_secret)
        .await
        .unwrap()
        .access_token
}

/// Settings for a service in `data_dir` on an ephemeral port, on SQLite or
/// on `BENCH_DATABASE_URL`, with fixed keys (PostgreSQL and MySQL need
/// configured ones; any fixed ones do here).
fn settings(data_dir: &Path) -> Settings {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        database_url: std::env::var("BENCH_DATABASE_URL").unwrap_or_default(),
        ..Default::default()
    };
    settings.secrets.token_key = Some("bench-token-key".to_owned().into());
    settings.secrets.password_pepper = Some("bench-password-pepper".to_owned().into());
    settings
}

/// The benchmarks measure the service, not its limits: every quota is
/// still counted, none is reached, and a phone may register again at once.
fn every_quota_out_of_reach(settings: &mut Settings) {
    let quotas = &mut settings.quotas;
    for quota in [
        &mut quotas.sms_per_phone,
        &mut quotas.sms_per_host_phone,
        &mut quotas.sms_per_host,
        &mut quotas.sms_global,
        &mut quotas.email_per_address,
        &mut quotas.email_per_host_address,
        &mut quotas.email_per_host,
        &mut quotas.email_global,
        &mut quotas.register_per_host,
        &mut quotas.verify_per_host,
    ] {
        quota.limit = 1_000_000_000;
    }
    settings.registration.register_cooldown_seconds = 0;
}
