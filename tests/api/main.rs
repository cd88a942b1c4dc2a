//! Integration tests: the real service over HTTP, one fresh database each.
// Tests and benchmarks fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod auth;
mod browser;
mod confirm;
mod delivery;
mod gateways;
mod graphql;
mod graphql_http;
mod group_commit;
mod hardening;
mod helpers;
mod idempotency;
mod openapi;
mod pages;
mod parity;
mod quotas;
mod races;
mod register;
mod resend;
mod retention;
mod secrets;
mod sms_providers;
mod smtp;
mod spend;
mod verify;
mod webhooks;
