//! Dated schema migrations, run at start-up by `db::connect_and_migrate`.
// `MigrationTrait` is an async_trait: its `&SchemaManager` must stay elided.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_hosts;
mod m20261124_000002_create_registrations;
mod m20261124_000003_create_outbox;
mod m20261125_000001_delivery_timeline_and_quotas;
mod m20261125_000002_leases_and_precise_times;
mod m20261125_000003_service_keys;
mod m20261125_000004_job_leases;
mod m20261201_000001_phone_guard_per_host;
mod m20261201_000002_host_sms_autofill;
mod m20261201_000003_host_webhooks;
mod m20261201_000004_sms_providers_and_receipts;
mod m20261201_000005_host_sms_budget;
mod m20261201_000006_registration_host_phone_index;
mod m20261202_000001_outbox_pending_index;
mod m20261202_000002_one_pending_registration_per_phone;
mod m20261204_000001_outbox_due_index;
mod m20261204_000002_registration_indexes_by_host_and_phone;
mod m20261205_000001_outbox_room_for_leases;
mod m20261205_000002_recipient_quota_scopes_side_by_side;
mod m20261206_000001_quota_allowances;
mod m20261206_000002_one_pending_registration_per_phone_on_mysql;
mod m20261206_000003_outbox_bodies_inline;
mod m20261207_000001_outbox_provider_message_index;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_hosts::Migration),
            Box::new(m20261124_000002_create_registrations::Migration),
            Box::new(m20261124_000003_create_outbox::Migration),
            Box::new(m20261125_000001_delivery_timeline_and_quotas::Migration),
            Box::new(m20261125_000002_leases_and_precise_times::Migration),
            Box::new(m20261125_000003_service_keys::Migration),
            Box::new(m20261125_000004_job_leases::Migration),
            Box::new(m20261201_000001_phone_guard_per_host::Migration),
            Box::new(m20261201_000002_host_sms_autofill::Migration),
            Box::new(m20261201_000003_host_webhooks::Migration),
            Box::new(m20261201_000004_sms_providers_and_receipts::Migration),
            Box::new(m20261201_000005_host_sms_budget::Migration),
            Box::new(m20261201_000006_registration_host_phone_index::Migration),
            Box::new(m20261202_000001_outbox_pending_index::Migration),
            Box::new(m20261202_000002_one_pending_registration_per_phone::Migration),
            Box::new(m20261204_000001_outbox_due_index::Migration),
            Box::new(m20261204_000002_registration_indexes_by_host_and_phone::Migration),
            Box::new(m20261205_000001_outbox_room_for_leases::Migration),
            Box::new(m20261205_000002_recipient_quota_scopes_side_by_side::Migration),
            Box::new(m20261206_000001_quota_allowances::Migration),
            Box::new(m20261206_000002_one_pending_registration_per_phone_on_mysql::Migration),
            Box::new(m20261206_000003_outbox_bodies_inline::Migration),
            Box::new(m20261207_000001_outbox_provider_message_index::Migration),
        ]
    }
}
