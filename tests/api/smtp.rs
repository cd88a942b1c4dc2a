//! A real SMTP server inside the test process (mailin-embedded), receiving
//! what the service sends over the network.
use std::{
    net::TcpListener,
    sync::{Arc, Mutex},
};

use mailin_embedded::{AuthMechanism, Handler, Response, Server, SslConfig, response};

use crate::helpers::eventually;

#[derive(Clone, Default)]
pub struct SmtpSink {
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    /// When set, every message is refused with this reply.
    refusal: Arc<Mutex<Option<(u16, &'static str)>>>,
    /// The only credentials AUTH PLAIN accepts, when the server asks for any.
    login: Option<(String, String)>,
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

    fn auth_plain(&mut self, _authorization_id: &str, user: &str, password: &str) -> Response {
        match &self.login {
            Some((u, p)) if u == user && p == password => response::AUTH_OK,
            _ => response::INVALID_CREDENTIALS,
        }
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

    /// Serves SMTP that offers STARTTLS with the given certificate and
    /// accepts AUTH PLAIN (only after TLS, as mailin enforces) for one login.
    pub fn start_tls(
        listener: TcpListener,
        cert_path: &str,
        key_path: &str,
        login: (&str, &str),
    ) -> Self {
        // Both rustls providers are compiled into test builds; pick one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sink = SmtpSink {
            login: Some((login.0.to_owned(), login.1.to_owned())),
            ..SmtpSink::default()
        };
        let mut server = Server::new(sink.clone());
        server
            .with_name("localhost")
            .with_ssl(SslConfig::SelfSigned {
                cert_path: cert_path.to_owned(),
                key_path: key_path.to_owned(),
            })
            .expect("TLS configuration loads")
            .with_auth(AuthMechanism::Plain)
            .with_tcp_listener(listener);
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
        eventually(format!("{n} emails over SMTP"), || async {
            let received = self.received.lock().unwrap().clone();
            (received.len() >= n).then_some(received)
        })
        .await
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
