//! Command line: `serve` (the default), host and account-group management,
//! and the API's descriptions (`schema`, `openapi`).
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use entity::states::OutboxStatus;
use secrecy::ExposeSecret;

use crate::{
    clock::SystemClock,
    config::Settings,
    crypto::write_private_file,
    domain::{MonthlySmsBudget, WARNING_PERCENT},
    error::{CoreError, FieldError},
    service::{account_groups, hosts, outbox, retention, spend, webhooks},
    startup::{Application, build_core},
    telemetry,
};

#[derive(Parser)]
#[command(
    name = "customer-registration",
    version,
    about = "Customer registration service for an e-money platform"
)]
struct Cli {
    /// TOML configuration file (default: ./customer-registration.toml if present).
    #[arg(long, global = true, env = "CR_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://..., postgres://... or mysql://... (default: SQLite under ./data).
    #[arg(long, global = true, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, global = true, env = "CR_LISTEN")]
    listen: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve {
        /// Create this host unless it exists, and write its credentials to
        /// `<data_dir>/host-<NAME>.credentials` (mode 0600), never to the
        /// log. Safe when several instances start at once.
        #[arg(long, value_name = "NAME")]
        bootstrap_host: Option<String>,
    },
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Make the keys every instance must share.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Manage partner hosts (API clients).
    #[command(subcommand)]
    Host(HostCommand),
    /// Manage account groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Inspect and retry outgoing messages.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Apply the retention rules to registrations and housekeeping rows.
    #[command(subcommand)]
    Registrations(RegistrationsCommand),
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Print the OpenAPI 3.1 document of the REST API (JSON).
    Openapi,
}

#[derive(Subcommand)]
enum RegistrationsCommand {
    /// Delete what the `[retention]` settings say is kept no longer, now
    /// (a running service does it every `retention.interval_minutes`).
    Purge,
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Print fresh keys as TOML and as environment lines; store them in your
    /// secret manager and give the same ones to every instance.
    Generate,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective settings, secrets redacted.
    Check,
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// List messages, newest first.
    List {
        /// Only messages in this state.
        #[arg(long, value_enum)]
        status: Option<MessageState>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Put a dead message (or, with --all-dead, every dead message) back in the queue.
    Retry {
        id: Option<uuid::Uuid>,
        #[arg(long, conflicts_with = "id")]
        all_dead: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MessageState {
    Pending,
    Sent,
    Dead,
    Cancelled,
}

impl From<MessageState> for OutboxStatus {
    fn from(state: MessageState) -> Self {
        match state {
            MessageState::Pending => OutboxStatus::Pending,
            MessageState::Sent => OutboxStatus::Sent,
            MessageState::Dead => OutboxStatus::Dead,
            MessageState::Cancelled => OutboxStatus::Cancelled,
        }
    }
}

#[derive(Subcommand)]
enum HostCommand {
    /// Create a host and print its client credentials (shown only once).
    Create { name: String },
    /// List hosts.
    List,
    /// Disable a host; its access tokens stop working at once.
    Disable { name: String },
    /// Give a host a new client secret (printed once); the old one stops working.
    RotateSecret { name: String },
    /// Revoke every access token of a host; it must get a new one.
    RevokeTokens { name: String },
    /// Set what the host's SMS carry so phones fill the code in: the WebOTP
    /// line (`@DOMAIN #CODE`, last) and Android's SMS Retriever app hash.
    /// Without either option, the host's SMS carry neither.
    Autofill {
        name: String,
        #[arg(long)]
        webotp_domain: Option<String>,
        #[arg(long)]
        android_app_hash: Option<String>,
    },
    /// Cap the SMS the service queues for the host in a calendar month
    /// (UTC): at 80 % the host gets a `host.budget_warning` webhook, beyond
    /// it sends are refused (429 SEND_QUOTA_EXCEEDED) until the month ends.
    /// --none removes the cap.
    Budget {
        name: String,
        /// SMS per month, 1 to 100000000.
        #[arg(
            long,
            required_unless_present = "none",
            conflicts_with = "none",
            allow_negative_numbers = true
        )]
        monthly_sms: Option<i64>,
        #[arg(long)]
        none: bool,
    },
    /// Send the host signed webhooks (Standard Webhooks) at URL, with a new
    /// signing secret printed once; or stop them with --disable. See
    /// docs/WEBHOOKS.md.
    Webhook {
        name: String,
        /// https, or http to a loopback address.
        #[arg(long, required_unless_present = "disable", conflicts_with = "disable")]
        url: Option<String>,
        #[arg(long)]
        disable: bool,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Add an account group.
    Add { id: String, name: String },
    /// List account groups.
    List,
}

pub async fn run() -> ExitCode {
    telemetry::init();
    match execute(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if let Some(CoreError::Validation(fields)) = error.downcast_ref::<CoreError>() {
                for field in fields {
                    eprintln!("  {}: {}", field.field, field.message);
                }
            }
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(url) = cli.database_url {
        settings.database_url = url;
    }
    if let Some(listen) = cli.listen {
        settings.listen = listen;
    }
    let command = cli.command.unwrap_or(Command::Serve {
        bootstrap_host: None,
    });
    let clock = Arc::new(SystemClock);
    match command {
        Command::Serve { bootstrap_host } => serve(settings, clock, bootstrap_host).await,
        Command::Registrations(RegistrationsCommand::Purge) => {
            let core = build_core(settings, clock).await?;
            let purged = retention::purge(&core).await?;
            println!(
                "purged: {} unconfirmed registration(s), {} code(s), {} link(s), {} access token(s), {} delivery attempt(s), {} dead message text(s), {} expired queued message(s), {} idempotency record(s)",
                purged.registrations,
                purged.codes,
                purged.links,
                purged.access_tokens,
                purged.delivery_attempts,
                purged.message_bodies,
                purged.expired_messages,
                purged.idempotency_records
            );
            Ok(())
        }
        Command::Secrets(SecretsCommand::Generate) => {
            print!("{}", crate::crypto::generate_secrets());
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            settings.validate()?;
            for warning in settings.warnings() {
                eprintln!("warning: {warning}");
            }
            print!("{}", settings.redacted_toml()?);
            eprintln!("configuration is valid");
            Ok(())
        }
        Command::Host(command) => {
            let core = build_core(settings, clock).await?;
            match command {
                HostCommand::Create { name } => {
                    let credentials = hosts::create_host(&core, &name).await?;
                    print_credentials(&credentials, &core.settings.public_base_url());
                }
                HostCommand::List => {
                    for host in hosts::list_hosts(&core).await? {
                        let state = match host.disabled_at {
                            Some(at) => format!("disabled {at}"),
                            None => "active".into(),
                        };
                        let budget = host
                            .monthly_sms_budget
                            .map_or("none".to_owned(), |budget| budget.sms().to_string());
                        println!(
                            "{}\t{}\t{state}\tmonthly-sms-budget={budget}",
                            host.name, host.client_id
                        );
                    }
                }
                HostCommand::Disable { name } => {
                    let cancelled = hosts::disable_host(&core, &name).await?;
                    println!("host {name} disabled; {cancelled} queued messages cancelled");
                }
                HostCommand::RotateSecret { name } => {
                    let credentials = hosts::rotate_secret(&core, &name).await?;
                    print_credentials(&credentials, &core.settings.public_base_url());
                }
                HostCommand::Autofill {
                    name,
                    webotp_domain,
                    android_app_hash,
                } => {
                    let autofill = hosts::set_autofill(
                        &core,
                        &name,
                        webotp_domain.as_deref(),
                        android_app_hash.as_deref(),
                    )
                    .await?;
                    let example = core.templates.sms(
                        core.settings.delivery.default_language,
                        "ABC123456",
                        core.settings.registration.token_expiry_minutes,
                        "Ann",
                        &autofill,
                    )?;
                    println!("host {name}: its SMS now read like\n{example}");
                }
                HostCommand::Webhook {
                    name,
                    url: Some(url),
                    disable: false,
                } => {
                    let endpoint = webhooks::set_endpoint(&core, &name, &url).await?;
                    println!(
                        "host {name}: webhooks go to {}\nsigning secret: {}   (shown only now; the receiver verifies with it)",
                        endpoint.url,
                        endpoint.secret.expose_secret()
                    );
                }
                HostCommand::Webhook { name, .. } => {
                    let was_enabled = webhooks::disable_endpoint(&core, &name).await?;
                    if was_enabled {
                        println!("host {name}: webhooks disabled");
                    } else {
                        println!("host {name}: webhooks were already disabled");
                    }
                }
                HostCommand::Budget {
                    name, monthly_sms, ..
                } => {
                    let budget = monthly_sms
                        .map(|sms| {
                            MonthlySmsBudget::parse(sms).map_err(|invalid| {
                                CoreError::Validation(vec![FieldError::on("monthly-sms", invalid)])
                            })
                        })
                        .transpose()?;
                    match spend::set_budget(&core, &name, budget).await? {
                        None => println!("host {name}: no monthly SMS budget"),
                        Some(status) => println!(
                            "host {name}: monthly SMS budget {}; {} queued in {} ({} left); warning at {} %",
                            status.budget.sms(),
                            status.sms_queued,
                            status.month.label(),
                            status.remaining(),
                            WARNING_PERCENT
                        ),
                    }
                }
                HostCommand::RevokeTokens { name } => {
                    let count = hosts::revoke_tokens(&core, &name).await?;
                    println!("{count} access token(s) of host {name} revoked");
                }
            }
            Ok(())
        }
        Command::Schema => {
            print!("{}", crate::graphql::sdl());
            Ok(())
        }
        Command::Openapi => {
            print!("{}", crate::http::openapi::pretty_json()?);
            Ok(())
        }
        Command::Outbox(command) => {
            let core = build_core(settings, clock).await?;
            match command {
                OutboxCommand::List { status, limit } => {
                    for m in outbox::list(&core, status.map(Into::into), limit).await? {
                        println!(
                            "{}\t{}\t{}\tattempts={}\tregistration={}\t{}\t{}",
                            m.id,
                            m.channel.name(),
                            m.status.name(),
                            m.attempts,
                            m.registration_id,
                            m.queued_at,
                            m.last_error.unwrap_or_default()
                        );
                    }
                }
                OutboxCommand::Retry { id, all_dead } => {
                    if id.is_none() && !all_dead {
                        anyhow::bail!("name a message id or pass --all-dead");
                    }
                    let count = outbox::retry_dead(&core, id).await?;
                    println!(
                        "{count} message(s) requeued; a running service sends them within its poll interval"
                    );
                }
            }
            Ok(())
        }
        Command::Group(command) => {
            let core = build_core(settings, clock).await?;
            match command {
                GroupCommand::Add { id, name } => {
                    let group = account_groups::add_group(&core, &id, &name).await?;
                    println!("account group {} ({}) added", group.id, group.name);
                }
                GroupCommand::List => {
                    for group in account_groups::list_groups(&core).await? {
                        println!("{}\t{}", group.id, group.name);
                    }
                }
            }
            Ok(())
        }
    }
}

async fn serve(
    settings: Settings,
    clock: Arc<SystemClock>,
    bootstrap_host: Option<String>,
) -> anyhow::Result<()> {
    let development = settings.database_url().starts_with("sqlite:");
    let app = Application::build(settings, clock).await?;
    let base_url = app.core.settings.public_base_url();
    if let Some(name) = bootstrap_host {
        match hosts::bootstrap_host(&app.core, &name).await? {
            Some(credentials) => {
                let path = app
                    .core
                    .settings
                    .data_dir
                    .join(format!("host-{name}.credentials"));
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                write_private_file(&path, &credentials_text(&credentials, &base_url))?;
                tracing::info!(host = %name, path = %path.display(), "host created; its credentials are in the file");
            }
            None => tracing::info!(host = %name, "host exists; not created again"),
        }
    } else if development && let Some(credentials) = hosts::bootstrap_first_host(&app.core).await? {
        // Only the SQLite development default does this: a newcomer's first
        // run. Production creates hosts with --bootstrap-host or the CLI.
        println!("No host existed, so one was created.");
        print!("{}", credentials_text(&credentials, &base_url));
    }
    tracing::info!(address = %app.local_addr()?, "listening");
    app.run().await
}

fn print_credentials(credentials: &hosts::HostCredentials, base_url: &str) {
    print!("{}", credentials_text(credentials, base_url));
}

fn credentials_text(credentials: &hosts::HostCredentials, base_url: &str) -> String {
    format!(
        "host:          {}\nclient_id:     {}\nclient_secret: {}   (shown only now; it is stored hashed)\nGet an access token:\n  curl -s -u '{}:{}' -d grant_type=client_credentials {base_url}/oauth/token\n",
        credentials.name,
        credentials.client_id,
        credentials.client_secret,
        credentials.client_id,
        credentials.client_secret
    )
}
