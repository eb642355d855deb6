//! The HTTP side of the web UI: the page, the JSON API and the live
//! update stream, for a running driver or for the history server.
//!
//! Routes of one application (relative to `/` live, `/app/{id}/` in
//! history):
//!
//! | route | answer |
//! | --- | --- |
//! | `` (the page) | the single-page UI, embedded in the binary |
//! | `api/v1/application` | [`AppInfo`] |
//! | `api/v1/jobs` | [`JobRow`]s, newest first |
//! | `api/v1/jobs/{job}` | [`JobDetail`]: the job and its stage DAG |
//! | `api/v1/stages` | [`StageRow`]s, newest first |
//! | `api/v1/jobs/{job}/stages/{stage}/{attempt}` | [`StageDetail`]: tasks and duration quantiles |
//! | `api/v1/executors` | [`ExecutorRow`]s |
//! | `api/v1/events` | server-sent events: `update` with `{"job": N}` after changes, at most once a second (live only) |
//!
//! The history server adds `/` (the list of applications) and
//! `/api/v1/applications` ([`AppInfo`]s).
//!
//! When a shared secret is configured every request must carry it: an
//! `Authorization: Bearer <secret>` header, the `riffle_secret` cookie, or
//! once `?secret=<secret>` in the URL (which sets the cookie).
//!
//! [`AppInfo`]: super::status::AppInfo
//! [`JobRow`]: super::status::JobRow
//! [`JobDetail`]: super::status::JobDetail
//! [`StageRow`]: super::status::StageRow
//! [`StageDetail`]: super::status::StageDetail
//! [`ExecutorRow`]: super::status::ExecutorRow

use super::status::AppStatus;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use riffle_planner::ids::ExecutorId;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The page, embedded so that nothing is fetched at run time.
pub(crate) const INDEX_HTML: &str = include_str!("assets/index.html");

/// Live updates are sent at most this often: each makes the page refetch
/// and redraw, and a browser on the driver's machine competes with its
/// tasks for CPU (benches/ui.sh).
const UPDATE_INTERVAL: Duration = Duration::from_secs(1);

/// The last heartbeat of each executor, in Unix milliseconds.
pub(crate) type Heartbeats = Arc<dyn Fn() -> HashMap<ExecutorId, u64> + Send + Sync>;

/// One application as the routes see it.
#[derive(Clone)]
pub(crate) struct AppSource {
    pub(crate) status: Arc<Mutex<AppStatus>>,
    /// Changes of the status (live only): the job last changed.
    pub(crate) updates: Option<watch::Receiver<Option<u32>>>,
    /// Set once the executors are known (live clusters only).
    pub(crate) heartbeats: Arc<Mutex<Option<Heartbeats>>>,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Answers `rest` (the path below the application's root) for `app`.
pub(crate) fn answer(app: &AppSource, rest: &str, method: &Method) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "the UI is read-only").into_response();
    }
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || parts == ["index.html"] {
        return page(INDEX_HTML);
    }
    if parts == ["api", "v1", "events"] {
        return match &app.updates {
            Some(rx) => Sse::new(updates(rx.clone()))
                .keep_alive(KeepAlive::default())
                .into_response(),
            None => (
                StatusCode::NOT_FOUND,
                "no live updates: this application is a replayed event log",
            )
                .into_response(),
        };
    }
    let now = now_ms();
    // The event loop takes the same lock for every event: hold it only to
    // copy the rows out, and serialize after.
    let Ok(status) = app.status.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "status store poisoned").into_response();
    };
    let number = |s: &str| s.parse::<u32>().ok();
    match parts.as_slice() {
        ["api", "v1", "application"] => {
            let info = status.info().clone();
            drop(status);
            json(&info)
        }
        ["api", "v1", "jobs"] => {
            let rows = status.jobs(now);
            drop(status);
            json(&rows)
        }
        ["api", "v1", "jobs", id] => {
            let job = number(id).and_then(|id| status.job(id, now));
            drop(status);
            match job {
                Some(job) => json(&job),
                None => not_found(&format!("no job {id}")),
            }
        }
        ["api", "v1", "stages"] => {
            let rows = status.stages(now);
            drop(status);
            json(&rows)
        }
        ["api", "v1", "jobs", job, "stages", stage, attempt] => {
            let (Some(j), Some(s), Some(a)) = (number(job), number(stage), number(attempt)) else {
                return not_found("job, stage and attempt must be numbers");
            };
            let detail = status.stage(j, s, a, now);
            drop(status);
            match detail {
                Some(detail) => json(&detail),
                None => not_found(&format!("no attempt {a} of stage {s} in job {j}")),
            }
        }
        ["api", "v1", "executors"] => {
            let mut rows = status.executors();
            drop(status);
            let heartbeats = app.heartbeats.lock().ok().and_then(|h| h.clone());
            if let Some(heartbeats) = heartbeats {
                let beats: HashMap<String, u64> = heartbeats()
                    .into_iter()
                    .map(|(id, ms)| (id.to_string(), ms))
                    .collect();
                for row in &mut rows {
                    row.last_heartbeat_ms = beats.get(&row.id).copied();
                }
            }
            json(&rows)
        }
        _ => not_found(&format!("no such page: {rest}")),
    }
}

/// A stream of `update` events: one on connecting, then one per change,
/// at most every [`UPDATE_INTERVAL`]; it ends when the driver stops.
fn updates(
    rx: watch::Receiver<Option<u32>>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first {
            tokio::time::sleep(UPDATE_INTERVAL).await;
            rx.changed().await.ok()?;
        }
        let job = *rx.borrow_and_update();
        let data = serde_json::json!({ "job": job }).to_string();
        Some((Ok(Event::default().event("update").data(data)), (rx, false)))
    })
}

/// A JSON answer.
pub(crate) fn json<T: serde::Serialize + ?Sized>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// An HTML page that must not be cached (it changes with the binary).
pub(crate) fn page(html: impl Into<Body>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        html.into(),
    )
        .into_response()
}

pub(crate) fn not_found(message: &str) -> Response {
    (StatusCode::NOT_FOUND, message.to_string()).into_response()
}

/// The shared-secret check of every request (none without a secret).
#[derive(Clone)]
pub(crate) struct Gate {
    secret: Option<Arc<str>>,
}

const COOKIE: &str = "riffle_secret";

impl Gate {
    pub(crate) fn new(secret: Option<&str>) -> Gate {
        Gate {
            secret: secret.filter(|s| !s.is_empty()).map(Arc::from),
        }
    }

    /// Whether the request may pass. A correct `?secret=` also sets the
    /// cookie, so the page's own requests pass.
    pub(crate) fn check(&self, uri: &Uri, headers: &HeaderMap) -> Verdict {
        let Some(secret) = &self.secret else {
            return Verdict::Pass;
        };
        let matches = |given: &str| {
            riffle_executor::rpc::constant_time_eq(given.as_bytes(), secret.as_bytes())
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
            .any(matches);
        if bearer.is_some_and(matches) || cookie {
            return Verdict::Pass;
        }
        let query = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.strip_prefix("secret="))
            .any(matches);
        if query {
            return Verdict::SetCookie(format!(
                "{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict"
            ));
        }
        Verdict::Refuse
    }
}

/// What [`Gate::check`] decided.
pub(crate) enum Verdict {
    Pass,
    /// Pass, and set this cookie.
    SetCookie(String),
    Refuse,
}

/// Serves `handler` for every request on `listener`, behind `gate`, until
/// the runtime stops.
pub(crate) fn serve<F>(
    runtime: &tokio::runtime::Handle,
    listener: tokio::net::TcpListener,
    gate: Gate,
    handler: F,
) where
    F: Fn(Uri, Method) -> futures::future::BoxFuture<'static, Response>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let handler = handler.clone();
        let gate = gate.clone();
        async move {
            let cookie = match gate.check(&uri, &headers) {
                Verdict::Pass => None,
                Verdict::SetCookie(cookie) => Some(cookie),
                Verdict::Refuse => {
                    return (
                        StatusCode::UNAUTHORIZED,
                        "the Riffle UI needs the shared secret (RIFFLE_SECRET): open it with ?secret=...",
                    )
                        .into_response();
                }
            };
            let mut response = handler(uri, method).await;
            if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
    });
    runtime.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("web UI stopped: {e}");
        }
    });
}

/// Binds `ip:port`, or the next of up to 16 ports if taken (as Spark's
/// `spark.port.maxRetries`); port 0 picks any free port.
pub(crate) async fn bind(
    ip: std::net::IpAddr,
    port: u16,
) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    let tries = if port == 0 { 1 } else { 17 };
    for offset in 0..tries {
        let Some(p) = port.checked_add(offset) else {
            break;
        };
        match tokio::net::TcpListener::bind((ip, p)).await {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port to try")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(gate: &Gate, uri: &str, headers: &[(header::HeaderName, &str)]) -> &'static str {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        match gate.check(&uri.parse().unwrap(), &map) {
            Verdict::Pass => "pass",
            Verdict::SetCookie(_) => "cookie",
            Verdict::Refuse => "refuse",
        }
    }

    #[test]
    fn with_a_secret_every_request_must_carry_it() {
        assert_eq!(verdict(&Gate::new(None), "/api/v1/jobs", &[]), "pass");
        let gate = Gate::new(Some("s3cret"));
        assert_eq!(verdict(&gate, "/api/v1/jobs", &[]), "refuse");
        let auth = header::AUTHORIZATION;
        assert_eq!(
            verdict(&gate, "/", &[(auth.clone(), "Bearer s3cret")]),
            "pass"
        );
        assert_eq!(verdict(&gate, "/", &[(auth, "Bearer s3cre")]), "refuse");
        let cookie = header::COOKIE;
        assert_eq!(
            verdict(&gate, "/", &[(cookie.clone(), "a=b; riffle_secret=s3cret")]),
            "pass"
        );
        assert_eq!(
            verdict(&gate, "/", &[(cookie, "riffle_secret=nope")]),
            "refuse"
        );
        assert_eq!(verdict(&gate, "/?secret=s3cret", &[]), "cookie");
        assert_eq!(verdict(&gate, "/?secret=wrong", &[]), "refuse");
    }

    #[test]
    fn beyond_loopback_the_ui_needs_the_secret() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let stores = riffle_shuffle::stores::ObjectStores::default();
        let ui = super::super::UiConfig {
            enabled: true,
            bind: std::net::IpAddr::from([0, 0, 0, 0]),
            port: 0,
        };
        let start = |secret| {
            super::super::LiveUi::start(rt.handle(), &stores, &ui, None, secret, "local").unwrap()
        };
        assert_eq!(start(None).url, None, "no secret: the UI stays off");
        let url = start(Some("s3cret"))
            .url
            .expect("with the secret it is served");
        assert!(url.starts_with("http://0.0.0.0:"), "{url}");
    }
}
