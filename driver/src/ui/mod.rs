//! Seeing what a job is doing: the driver's web UI and JSON API, the
//! event log, and the history server that replays event logs (Spark's
//! port-4040 UI, `spark.eventLog.dir` and history server).
//!
//! - [`status`]: the application's jobs, stages, tasks and executors,
//!   folded from scheduler events; the API's answers.
//! - [`event_log`]: every event as versioned JSON lines, one file per
//!   application, and their replay.
//! - `server`: the routes (page, API, live updates) and the shared-secret
//!   gate.
//! - [`history`]: `riffle history DIR`.
//!
//! ```text
//!   event loop --on_event--> UiListener --apply--> AppStatus <--GET-- browser / scripts
//!                                   \--record--> EventLogWriter --> DIR/app-...(.inprogress)
//!   riffle history DIR: replay(DIR/app-...) --> AppStatus <--GET-- browser
//! ```

pub mod event_log;
pub mod history;
pub(crate) mod server;
pub mod status;

use crate::error::DriverError;
use crate::scheduler::events::{EventListener, SchedulerEvent};
use event_log::EventLogWriter;
use server::{AppSource, Gate, Heartbeats};
use status::{AppInfo, AppStatus};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a stopping driver waits for its event log to be written.
const LOG_FLUSH_WAIT: Duration = Duration::from_secs(10);

/// Web UI settings (Spark's `spark.ui.enabled`, `spark.ui.port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiConfig {
    /// Whether the driver serves the UI (`RIFFLE_UI=0` turns it off).
    pub enabled: bool,
    /// The address it listens on (`RIFFLE_UI_BIND`, default 127.0.0.1).
    /// Anything but loopback requires the shared secret; without one the
    /// UI stays off.
    pub bind: IpAddr,
    /// The first port tried (`RIFFLE_UI_PORT`, default 4040); if taken, the
    /// next of up to 16 more, as Spark does; 0 picks any free port.
    pub port: u16,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enabled: true,
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 4040,
        }
    }
}

/// Feeds the UI's status and the event log from the event loop.
pub(crate) struct UiListener {
    status: Option<Arc<Mutex<AppStatus>>>,
    log: Option<EventLogWriter>,
    updates: watch::Sender<Option<u32>>,
}

impl EventListener for UiListener {
    fn on_event(&mut self, event: &SchedulerEvent) {
        let time = server::now_ms();
        if let Some(status) = &self.status
            && let Ok(mut status) = status.lock()
        {
            status.apply(time, event);
        }
        if let Some(log) = &self.log {
            log.record(time, event);
        }
        if self.status.is_some() {
            self.updates.send_replace(event_job(event));
        }
    }
}

fn event_job(event: &SchedulerEvent) -> Option<u32> {
    match event {
        SchedulerEvent::JobStarted { job, .. }
        | SchedulerEvent::JobEnded { job, .. }
        | SchedulerEvent::StageSubmitted { job, .. }
        | SchedulerEvent::StageCompleted { job, .. } => Some(job.0),
        SchedulerEvent::TaskStarted { task, .. } | SchedulerEvent::TaskEnded { task, .. } => {
            Some(task.job.0)
        }
        SchedulerEvent::ExecutorAdded { .. } | SchedulerEvent::ExecutorRemoved { .. } => None,
    }
}

/// The UI and event log of a running driver.
pub(crate) struct LiveUi {
    /// The UI's address, when it is served.
    pub(crate) url: Option<String>,
    log: Option<(EventLogWriter, tokio::task::JoinHandle<()>)>,
    listener: Option<UiListener>,
    heartbeats: Arc<Mutex<Option<Heartbeats>>>,
}

impl LiveUi {
    /// Starts what `ui` and `event_log` ask for on `runtime`: the server
    /// (bound now, so the URL is known) and the log's first line. The UI
    /// is left off, with a warning, if no port is free or it would listen
    /// beyond loopback without `secret`.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        stores: &riffle_shuffle::stores::ObjectStores,
        ui: &UiConfig,
        event_log: Option<&str>,
        secret: Option<&str>,
        master: &str,
    ) -> Result<LiveUi, DriverError> {
        let started_ms = server::now_ms();
        let info = AppInfo {
            id: format!("app-{started_ms}-{}", std::process::id()),
            name: "riffle".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            master: master.to_string(),
            started_ms,
            ended_ms: None,
            live: true,
        };
        let log = match event_log {
            Some(dir) => Some(EventLogWriter::start(runtime, stores, dir, &info)?),
            None => None,
        };
        let (updates, rx) = watch::channel(None);
        let heartbeats: Arc<Mutex<Option<Heartbeats>>> = Arc::default();
        let mut status = None;
        let mut url = None;
        if ui.enabled {
            let secret = secret.filter(|s| !s.is_empty());
            if !ui.bind.is_loopback() && secret.is_none() {
                tracing::warn!(
                    bind = %ui.bind,
                    "web UI off: listening beyond loopback needs the shared secret (RIFFLE_SECRET)"
                );
            } else {
                match crate::runtime::block_on(runtime, server::bind(ui.bind, ui.port)) {
                    Ok(listener) => {
                        let addr = listener
                            .local_addr()
                            .map_err(|e| DriverError::Config(format!("web UI address: {e}")))?;
                        let shared = Arc::new(Mutex::new(AppStatus::new(info.clone())));
                        let source = AppSource {
                            status: shared.clone(),
                            updates: Some(rx),
                            heartbeats: heartbeats.clone(),
                        };
                        server::serve(runtime, listener, Gate::new(secret), move |uri, method| {
                            let source = source.clone();
                            Box::pin(async move { server::answer(&source, uri.path(), &method) })
                        });
                        let shown = format!("http://{addr}");
                        tracing::info!("web UI at {shown}");
                        url = Some(shown);
                        status = Some(shared);
                    }
                    Err(e) => tracing::warn!(
                        "web UI off: cannot listen on {}:{} or the 16 ports after it: {e}",
                        ui.bind,
                        ui.port
                    ),
                }
            }
        }
        let listener = (status.is_some() || log.is_some()).then(|| UiListener {
            status,
            log: log.as_ref().map(|(w, _)| w.clone()),
            updates,
        });
        Ok(LiveUi {
            url,
            log,
            listener,
            heartbeats,
        })
    }

    /// Where the executors page gets last heartbeats from, once the
    /// executors are known (the UI starts before them).
    pub(crate) fn set_heartbeats(&self, heartbeats: Option<Heartbeats>) {
        if let Ok(mut h) = self.heartbeats.lock() {
            *h = heartbeats;
        }
    }

    /// The listener the scheduler must be given, once.
    pub(crate) fn take_listener(&mut self) -> Option<UiListener> {
        self.listener.take()
    }

    /// Whether anything listens to scheduler events.
    pub(crate) fn wants_events(&self) -> bool {
        self.listener.is_some()
    }

    /// Ends the event log (its last line, its final name), waiting up to
    /// [`LOG_FLUSH_WAIT`].
    pub(crate) fn stop(&mut self, runtime: &tokio::runtime::Handle) {
        if let Some((writer, task)) = self.log.take() {
            writer.finish(server::now_ms());
            // The timer must be made inside the runtime.
            let _ = crate::runtime::block_on(runtime, async {
                tokio::time::timeout(LOG_FLUSH_WAIT, task).await
            });
        }
    }
}
