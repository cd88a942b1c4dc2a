//! Delivery of queued messages: a dispatcher claims due outbox rows and
//! hands them to the configured transports.
mod dispatcher;
mod transport;

pub use dispatcher::{DispatchReport, Dispatcher};
pub use transport::{EmailSender, OutgoingMessage, SendError, SmsTransport};

pub mod templates;
