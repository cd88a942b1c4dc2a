//! A real SMTP server inside the test process (mailin-embedded), receiving
//! what the service sends over the network.
use std::{
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};

use mailin_embedded::{Handler, Response, Server, response};

#[derive(Clone, Default)]
pub struct SmtpSink {
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    /// When set, every message is refused with this reply.
    refusal: Arc<Mutex<Option<(u16, &'static str)>>>,
    current: Vec<u8>,
}

impl Handler for SmtpSink {
    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> Response {
        self.current.clear();
        match *self.refusal.lock().unwrap() {
            Some((code, text)) => Response::custom(code, text.to_owned()),
            None => response::OK,
        }
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.received
            .lock()
            .unwrap()
            .push(std::mem::take(&mut self.current));
        response::OK
    }
}

impl SmtpSink {
    /// Serves SMTP on the listener from a background thread.
    pub fn start(listener: TcpListener) -> Self {
        let sink = SmtpSink::default();
        let mut server = Server::new(sink.clone());
        server.with_name("smtp.test").with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        sink
    }

    pub fn refuse_with(&self, code: u16, text: &'static str) {
        *self.refusal.lock().unwrap() = Some((code, text));
    }

    pub fn accept(&self) {
        *self.refusal.lock().unwrap() = None;
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Waits for `n` messages and returns their raw bytes.
    pub async fn wait_for(&self, n: usize) -> Vec<Vec<u8>> {
        for _ in 0..500 {
            let received = self.received.lock().unwrap().clone();
            if received.len() >= n {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{n} emails did not arrive over SMTP");
    }
}

/// A port on which nothing listens (yet).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
