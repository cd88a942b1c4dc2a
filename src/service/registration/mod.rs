//! The registration lifecycle, split by concern:
//! - `input`: what transports fill in, parsed into domain values;
//! - `commands`: the use cases (register, resend, verify);
//! - `confirm`: the confirmation, by the API and the completion page;
//! - `batch`: registers written together, one transaction a batch;
//! - `checks`: what a batch checks each of its registers against;
//! - `messages`: the codes, links and messages those transactions queue;
//! - `store`: inserts and the conditional updates that hold under races;
//! - `queries`: reads, including the batch loads behind DataLoaders;
//! - `rows`: database rows read back as domain types;
//! - `views`: the plain structs the use cases return.
//!
//! The rules themselves live on `domain::Registration`.
mod batch;
pub mod checks;
mod commands;
mod confirm;
pub mod input;
mod messages;
pub mod queries;
mod rows;
mod store;
pub mod views;

pub use commands::{register, resend_email, resend_sms, verify_email, verify_username};
pub use confirm::{ConfirmedVia, confirm, confirm_parsed};
pub use input::{ConfirmInput, Field, RegisterInput, ResendInput};
/// The batch's statements, for tests that read their plans.
pub use store::{last_registered_query, supersede_pending_query};
