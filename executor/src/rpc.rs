//! The generated gRPC services (`DriverService`, `ExecutorService`), their
//! shared-secret authentication and the channel settings every connection
//! uses.

/// Service stubs of package `riffle.v1`, generated at build time.
#[allow(missing_docs, unreachable_pub, unused_qualifications, clippy::all, clippy::pedantic)]
#[rustfmt::skip]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/riffle.v1.rs"));
}

use crate::secret::Secret;
use crate::tls::TlsConfig;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Default limit on every gRPC message, in bytes (setting
/// `max_message_bytes`, environment `RIFFLE_MAX_MESSAGE_BYTES`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Adds (client side) or checks (server side) the shared secret in the
/// `authorization` header of every call. There is no way to turn it off:
/// see [`crate::secret`].
#[derive(Clone, Debug)]
pub struct Auth {
    secret: Secret,
    refusals: Refusals,
}

impl Auth {
    /// Authentication with `secret`.
    pub fn new(secret: Secret) -> Self {
        Auth {
            secret,
            refusals: Refusals::default(),
        }
    }

    /// The secret, to hand to executors this process starts.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Where refused calls are logged.
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    /// A client-side interceptor adding the secret to every call.
    pub fn client(&self) -> ClientAuth {
        ClientAuth {
            header: format!("Bearer {}", self.secret.expose()).parse().ok(),
        }
    }

    /// A server-side interceptor refusing calls without the secret.
    pub fn server(&self) -> ServerAuth {
        ServerAuth {
            expected: format!("Bearer {}", self.secret.expose())
                .into_bytes()
                .into(),
            refusals: self.refusals.clone(),
        }
    }
}

/// Adds the shared secret to outgoing calls.
#[derive(Clone)]
pub struct ClientAuth {
    header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientAuth(<redacted>)")
    }
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
#[derive(Clone)]
pub struct ServerAuth {
    expected: std::sync::Arc<[u8]>,
    refusals: Refusals,
}

impl std::fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerAuth(<redacted>)")
    }
}

impl Interceptor for ServerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let given = request.metadata().get("authorization");
        let why = match given {
            Some(v) if constant_time_eq(v.as_bytes(), &self.expected) => return Ok(request),
            Some(_) => "wrong shared secret",
            None => "no shared secret",
        };
        Err(self.refusals.refuse(
            request.remote_addr(),
            why,
            Status::unauthenticated(format!(
                "{why}: every driver and executor of a cluster needs the same one (RIFFLE_SECRET, RIFFLE_SECRET_FILE or ~/.riffle/secret)"
            )),
        ))
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

/// Logs refused calls: once per peer address and reason at `warn` (a
/// scanner or a misconfigured executor retrying must not flood the log),
/// every further one at `debug`. Never logs the secret, only what was
/// wrong.
#[derive(Clone, Debug, Default)]
pub struct Refusals {
    seen: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<RefusalKey>>>,
}

/// A peer's address (without the port: a retrying client opens new
/// connections) and the reason it was refused.
type RefusalKey = (Option<std::net::IpAddr>, String);

/// Distinct (peer, reason) pairs remembered; beyond it every refusal logs
/// at `debug`, so a flood of addresses cannot grow memory.
const MAX_REMEMBERED_REFUSALS: usize = 1024;

impl Refusals {
    /// Logs the refusal of a call from `peer` for `why`, and returns
    /// `status` to send back.
    pub fn refuse(&self, peer: Option<std::net::SocketAddr>, why: &str, status: Status) -> Status {
        let key = (peer.map(|p| p.ip()), why.to_string());
        let first = self
            .seen
            .lock()
            .is_ok_and(|mut seen| seen.len() < MAX_REMEMBERED_REFUSALS && seen.insert(key));
        let peer = peer.map_or_else(|| "an unknown peer".to_string(), |p| p.to_string());
        if first {
            tracing::warn!(%peer, reason = why, "refused a call (further refusals of this peer for this reason are logged at debug)");
        } else {
            tracing::debug!(%peer, reason = why, "refused a call");
        }
        status
    }
}

/// A channel to `url` (another process of this cluster, named `whose` in
/// errors), over TLS when `tls` is given. The connection is made lazily,
/// on the first call.
///
/// # Errors
///
/// A URL that does not parse, or whose scheme does not match the TLS
/// setting ([`crate::tls::check_url`]).
pub fn channel(
    url: &str,
    tls: Option<&TlsConfig>,
    whose: &str,
) -> Result<tonic::transport::Channel, String> {
    crate::tls::check_url(url, tls, whose).map_err(|e| e.to_string())?;
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("{whose} {url:?} is not a valid URL: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.client())
            .map_err(|e| format!("TLS for {whose} {url}: {e}"))?;
    }
    Ok(endpoint.connect_lazy())
}

/// A gRPC server builder, serving TLS when `tls` is given.
///
/// # Errors
///
/// The TLS files are not usable (checked already when the configuration
/// was read, so this is not expected).
pub fn server(tls: Option<&TlsConfig>) -> Result<tonic::transport::Server, String> {
    let builder = tonic::transport::Server::builder().tcp_nodelay(true);
    match tls {
        Some(tls) => builder
            .tls_config(tls.server())
            .map_err(|e| format!("cannot serve TLS: {e}")),
        None => Ok(builder),
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
        let auth = Auth::new(Secret::new("s3cret", "test").unwrap());
        let mut server = auth.server();
        let mut client = auth.client();
        let ok = client.call(Request::new(())).unwrap();
        assert!(server.call(ok).is_ok());
        let err = server.call(Request::new(())).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().starts_with("no shared secret"), "{err:?}");
        let mut wrong = Auth::new(Secret::new("other", "test").unwrap()).client();
        let err = server
            .call(wrong.call(Request::new(())).unwrap())
            .unwrap_err();
        assert!(err.message().starts_with("wrong shared secret"), "{err:?}");
        assert!(!err.message().contains("s3cret") && !err.message().contains("other"));
        assert!(!format!("{auth:?} {client:?} {server:?}").contains("s3cret"));
    }
}
