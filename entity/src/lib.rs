//! SeaORM entities: the database rows, nothing more. The service never hands
//! these to a transport; it maps them to its own response types.
pub mod access_token;
pub mod account_group;
pub mod completion_link;
pub mod customer;
pub mod delivery_attempt;
pub mod host;
pub mod host_sms_month;
pub mod idempotency_record;
pub mod job_lease;
pub mod outbox_message;
pub mod phone_guard;
pub mod registration;
pub mod send_quota;
pub mod service_key;
pub mod sms_token;
pub mod states;
pub mod webhook_delivery;
pub mod webhook_endpoint;
