//! The `Context`: configuration, embedded executors, and dataset sources.

use crate::dataset::ops::{encode_state, vec_source_factory};
use crate::dataset::{Data, Dataset, Node, NodeKind};
use crate::error::DriverError;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use riffle_executor::Executor;
use riffle_planner::function::FnRef;
use riffle_planner::ids::{ExecutorId, ShuffleId};
use riffle_planner::task::{Compression, FileSplit};
use riffle_shuffle::ShuffleStore;
use riffle_shuffle::stores::ObjectStores;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Settings of a driver.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where tasks run: `local` (one slot per core) or `local[N]`.
    pub master: String,
    /// Largest byte range of a plain text file read by one task.
    pub split_size: u64,
    /// Attempts per task before the job fails.
    pub max_attempts: u32,
    /// Shuffle store URL; `None` for a fresh temporary local directory.
    pub shuffle_store: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            master: "local".into(),
            split_size: 64 << 20,
            max_attempts: 4,
            shuffle_store: None,
        }
    }
}

impl Config {
    /// The number of embedded slots a master string asks for.
    pub fn embedded_slots(master: &str) -> Result<usize, DriverError> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        match master {
            "local" | "local[*]" => Ok(cores),
            m => m
                .strip_prefix("local[")
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    DriverError::Config(format!(
                        "unknown master {m:?}: expected `local`, `local[*]` or `local[N]` with N > 0"
                    ))
                }),
        }
    }
}

/// Builds a [`Context`].
#[derive(Debug, Default)]
pub struct ContextBuilder {
    config: Config,
}

impl ContextBuilder {
    /// Sets the master string (`local`, `local[N]`).
    pub fn master(mut self, master: impl Into<String>) -> Self {
        self.config.master = master.into();
        self
    }

    /// Sets the largest byte range of a text file one task reads.
    pub fn split_size(mut self, bytes: u64) -> Self {
        self.config.split_size = bytes.max(1);
        self
    }

    /// Sets the attempts per task.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts.max(1);
        self
    }

    /// Sets the shuffle store URL (`file:///dir`, `memory:///`).
    pub fn shuffle_store(mut self, url: impl Into<String>) -> Self {
        self.config.shuffle_store = Some(url.into());
        self
    }

    /// Starts the context.
    pub fn build(self) -> Result<Context, DriverError> {
        Context::with_config(self.config)
    }
}

/// Summary of the last job a context ran.
#[derive(Debug, Clone, Default)]
pub struct JobSummary {
    /// Stages run.
    pub stages: usize,
    /// Task attempts run (including retries).
    pub tasks: usize,
    /// Records read by sources.
    pub records_read: u64,
    /// Bytes read from files and shuffle.
    pub bytes_read: u64,
    /// Shuffle bytes written.
    pub shuffle_bytes_written: u64,
    /// Input lines that were not valid UTF-8 (replaced characters).
    pub invalid_utf8_lines: u64,
    /// Wall time of the job.
    pub elapsed: Duration,
}

/// The entry point of a Riffle program.
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<ContextInner>,
}

pub(crate) struct ContextInner {
    pub(crate) config: Config,
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) executors: Vec<Arc<Executor>>,
    pub(crate) stores: ObjectStores,
    pub(crate) shuffle: ShuffleStore,
    /// A temporary shuffle directory this context created and removes.
    temp_dir: Option<std::path::PathBuf>,
    next_job: AtomicU32,
    next_shuffle: AtomicU32,
    pub(crate) last_job: Mutex<JobSummary>,
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        if let Some(dir) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Context {
    /// An embedded context with one slot per core.
    pub fn local() -> Result<Context, DriverError> {
        Context::builder().build()
    }

    /// A context for a master string (`local`, `local[N]`).
    pub fn new(master: &str) -> Result<Context, DriverError> {
        Context::builder().master(master).build()
    }

    /// A builder for all settings.
    pub fn builder() -> ContextBuilder {
        ContextBuilder::default()
    }

    fn with_config(config: Config) -> Result<Context, DriverError> {
        let slots = Config::embedded_slots(&config.master)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("riffle-io")
            .enable_all()
            .build()
            .map_err(|e| DriverError::Config(format!("cannot start the I/O runtime: {e}")))?;
        let stores = ObjectStores::default();
        let (shuffle_url, temp_dir) = match &config.shuffle_store {
            Some(url) => (url.clone(), None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "riffle-shuffle-{}-{}",
                    std::process::id(),
                    CONTEXTS.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&dir).map_err(|e| DriverError::Storage {
                    path: dir.display().to_string(),
                    message: e.to_string(),
                })?;
                (dir.display().to_string(), Some(dir))
            }
        };
        let url =
            ObjectStores::to_url(&shuffle_url).map_err(|e| DriverError::Config(e.to_string()))?;
        let (store, prefix) = stores
            .resolve(&url)
            .map_err(|e| DriverError::Config(e.to_string()))?;
        let shuffle = ShuffleStore::new(store, prefix);
        let executor = Executor::new(
            ExecutorId(0),
            slots,
            runtime.handle().clone(),
            stores.clone(),
            shuffle.clone(),
        )
        .map_err(|e| DriverError::Config(e.to_string()))?;
        Ok(Context {
            inner: Arc::new(ContextInner {
                config,
                runtime,
                executors: vec![Arc::new(executor)],
                stores,
                shuffle,
                temp_dir,
                next_job: AtomicU32::new(0),
                next_shuffle: AtomicU32::new(0),
                last_job: Mutex::new(JobSummary::default()),
            }),
        })
    }

    /// The context's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Total task slots over all executors.
    pub fn slots(&self) -> usize {
        self.inner.executors.iter().map(|e| e.slots()).sum()
    }

    /// The summary of the last job run.
    pub fn last_job(&self) -> JobSummary {
        self.inner
            .last_job
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// The object stores this context reads and writes through (register
    /// custom stores here).
    pub fn stores(&self) -> &ObjectStores {
        &self.inner.stores
    }

    pub(crate) fn next_shuffle_id(&self) -> ShuffleId {
        ShuffleId(self.inner.next_shuffle.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn next_job_id(&self) -> riffle_planner::ids::JobId {
        riffle_planner::ids::JobId(self.inner.next_job.fetch_add(1, Ordering::Relaxed))
    }

    /// A dataset of `values`, split into `partitions` slices of nearly equal
    /// size (at least one).
    pub fn parallelize<T: Data>(&self, values: Vec<T>, partitions: usize) -> Dataset<T> {
        let n = partitions.max(1);
        let len = values.len();
        let mut iter = values.into_iter();
        let mut slices = Vec::with_capacity(n);
        let mut error = None;
        for i in 0..n {
            let take = (i + 1) * len / n - i * len / n;
            let slice: Vec<T> = iter.by_ref().take(take).collect();
            match encode_state(&slice) {
                Ok(bytes) => slices.push(bytes),
                Err(e) => error = Some(e.to_string()),
            }
        }
        let kind = match error {
            Some(error) => NodeKind::Invalid {
                error: format!("parallelize: {error}"),
            },
            None => NodeKind::Parallelize {
                op: FnRef::new(vec_source_factory::<T>, Vec::new(), "parallelize"),
                slices,
            },
        };
        Dataset::from_node(
            self.clone(),
            Node {
                label: format!("parallelize({len} elements)"),
                partitions: n,
                kind,
            },
        )
    }

    /// The lines of the text files at `path`: a file, a directory (its
    /// files, except hidden ones starting with `.` or `_`), or a glob
    /// (`logs/*.gz`), as a local path or URL (`file:///...`). Files ending in
    /// `.gz` are decompressed (one task per file); plain files larger than
    /// the split size are read as several byte ranges aligned to line ends.
    pub fn text_file(&self, path: &str) -> Result<Dataset<String>, DriverError> {
        self.text_files(&[path])
    }

    /// Like [`Context::text_file`], over several paths or globs.
    pub fn text_files(&self, paths: &[&str]) -> Result<Dataset<String>, DriverError> {
        let mut files = Vec::new();
        for path in paths {
            files.extend(self.inner.runtime.block_on(self.list_input(path))?);
        }
        let total: u64 = files.iter().map(|(_, size)| size).sum();
        // Aim for at least two splits per slot so both cores stay busy even
        // with a single input file, without going below 1 MiB per split.
        let per_slot = total / (2 * self.slots().max(1) as u64);
        let split = self.inner.config.split_size.min(per_slot.max(1 << 20));
        let mut splits = Vec::new();
        for (url, size) in files {
            if size == 0 {
                continue;
            }
            if url.ends_with(".gz") {
                splits.push(FileSplit {
                    url,
                    start: 0,
                    end: size,
                    size,
                    compression: Compression::Gzip,
                });
                continue;
            }
            let mut start = 0;
            while start < size {
                let end = (start + split).min(size);
                splits.push(FileSplit {
                    url: url.clone(),
                    start,
                    end,
                    size,
                    compression: Compression::None,
                });
                start = end;
            }
        }
        let label = format!("text_file({})", paths.join(", "));
        Ok(Dataset::from_node(
            self.clone(),
            Node {
                label,
                partitions: splits.len(),
                kind: NodeKind::TextFile { splits },
            },
        ))
    }

    /// The files (URL, size) a path, directory or glob names, sorted.
    async fn list_input(&self, path: &str) -> Result<Vec<(String, u64)>, DriverError> {
        let input_err = |message: String| DriverError::Input {
            path: path.to_string(),
            message,
        };
        let url = ObjectStores::to_url(path).map_err(|e| input_err(e.message))?;
        let (store, object) = self
            .inner
            .stores
            .resolve(&url)
            .map_err(|e| input_err(e.message))?;
        let base = format!("{}://{}", url.scheme(), url.authority());
        let file_url = |p: &Path| format!("{base}/{p}");
        let is_glob = object.as_ref().contains(['*', '?', '[', '{']);
        let mut files = Vec::new();
        if is_glob {
            let text = object.as_ref();
            let literal = &text[..text.find(['*', '?', '[', '{']).unwrap_or(text.len())];
            let prefix = Path::from(&literal[..literal.rfind('/').unwrap_or(0)]);
            let glob = globset::GlobBuilder::new(text)
                .literal_separator(true)
                .build()
                .map_err(|e| input_err(format!("bad glob: {e}")))?
                .compile_matcher();
            let listed: Vec<_> = store
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|e| input_err(e.to_string()))?;
            for meta in listed {
                if glob.is_match(meta.location.as_ref()) {
                    files.push((file_url(&meta.location), meta.size));
                }
            }
            if files.is_empty() {
                return Err(input_err("no file matches this pattern".into()));
            }
        } else {
            match store.head(&object).await {
                Ok(meta) => files.push((file_url(&meta.location), meta.size)),
                Err(object_store::Error::NotFound { .. }) => {
                    let listed: Vec<_> = store
                        .list(Some(&object))
                        .try_collect()
                        .await
                        .map_err(|e| input_err(e.to_string()))?;
                    for meta in listed {
                        let name = meta.location.filename().unwrap_or_default();
                        if !name.starts_with('.') && !name.starts_with('_') {
                            files.push((file_url(&meta.location), meta.size));
                        }
                    }
                    if files.is_empty() {
                        return Err(input_err("no such file or directory".into()));
                    }
                }
                Err(e) => return Err(input_err(e.to_string())),
            }
        }
        files.sort();
        Ok(files)
    }
}

static CONTEXTS: AtomicU32 = AtomicU32::new(0);
