//! Integration tests: the real service over HTTP, one fresh database each.
mod auth;
mod browser;
mod confirm;
mod delivery;
mod gateways;
mod graphql;
mod helpers;
mod idempotency;
mod pages;
mod parity;
mod quotas;
mod races;
mod register;
mod resend;
mod smtp;
mod verify;
