//! Settings: built-in defaults, then an optional TOML file, then `CR_*`
//! environment variables, then command-line flags (later wins).
use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use anyhow::{Context, bail};
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

mod checks;
mod delivery;
mod sms_providers;

pub use delivery::{
    DeliverySettings, EmailSettings, EmailTransportKind, SmsSettings, SmsTransportKind,
    SmtpSettings, SmtpTls, TwilioSettings, WebhookSettings,
};
pub use sms_providers::{DEFAULT_PROVIDER, SmsProviderSettings};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server binds to.
    pub listen: SocketAddr,
    /// SeaORM URL: `sqlite://...`, `postgres://...` or `mysql://...`.
    /// Empty means the embedded SQLite file `<data_dir>/registration.db`.
    pub database_url: String,
    /// On a MariaDB Galera cluster (detected per connection), every read
    /// waits for what other nodes committed before it (`wsrep_sync_wait =
    /// 1`), so no rule decides on a stale read. No effect elsewhere.
    pub galera_sync_wait: bool,
    /// Where SQLite, generated secrets and the development outbox live.
    pub data_dir: PathBuf,
    /// Base URL the completion links in emails point to. Empty: the
    /// address the service listens on (`http://127.0.0.1:<port>` when it
    /// listens on every interface); behind a proxy, set it.
    pub public_base_url: String,
    pub secrets: SecretSettings,
    pub registration: RegistrationSettings,
    pub auth: AuthSettings,
    pub graphql: GraphqlSettings,
    pub limits: LimitSettings,
    pub delivery: DeliverySettings,
    pub quotas: QuotaSettings,
    pub retention: RetentionSettings,
    pub webhooks: WebhookDeliverySettings,
}

/// Signed webhooks to hosts (`host webhook NAME --url URL`). They go through
/// the outbox: `delivery.max_attempts` and its backoff apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookDeliverySettings {
    /// How long one POST to a host's endpoint may take, connecting included;
    /// beyond it the attempt counts as a transient failure.
    pub timeout_seconds: u64,
}

impl Default for WebhookDeliverySettings {
    fn default() -> Self {
        Self {
            timeout_seconds: 10,
        }
    }
}

/// Keys for keyed hashes, the same on every instance. Required with
/// PostgreSQL and MySQL (`customer-registration secrets generate` makes
/// them); with SQLite, unset ones are generated once into
/// `<data_dir>/secrets.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretSettings {
    /// Keys the stored hashes of SMS codes.
    #[serde(skip_serializing)]
    pub token_key: Option<SecretString>,
    /// Earlier token keys: codes issued under them still verify until they
    /// expire. Drop them once `registration.token_expiry_minutes` passed.
    #[serde(skip_serializing)]
    pub previous_token_keys: Vec<SecretString>,
    /// Peppers new password hashes.
    #[serde(skip_serializing)]
    pub password_pepper: Option<SecretString>,
    /// Stored in every new password hash, naming the pepper it used.
    pub password_pepper_id: u8,
    /// Earlier peppers by id, for the hashes made with them; never drop one
    /// while such hashes exist.
    #[serde(skip_serializing)]
    pub retired_password_peppers: BTreeMap<String, SecretString>,
}

impl Default for SecretSettings {
    fn default() -> Self {
        Self {
            token_key: None,
            previous_token_keys: Vec::new(),
            password_pepper: None,
            password_pepper_id: 1,
            retired_password_peppers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationSettings {
    /// Secret digits after the 3-letter prefix: 6 to 8 (at least 20 bits,
    /// NIST SP 800-63B), or 4 and 5 with `legacy_short_codes`.
    pub token_digits: u8,
    /// Allows 4- or 5-digit codes for clients that cannot take 6; the
    /// service warns at start while it is on.
    pub legacy_short_codes: bool,
    pub token_expiry_minutes: u32,
    /// Wrong codes one registration tolerates before it locks.
    pub max_wrong_codes: u32,
    /// Consecutive wrong codes for one phone at one host, across its
    /// registrations, before the number is refused to that host for
    /// `phone_lock_minutes`.
    pub phone_lock_threshold: u32,
    pub phone_lock_minutes: u32,
    pub resend_cooldown_seconds: u32,
    /// How soon one host may register the same phone again.
    pub register_cooldown_seconds: u32,
    /// Sends per channel per registration, the first one included.
    pub max_sends: u32,
    /// Region for phone numbers written without a country code, where the
    /// request does not carry a `countryId`.
    pub default_region: String,
    pub completion_link_expiry_hours: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub access_token_ttl_seconds: u32,
    /// How long this instance trusts a token it found valid without asking
    /// the database again: a revocation or a disabled host made through
    /// another instance or the CLI takes effect here within this time
    /// (through this instance, at once). 0: every request asks.
    pub token_cache_seconds: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphqlSettings {
    /// Whether the schema can be read (`__schema`, `__type`); such reads
    /// need no token.
    pub introspection: bool,
    /// Nesting of fields in an operation; schema reads are exempt.
    pub max_depth: usize,
    pub max_complexity: usize,
    /// Fields in an operation, every fragment expanded.
    pub max_fields: usize,
    /// Aliased fields in an operation: aliases multiply lookups.
    pub max_aliases: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    pub max_body_bytes: usize,
    /// Password hashes computed at once (each takes ~19 MiB and a core).
    pub max_concurrent_hashes: usize,
    /// Requests allowed to wait for a hashing slot; beyond it: 503.
    pub max_queued_hashes: usize,
    /// After SIGTERM or SIGINT: how long in-flight requests and the send in
    /// progress may take before the process exits anyway.
    pub shutdown_grace_seconds: u64,
}

/// A cap on sends or requests within a fixed window, counted in the
/// database so it holds across instances; `limit = 0` switches it off.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub limit: u32,
    pub window_minutes: u32,
}

/// How long personal data and housekeeping rows are kept. One instance at a
/// time applies these, every `interval_minutes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Registrations never confirmed (pending or replaced) are deleted, with
    /// their codes, links and messages, this many days after they began.
    pub unconfirmed_registration_days: u32,
    /// Delivery attempts (the timeline) are deleted after this many days.
    pub delivery_attempt_days: u32,
    /// Dead messages keep their text for an operator's retry this long.
    pub dead_message_body_days: u32,
    pub interval_minutes: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            unconfirmed_registration_days: 30,
            delivery_attempt_days: 90,
            dead_message_body_days: 7,
            interval_minutes: 60,
        }
    }
}

/// Against SMS pumping, mail floods and enumeration: caps per recipient,
/// per host and recipient, per host and overall on sends, and per host on
/// registers and availability checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaSettings {
    /// Countries (ISO alpha-2) whose phone numbers may receive SMS.
    pub allowed_countries: Vec<String>,
    pub sms_per_phone: Quota,
    /// One host's share of a phone's SMS, so no host can use up the
    /// number for the others.
    pub sms_per_host_phone: Quota,
    pub sms_per_host: Quota,
    pub sms_global: Quota,
    pub email_per_address: Quota,
    pub email_per_host_address: Quota,
    pub email_per_host: Quota,
    pub email_global: Quota,
    /// `register` requests per host, whatever their outcome.
    pub register_per_host: Quota,
    /// `verifyUsername` and `verifyEmail` checks per host (each aliased
    /// GraphQL field counts), against enumeration of customers.
    pub verify_per_host: Quota,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: String::new(),
            galera_sync_wait: true,
            data_dir: PathBuf::from("data"),
            public_base_url: String::new(),
            secrets: SecretSettings::default(),
            registration: RegistrationSettings::default(),
            auth: AuthSettings::default(),
            graphql: GraphqlSettings::default(),
            limits: LimitSettings::default(),
            delivery: DeliverySettings::default(),
            quotas: QuotaSettings::default(),
            retention: RetentionSettings::default(),
            webhooks: WebhookDeliverySettings::default(),
        }
    }
}

impl Default for RegistrationSettings {
    fn default() -> Self {
        Self {
            token_digits: 6,
            legacy_short_codes: false,
            token_expiry_minutes: 10,
            max_wrong_codes: 5,
            phone_lock_threshold: 100,
            phone_lock_minutes: 60,
            resend_cooldown_seconds: 60,
            register_cooldown_seconds: 60,
            max_sends: 5,
            default_region: "ID".into(),
            completion_link_expiry_hours: 24,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            access_token_ttl_seconds: 3600,
            token_cache_seconds: 5,
        }
    }
}

impl Default for GraphqlSettings {
    fn default() -> Self {
        Self {
            introspection: true,
            max_depth: 12,
            max_complexity: 500,
            max_fields: 300,
            max_aliases: 10,
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            max_body_bytes: 16 * 1024,
            max_concurrent_hashes: cores,
            max_queued_hashes: 64,
            shutdown_grace_seconds: 20,
        }
    }
}

impl Default for QuotaSettings {
    fn default() -> Self {
        let hourly = |limit| Quota {
            limit,
            window_minutes: 60,
        };
        let per_minute = |limit| Quota {
            limit,
            window_minutes: 1,
        };
        Self {
            allowed_countries: vec!["ID".into()],
            sms_per_phone: hourly(10),
            sms_per_host_phone: hourly(5),
            sms_per_host: hourly(1_000),
            sms_global: hourly(10_000),
            email_per_address: hourly(10),
            email_per_host_address: hourly(5),
            email_per_host: hourly(1_000),
            email_global: hourly(10_000),
            register_per_host: per_minute(120),
            verify_per_host: per_minute(600),
        }
    }
}

impl Settings {
    /// Loads defaults, the TOML file (if given or if `customer-registration.toml`
    /// exists) and the `CR_` environment (nested keys use `__`).
    pub fn load(config_file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match config_file {
            Some(path) => {
                if !path.exists() {
                    bail!("config file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("customer-registration.toml")),
        }
        // CR_CONFIG and CR_LOG_FORMAT configure the loading and the logs,
        // not the settings themselves.
        let settings: Settings = figment
            .merge(
                Env::prefixed("CR_")
                    .ignore(&["config", "log_format"])
                    .split("__"),
            )
            .extract()
            .context("Failed to read configuration")?;
        Ok(settings)
    }

    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("registration.db").display()
            )
        } else {
            self.database_url.clone()
        }
    }

    /// The configured base URL, else the listen address.
    pub fn public_base_url(&self) -> String {
        if !self.public_base_url.is_empty() {
            return self.public_base_url.trim_end_matches('/').to_owned();
        }
        let mut address = self.listen;
        if address.ip().is_unspecified() {
            address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{address}")
    }

    /// The effective settings as TOML, each secret that is set shown as
    /// `[redacted]` and never its value.
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        let mut value = toml::Value::try_from(self).context("Failed to render settings")?;
        let redacted = || toml::Value::String("[redacted]".into());
        let set = |secret: &Option<SecretString>| secret.is_some();
        let mut mark = |path: &[&str], present: bool| {
            if !present {
                return;
            }
            let (last, parents) = path.split_last().unwrap_or((&"", &[]));
            let mut table = value.as_table_mut();
            for key in parents {
                table = table.and_then(|t| {
                    t.entry(*key)
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                        .as_table_mut()
                });
            }
            if let Some(table) = table {
                table.insert((*last).to_owned(), redacted());
            }
        };
        mark(&["secrets", "token_key"], set(&self.secrets.token_key));
        mark(
            &["secrets", "password_pepper"],
            set(&self.secrets.password_pepper),
        );
        mark(
            &["delivery", "email", "smtp", "password"],
            set(&self.delivery.email.smtp.password),
        );
        mark(
            &["delivery", "sms", "twilio", "auth_token"],
            set(&self.delivery.sms.twilio.auth_token),
        );
        if !self.secrets.previous_token_keys.is_empty() {
            mark(&["secrets", "previous_token_keys"], true);
        }
        for id in self.secrets.retired_password_peppers.keys() {
            mark(&["secrets", "retired_password_peppers", id], true);
        }
        for name in self.delivery.sms.webhook.headers.keys() {
            mark(&["delivery", "sms", "webhook", "headers", name], true);
        }
        toml::to_string_pretty(&value).context("Failed to render settings")
    }

    pub fn outbox_dir(&self) -> PathBuf {
        if self.delivery.outbox_dir.as_os_str().is_empty() {
            self.data_dir.join("outbox")
        } else {
            self.delivery.outbox_dir.clone()
        }
    }
}

/// Whether a host name or address is on the loopback interface.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
