//! Integration tests: the real service over HTTP, one fresh database each.
mod auth;
mod confirm;
mod graphql;
mod helpers;
mod idempotency;
mod parity;
mod races;
mod register;
mod resend;
mod verify;
