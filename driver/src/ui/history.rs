//! `riffle history DIR`: the web UI over event logs, finished and in
//! progress (Spark's history server, port 18080).
//!
//! `/` lists the applications found in `DIR`; `/app/{id}/` shows one with
//! the same page and API as the live UI. Logs are listed on each request
//! and replayed when first asked for or when they have grown, so running
//! applications show their progress on reload.

use super::event_log::{self, LogFile};
use super::server::{self, AppSource, Gate};
use super::status::{AppInfo, AppStatus};
use crate::error::DriverError;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use riffle_shuffle::stores::ObjectStores;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The history server's default port (Spark's).
pub const DEFAULT_PORT: u16 = 18080;

/// A running history server.
pub struct HistoryServer {
    /// Where it listens.
    pub addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
}

impl HistoryServer {
    /// Serves the logs under `dir` (a local directory or an object-store
    /// URL) on `bind` (port 0: any free port). Fails if the directory
    /// cannot be listed or the address cannot be bound. Listening beyond
    /// loopback needs `secret`.
    pub fn start(
        dir: &str,
        bind: SocketAddr,
        secret: Option<&str>,
    ) -> Result<HistoryServer, DriverError> {
        let secret = secret.filter(|s| !s.is_empty());
        if !bind.ip().is_loopback() && secret.is_none() {
            return Err(DriverError::Config(format!(
                "the history server would listen on {bind}: beyond loopback it needs the shared secret (RIFFLE_SECRET)"
            )));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("riffle-history")
            .enable_all()
            .build()
            .map_err(|e| DriverError::Config(format!("cannot start a runtime: {e}")))?;
        let stores = ObjectStores::default();
        // A local directory must exist (a typo would otherwise show an
        // empty list); any store must be listable.
        let url = ObjectStores::to_url(dir).map_err(DriverError::input)?;
        if let Ok(path) = url.to_file_path()
            && !path.is_dir()
        {
            return Err(DriverError::Input {
                path: dir.to_string(),
                message: "no such event log directory".into(),
                source: None,
            });
        }
        runtime.block_on(event_log::list_logs(&stores, dir))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(bind))
            .map_err(|e| DriverError::Config(format!("cannot listen on {bind}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| DriverError::Config(e.to_string()))?;
        let history = Arc::new(History {
            stores,
            dir: dir.to_string(),
            cache: Mutex::new(HashMap::new()),
        });
        server::serve(
            runtime.handle(),
            listener,
            Gate::new(secret),
            move |uri: Uri, method: Method| {
                let history = history.clone();
                Box::pin(async move { history.answer(&uri, &method).await })
            },
        );
        Ok(HistoryServer { addr, runtime })
    }

    /// Blocks until the process is stopped.
    pub fn wait(self) {
        self.runtime.block_on(std::future::pending::<()>());
    }
}

struct History {
    stores: ObjectStores,
    dir: String,
    /// Replayed logs by application id, with the size they had.
    cache: Mutex<HashMap<String, (u64, AppSource)>>,
}

impl History {
    async fn answer(&self, uri: &Uri, method: &Method) -> Response {
        let path = uri.path();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        match parts.as_slice() {
            [] => match self.applications().await {
                Ok(apps) => server::page(list_page(&apps)),
                Err(e) => error(&e),
            },
            ["api", "v1", "applications"] => match self.applications().await {
                Ok(apps) => server::json(&apps),
                Err(e) => error(&e),
            },
            ["app", id] if !path.ends_with('/') => {
                Redirect::permanent(&format!("/app/{id}/")).into_response()
            }
            ["app", id, rest @ ..] => match self.app(id).await {
                Ok(Some(source)) => server::answer(&source, &rest.join("/"), method),
                Ok(None) => server::not_found(&format!("no application {id} in {}", self.dir)),
                Err(e) => error(&e),
            },
            _ => server::not_found(&format!("no such page: {path}")),
        }
    }

    /// Every application, newest first, replaying logs that changed.
    async fn applications(&self) -> Result<Vec<AppInfo>, DriverError> {
        let (store, logs) = event_log::list_logs(&self.stores, &self.dir).await?;
        let mut apps = Vec::new();
        for log in &logs {
            match self.replayed(&store, log).await {
                Ok(source) => {
                    if let Ok(status) = source.status.lock() {
                        apps.push(status.info().clone());
                    }
                }
                // One bad log does not hide the others.
                Err(e) => tracing::warn!("{}", riffle_planner::report(&e)),
            }
        }
        Ok(apps)
    }

    async fn app(&self, id: &str) -> Result<Option<AppSource>, DriverError> {
        let (store, logs) = event_log::list_logs(&self.stores, &self.dir).await?;
        match logs.iter().find(|l| l.app_id == id) {
            Some(log) => self.replayed(&store, log).await.map(Some),
            None => Ok(None),
        }
    }

    async fn replayed(
        &self,
        store: &Arc<dyn object_store::ObjectStore>,
        log: &LogFile,
    ) -> Result<AppSource, DriverError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((size, source)) = cache.get(&log.app_id)
            && *size == log.size
        {
            return Ok(source.clone());
        }
        let status: AppStatus = event_log::load(store, log).await?;
        let source = AppSource {
            status: Arc::new(Mutex::new(status)),
            updates: None,
            heartbeats: Arc::default(),
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(log.app_id.clone(), (log.size, source.clone()));
        }
        Ok(source)
    }
}

fn error(e: &DriverError) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, riffle_planner::report(e)).into_response()
}

/// The list of applications, as a plain page linking to each.
fn list_page(apps: &[AppInfo]) -> String {
    let mut rows = String::new();
    for app in apps {
        let state = if app.ended_ms.is_some() {
            "completed"
        } else {
            "in progress"
        };
        rows.push_str(&format!(
            "<tr data-app=\"{id}\"><td><a href=\"app/{id}/\">{id}</a></td><td>{master}</td><td>{state}</td><td>{version}</td></tr>",
            id = escape(&app.id),
            master = escape(&app.master),
            version = escape(&app.version),
        ));
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Riffle history</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}}</style></head>\
         <body><h1>Riffle history</h1><table id=\"apps-table\"><thead><tr><th>application</th>\
         <th>master</th><th>state</th><th>version</th></tr></thead><tbody>{rows}</tbody></table>\
         </body></html>"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
