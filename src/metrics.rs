//! Counters for operators, served at `GET /metrics` in the Prometheus text
//! format. Each also has a structured log event (see docs/LOGGING.md).
use entity::states::Channel;
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

fn index(channel: Channel) -> usize {
    match channel {
        Channel::Sms => 0,
        Channel::Email => 1,
    }
}

impl Metrics {
    pub fn sent(&self, channel: Channel) {
        self.sent[index(channel)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self, channel: Channel) {
        self.failed[index(channel)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn dead(&self, channel: Channel) {
        self.dead[index(channel)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused_by_quota(&self, channel: Channel) {
        self.refused_by_quota[index(channel)].fetch_add(1, Ordering::Relaxed);
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
            for channel in Channel::ALL {
                let value = counters[index(channel)].load(Ordering::Relaxed);
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
