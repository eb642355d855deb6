//! The event log: every scheduler event of an application as versioned
//! JSON lines, one file per application (Spark's `spark.eventLog.dir`),
//! which `riffle history` replays.
//!
//! A file is named by the application id and ends in `.inprogress` until
//! the application ends, then it is renamed (local directories) or
//! rewritten under its final name and the in-progress object deleted
//! (object stores, which cannot append or rename). Each line is one
//! [`LogLine`]: `{"version":1,"time_ms":...,"record":"Event","event":{...}}`.
//! Readers refuse a version they do not know, naming the file and line,
//! and skip a torn last line of an in-progress file.

use super::status::{AppInfo, AppStatus};
use crate::error::DriverError;
use crate::scheduler::events::SchedulerEvent;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use riffle_shuffle::stores::ObjectStores;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

/// Suffix of a log whose application has not ended.
pub const IN_PROGRESS: &str = ".inprogress";

/// How often an object-store log is rewritten while the application runs.
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// One line of an event log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    /// The format version ([`VERSION`]).
    pub version: u32,
    /// When it happened, in Unix milliseconds.
    pub time_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub record: LogRecord,
}

/// What a line records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "record")]
pub enum LogRecord {
    /// The first line: which application this is.
    ApplicationStarted {
        /// The application id (also the file name).
        app_id: String,
        /// The master it ran on.
        master: String,
        /// The Riffle version that wrote the log.
        riffle_version: String,
    },
    /// A scheduler event.
    Event {
        /// The event.
        event: SchedulerEvent,
    },
    /// The last line: the driver stopped.
    ApplicationEnded,
}

/// Writes an application's log from a background task; `record` never
/// blocks the scheduler, and does not wake the writer either: lines queue
/// up and the writer takes them every [`DRAIN_INTERVAL`] (sooner when
/// [`DRAIN_BACKLOG`] are waiting, or at `finish`). Waking it per event cost
/// a thread switch per event, 2 per task, which on 2 cores slowed short
/// tasks by several percent.
#[derive(Clone)]
pub(crate) struct EventLogWriter {
    tx: mpsc::UnboundedSender<Option<LogLine>>,
    wake: Arc<Wake>,
}

/// What makes the writer drain before its next tick.
#[derive(Default)]
struct Wake {
    /// Lines sent since the writer last drained.
    queued: AtomicUsize,
    notify: Notify,
}

/// How often the writer takes queued lines.
const DRAIN_INTERVAL: Duration = Duration::from_millis(200);

/// Queued lines that make the writer drain before its tick, bounding the
/// memory of the queue.
const DRAIN_BACKLOG: usize = 4096;

impl EventLogWriter {
    /// Starts writing `info`'s log under `dir` (a local directory or an
    /// object-store URL) on `runtime`. Fails if the directory cannot be
    /// resolved or the first line cannot be written.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        stores: &ObjectStores,
        dir: &str,
        info: &AppInfo,
    ) -> Result<(EventLogWriter, tokio::task::JoinHandle<()>), DriverError> {
        let url = ObjectStores::to_url(dir).map_err(DriverError::input)?;
        let (store, prefix) = stores.resolve(&url).map_err(DriverError::store)?;
        let local = url.to_file_path().ok();
        let first = LogLine {
            version: VERSION,
            time_ms: info.started_ms,
            record: LogRecord::ApplicationStarted {
                app_id: info.id.clone(),
                master: info.master.clone(),
                riffle_version: info.version.clone(),
            },
        };
        let mut sink = match local {
            Some(dir) => {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    DriverError::storage(dir.display().to_string(), "creating the event log", e)
                })?;
                Sink::local(dir.join(&info.id))?
            }
            None => Sink::Store {
                store,
                path: prefix.clone().join(info.id.as_str()),
                text: String::new(),
                dirty: false,
            },
        };
        sink.push(&first)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let wake = Arc::new(Wake::default());
        let task = runtime.spawn(write_loop(sink, rx, wake.clone()));
        Ok((EventLogWriter { tx, wake }, task))
    }

    /// Records `event`, which happened at `time_ms`.
    pub(crate) fn record(&self, time_ms: u64, event: &SchedulerEvent) {
        let _ = self.tx.send(Some(LogLine {
            version: VERSION,
            time_ms,
            record: LogRecord::Event {
                event: event.clone(),
            },
        }));
        if self.wake.queued.fetch_add(1, Ordering::Relaxed) + 1 == DRAIN_BACKLOG {
            self.wake.notify.notify_one();
        }
    }

    /// Writes the last line and gives the log its final name; the task
    /// returned by `start` ends once that is done.
    pub(crate) fn finish(&self, time_ms: u64) {
        let _ = self.tx.send(Some(LogLine {
            version: VERSION,
            time_ms,
            record: LogRecord::ApplicationEnded,
        }));
        let _ = self.tx.send(None);
        self.wake.notify.notify_one();
    }
}

async fn write_loop(
    mut sink: Sink,
    mut rx: mpsc::UnboundedReceiver<Option<LogLine>>,
    wake: Arc<Wake>,
) {
    let mut drain = tokio::time::interval(DRAIN_INTERVAL);
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flushed = tokio::time::Instant::now();
    let warn = |e: DriverError| tracing::warn!("event log: {}", riffle_planner::report(&e));
    'run: loop {
        tokio::select! {
            _ = drain.tick() => {}
            () = wake.notify.notified() => {}
        }
        wake.queued.store(0, Ordering::Relaxed);
        loop {
            match rx.try_recv() {
                Ok(Some(line)) => {
                    if let Err(e) = sink.push(&line) {
                        warn(e);
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                // The driver stopped (`finish`), or dropped the writer.
                Ok(None) | Err(mpsc::error::TryRecvError::Disconnected) => break 'run,
            }
        }
        if flushed.elapsed() >= FLUSH_INTERVAL {
            flushed = tokio::time::Instant::now();
            if let Err(e) = sink.flush().await {
                warn(e);
            }
        }
    }
    if let Err(e) = sink.complete().await {
        warn(e);
    }
}

enum Sink {
    /// A local file, appended to line by line.
    Local {
        file: std::io::BufWriter<std::fs::File>,
        path: std::path::PathBuf,
    },
    /// An object store: the whole text, rewritten on each flush.
    Store {
        store: Arc<dyn ObjectStore>,
        path: object_store::path::Path,
        text: String,
        dirty: bool,
    },
}

impl Sink {
    fn local(path: std::path::PathBuf) -> Result<Sink, DriverError> {
        let in_progress = in_progress(&path);
        let file = std::fs::File::create(&in_progress).map_err(|e| {
            DriverError::storage(
                in_progress.display().to_string(),
                "creating the event log",
                e,
            )
        })?;
        Ok(Sink::Local {
            file: std::io::BufWriter::new(file),
            path,
        })
    }

    fn push(&mut self, line: &LogLine) -> Result<(), DriverError> {
        let mut text = serde_json::to_string(line)
            .map_err(|e| DriverError::Internal(format!("encoding an event: {e}")))?;
        text.push('\n');
        match self {
            Sink::Local { file, path } => {
                use std::io::Write;
                file.write_all(text.as_bytes()).map_err(|e| {
                    DriverError::storage(path.display().to_string(), "writing the event log", e)
                })
            }
            Sink::Store {
                text: all, dirty, ..
            } => {
                all.push_str(&text);
                *dirty = true;
                Ok(())
            }
        }
    }

    async fn flush(&mut self) -> Result<(), DriverError> {
        match self {
            Sink::Local { file, path } => {
                use std::io::Write;
                file.flush().map_err(|e| {
                    DriverError::storage(path.display().to_string(), "writing the event log", e)
                })
            }
            Sink::Store {
                store,
                path,
                text,
                dirty,
            } if *dirty => {
                let target = object_store::path::Path::from(format!("{path}{IN_PROGRESS}"));
                store
                    .put(&target, PutPayload::from(text.clone()))
                    .await
                    .map_err(|e| {
                        DriverError::storage(target.as_ref(), "writing the event log", e)
                    })?;
                *dirty = false;
                Ok(())
            }
            Sink::Store { .. } => Ok(()),
        }
    }

    async fn complete(mut self) -> Result<(), DriverError> {
        self.flush().await?;
        match self {
            Sink::Local { file, path } => {
                drop(file);
                std::fs::rename(in_progress(&path), &path).map_err(|e| {
                    DriverError::storage(path.display().to_string(), "renaming the event log", e)
                })
            }
            Sink::Store {
                store, path, text, ..
            } => {
                store
                    .put(&path, PutPayload::from(text))
                    .await
                    .map_err(|e| DriverError::storage(path.as_ref(), "writing the event log", e))?;
                let target = object_store::path::Path::from(format!("{path}{IN_PROGRESS}"));
                match store.delete(&target).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(DriverError::storage(
                        target.as_ref(),
                        "deleting the in-progress event log",
                        e,
                    )),
                }
            }
        }
    }
}

fn in_progress(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(IN_PROGRESS);
    name.into()
}

/// One application's log, found in a log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// The application id (the file name without `.inprogress`).
    pub app_id: String,
    /// The object's location in its store.
    pub location: object_store::path::Path,
    /// Whether the application was still running when last written.
    pub in_progress: bool,
    /// Size in bytes (to notice it grew).
    pub size: u64,
}

/// The logs under `dir` (local directory or object-store URL), newest
/// application first. A log present both in progress and complete (a
/// crash between the two writes) is listed once, complete.
pub async fn list_logs(
    stores: &ObjectStores,
    dir: &str,
) -> Result<(Arc<dyn ObjectStore>, Vec<LogFile>), DriverError> {
    let url = ObjectStores::to_url(dir).map_err(DriverError::input)?;
    let (store, prefix) = stores.resolve(&url).map_err(DriverError::store)?;
    let metas: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| DriverError::storage(dir, "listing event logs", e))?;
    let mut logs: Vec<LogFile> = Vec::new();
    for meta in metas {
        let Some(name) = meta.location.filename() else {
            continue;
        };
        let (app_id, in_progress) = match name.strip_suffix(IN_PROGRESS) {
            Some(id) => (id.to_string(), true),
            None => (name.to_string(), false),
        };
        if !app_id.starts_with("app-") {
            continue;
        }
        if let Some(existing) = logs.iter_mut().find(|l| l.app_id == app_id) {
            if existing.in_progress && !in_progress {
                existing.location = meta.location.clone();
                existing.in_progress = false;
                existing.size = meta.size;
            }
            continue;
        }
        logs.push(LogFile {
            app_id,
            location: meta.location.clone(),
            in_progress,
            size: meta.size,
        });
    }
    logs.sort_by(|a, b| b.app_id.cmp(&a.app_id));
    Ok((store, logs))
}

/// Replays the log text of `name` into an application status. Fails on a
/// line that is not a log line of a known version, naming `name` and the
/// line; a torn last line (an in-progress log) is skipped.
pub fn replay(name: &str, text: &str) -> Result<AppStatus, DriverError> {
    let bad = |line: usize, message: String| DriverError::Input {
        path: name.to_string(),
        message: format!("event log line {line}: {message}"),
        source: None,
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut status: Option<AppStatus> = None;
    for (i, text) in lines.iter().enumerate() {
        let number = i + 1;
        let version = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("version").and_then(|v| v.as_u64()));
        let line: LogLine = match (version, serde_json::from_str::<LogLine>(text)) {
            (Some(v), _) if v != u64::from(VERSION) => {
                return Err(bad(
                    number,
                    format!("format version {v}; this build reads version {VERSION}"),
                ));
            }
            (_, Ok(line)) => line,
            // A torn last line: the writer was stopped mid-line.
            (_, Err(_)) if number == lines.len() && !text.ends_with('}') => break,
            (_, Err(e)) => return Err(bad(number, e.to_string())),
        };
        match (line.record, status.as_mut()) {
            (
                LogRecord::ApplicationStarted {
                    app_id,
                    master,
                    riffle_version,
                },
                None,
            ) => {
                status = Some(AppStatus::new(AppInfo {
                    id: app_id,
                    name: "riffle".into(),
                    version: riffle_version,
                    master,
                    started_ms: line.time_ms,
                    ended_ms: None,
                    live: false,
                }));
            }
            (LogRecord::Event { event }, Some(s)) => s.apply(line.time_ms, &event),
            (LogRecord::ApplicationEnded, Some(s)) => s.end(line.time_ms),
            (_, None) => {
                return Err(bad(
                    number,
                    "the log does not start with ApplicationStarted".into(),
                ));
            }
            (LogRecord::ApplicationStarted { .. }, Some(_)) => {
                return Err(bad(number, "a second ApplicationStarted".into()));
            }
        }
    }
    status.ok_or_else(|| bad(0, "the log is empty".into()))
}

/// Reads and replays one log.
pub async fn load(store: &Arc<dyn ObjectStore>, log: &LogFile) -> Result<AppStatus, DriverError> {
    let bytes = store
        .get(&log.location)
        .await
        .map_err(|e| DriverError::storage(log.location.as_ref(), "reading the event log", e))?
        .bytes()
        .await
        .map_err(|e| DriverError::storage(log.location.as_ref(), "reading the event log", e))?;
    let text = String::from_utf8_lossy(&bytes);
    replay(log.location.as_ref(), &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use riffle_planner::ids::ExecutorId;

    #[test]
    fn a_log_in_an_object_store_is_completed_under_its_final_name() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let stores = ObjectStores::default();
        let info = AppInfo {
            id: "app-1-2".into(),
            name: "riffle".into(),
            version: "0".into(),
            master: "local".into(),
            started_ms: 1,
            ended_ms: None,
            live: true,
        };
        let dir = "memory://logs/dir";
        let (writer, task) = EventLogWriter::start(rt.handle(), &stores, dir, &info).unwrap();
        writer.record(
            5,
            &SchedulerEvent::ExecutorAdded {
                executor: ExecutorId(1),
                slots: 2,
                address: "127.0.0.1:7".into(),
            },
        );
        writer.finish(9);
        rt.block_on(task).unwrap();
        let (store, logs) = rt.block_on(list_logs(&stores, dir)).unwrap();
        assert_eq!(logs.len(), 1, "{logs:?}");
        assert_eq!(logs[0].app_id, "app-1-2");
        assert!(!logs[0].in_progress, "the in-progress object was deleted");
        let app = rt.block_on(load(&store, &logs[0])).unwrap();
        assert_eq!(app.info().ended_ms, Some(9));
        assert_eq!(app.executors()[0].address, "127.0.0.1:7");
    }
}
