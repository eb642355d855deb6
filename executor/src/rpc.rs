//! The generated gRPC services (`DriverService`, `ExecutorService`), their
//! shared-secret authentication and the channel settings every connection
//! uses.

/// Service stubs of package `riffle.v1`, generated at build time.
#[allow(missing_docs, unreachable_pub, unused_qualifications, clippy::all, clippy::pedantic)]
#[rustfmt::skip]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/riffle.v1.rs"));
}

use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Default limit on every gRPC message, in bytes (setting
/// `max_message_bytes`, environment `RIFFLE_MAX_MESSAGE_BYTES`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Adds (client side) or checks (server side) the shared secret in the
/// `authorization` header. Without a secret configured, calls pass
/// unchecked; the driver and executor refuse to listen on anything but
/// loopback in that case.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    secret: Option<String>,
}

impl Auth {
    /// Authentication with an optional shared secret.
    pub fn new(secret: Option<String>) -> Self {
        Auth {
            secret: secret.filter(|s| !s.is_empty()),
        }
    }

    /// Whether a secret is configured.
    pub fn enabled(&self) -> bool {
        self.secret.is_some()
    }

    /// A client-side interceptor adding the secret to every call.
    pub fn client(&self) -> ClientAuth {
        ClientAuth {
            header: self
                .secret
                .as_ref()
                .and_then(|s| format!("Bearer {s}").parse().ok()),
        }
    }

    /// A server-side interceptor refusing calls without the secret.
    pub fn server(&self) -> ServerAuth {
        ServerAuth {
            expected: self
                .secret
                .as_ref()
                .map(|s| format!("Bearer {s}").into_bytes()),
        }
    }
}

/// Adds the shared secret to outgoing calls.
#[derive(Clone, Debug)]
pub struct ClientAuth {
    header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Interceptor for ClientAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            request.metadata_mut().insert("authorization", h.clone());
        }
        Ok(request)
    }
}

/// Checks the shared secret of incoming calls.
#[derive(Clone, Debug)]
pub struct ServerAuth {
    expected: Option<Vec<u8>>,
}

impl Interceptor for ServerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, expected) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong shared secret (RIFFLE_SECRET)",
            ))
        }
    }
}

/// Compares without an early exit, so timing does not reveal the prefix
/// that matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses to listen on a non-loopback address without a secret: anyone
/// who can reach the port could otherwise make this process run code.
pub fn check_bind(addr: &std::net::SocketAddr, auth: &Auth) -> Result<(), String> {
    if addr.ip().is_loopback() || auth.enabled() {
        Ok(())
    } else {
        Err(format!(
            "refusing to listen on {addr} without a shared secret: set RIFFLE_SECRET on the driver and every executor, or bind to 127.0.0.1"
        ))
    }
}

/// The message of a status for a call that exceeded the size limit.
pub fn message_limit_hint(limit: usize) -> String {
    format!(
        "the message-size limit is {limit} bytes (setting max_message_bytes, environment RIFFLE_MAX_MESSAGE_BYTES)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_checked() {
        let auth = Auth::new(Some("s3cret".into()));
        let mut server = auth.server();
        let mut client = auth.client();
        let ok = client.call(Request::new(())).unwrap();
        assert!(server.call(ok).is_ok());
        let err = server.call(Request::new(())).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        let mut wrong = Auth::new(Some("other".into())).client();
        assert!(server.call(wrong.call(Request::new(())).unwrap()).is_err());
        assert!(Auth::new(None).server().call(Request::new(())).is_ok());
    }

    #[test]
    fn public_bind_needs_secret() {
        let public: std::net::SocketAddr = "0.0.0.0:7077".parse().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:7077".parse().unwrap();
        assert!(
            check_bind(&public, &Auth::new(None))
                .unwrap_err()
                .contains("RIFFLE_SECRET")
        );
        assert!(check_bind(&public, &Auth::new(Some("x".into()))).is_ok());
        assert!(check_bind(&local, &Auth::new(None)).is_ok());
    }
}
