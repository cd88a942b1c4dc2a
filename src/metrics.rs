//! Counters for operators, served at `GET /metrics` in the Prometheus text
//! format. Each also has a structured log event (see docs/LOGGING.md).
use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering},
};

#[derive(Default)]
pub struct Metrics {
    sent: [AtomicU64; 2],
    failed: [AtomicU64; 2],
    dead: [AtomicU64; 2],
    refused_by_quota: [AtomicU64; 2],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Sms,
    Email,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
        }
    }

    pub fn from_name(name: &str) -> Self {
        if name == "email" {
            Channel::Email
        } else {
            Channel::Sms
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Metrics {
    pub fn sent(&self, channel: Channel) {
        self.sent[channel.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self, channel: Channel) {
        self.failed[channel.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn dead(&self, channel: Channel) {
        self.dead[channel.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused_by_quota(&self, channel: Channel) {
        self.refused_by_quota[channel.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, db_statements: u64) -> String {
        let mut out = String::new();
        let families = [
            (
                "registration_messages_sent_total",
                "Messages handed to a transport.",
                &self.sent,
            ),
            (
                "registration_message_failures_total",
                "Send attempts that failed and will be retried.",
                &self.failed,
            ),
            (
                "registration_messages_dead_total",
                "Messages dead-lettered.",
                &self.dead,
            ),
            (
                "registration_sends_refused_by_quota_total",
                "Sends refused by a send quota.",
                &self.refused_by_quota,
            ),
        ];
        for (name, help, counters) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for channel in [Channel::Sms, Channel::Email] {
                let value = counters[channel.index()].load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{channel=\"{}\"}} {value}", channel.name());
            }
        }
        let _ = writeln!(
            out,
            "# HELP registration_db_statements_total Database statements executed.\n# TYPE registration_db_statements_total counter\nregistration_db_statements_total {db_statements}"
        );
        out
    }
}
