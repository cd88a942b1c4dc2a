//! Customer registration for an e-money platform: one core of operations
//! (`service`) behind GraphQL, the legacy REST paths and the CLI.
pub mod cli;
pub mod clock;
pub mod config;
pub mod counting_slots;
pub mod crypto;
pub mod db;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod group_commit;
pub mod http;
pub mod known_groups;
pub mod malloc;
pub mod metrics;
pub mod pages;
pub mod request_counts;
pub mod service;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod templates;
pub mod token_cache;
