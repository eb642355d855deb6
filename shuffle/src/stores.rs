//! Resolving object-store URLs to stores, with one store per bucket/root.

use object_store::ObjectStore;
use object_store::path::Path;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use thiserror::Error;
use url::Url;

/// A URL that names no usable object store.
#[derive(Debug, Error)]
#[error("{url}: {message}")]
pub struct StoreUrlError {
    /// The URL (or path) given.
    pub url: String,
    /// Why it cannot be used.
    pub message: String,
    /// The store's or parser's error, if one caused it.
    #[source]
    pub source: Option<riffle_planner::BoxError>,
}

impl StoreUrlError {
    fn new(url: impl Into<String>, message: impl Into<String>) -> Self {
        StoreUrlError {
            url: url.into(),
            message: message.into(),
            source: None,
        }
    }

    fn caused_by(mut self, source: impl Into<riffle_planner::BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }
}

/// Object stores by `scheme://authority`, created on first use and shared,
/// so that every file of one bucket (or the in-memory store of a test) goes
/// through one client.
#[derive(Default, Debug, Clone)]
pub struct ObjectStores {
    stores: Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
}

impl ObjectStores {
    /// Turns a local path or URL into a URL: plain paths become absolute
    /// `file://` URLs.
    pub fn to_url(path_or_url: &str) -> Result<Url, StoreUrlError> {
        let err = |message: &str| StoreUrlError::new(path_or_url, message);
        if path_or_url.contains("://") {
            return Url::parse(path_or_url).map_err(|e| err("not a valid URL").caused_by(e));
        }
        let path = std::path::Path::new(path_or_url);
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| err("no current directory").caused_by(e))?
                .join(path)
        };
        Url::from_file_path(&absolute).map_err(|()| err("not a valid file path"))
    }

    /// The store serving `url` and the object path inside it.
    pub fn resolve(&self, url: &Url) -> Result<(Arc<dyn ObjectStore>, Path), StoreUrlError> {
        let err = |message: &str| StoreUrlError::new(url.as_str(), message);
        let key = format!("{}://{}", url.scheme(), url.authority());
        let path = Path::from_url_path(url.path())
            .map_err(|e| err("not a valid object path").caused_by(e))?;
        let mut stores = self
            .stores
            .lock()
            .map_err(|_| err("store table poisoned"))?;
        if let Some(store) = stores.get(&key) {
            return Ok((store.clone(), path));
        }
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            // The root store, so that `file:///a/b` maps to object path `a/b`.
            "file" => Arc::new(object_store::local::LocalFileSystem::new()),
            "memory" => Arc::new(object_store::memory::InMemory::new()),
            // Endpoint, region and credentials from the usual AWS_*
            // environment variables (AWS_ENDPOINT, AWS_REGION,
            // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP).
            "s3" | "s3a" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url.as_str())
                    .build()
                    .map_err(|e| err("cannot open the S3 store").caused_by(e))?,
            ),
            other => {
                let (store, _) = object_store::parse_url(url)
                    .map_err(|e| err(&format!("unsupported scheme {other}")).caused_by(e))?;
                Arc::from(store)
            }
        };
        stores.insert(key, store.clone());
        Ok((store, path))
    }

    /// The files (URL, size) that a path, directory or glob names, sorted:
    /// a file; a directory's files except hidden ones (`.x`, `_x`); or the
    /// files matching a glob (`logs/*.gz`). Naming nothing is an error.
    pub async fn list_files(&self, path: &str) -> Result<Vec<(String, u64)>, StoreUrlError> {
        use futures::TryStreamExt;
        use object_store::ObjectStoreExt;
        let err = |message: &str| StoreUrlError::new(path, message);
        let url = Self::to_url(path)?;
        let (store, object) = self.resolve(&url)?;
        let base = format!("{}://{}", url.scheme(), url.authority());
        let file_url = |p: &Path| format!("{base}/{p}");
        let text = object.as_ref().to_string();
        let mut files = Vec::new();
        if let Some(first) = text.find(['*', '?', '[', '{']) {
            let literal = &text[..first];
            let prefix = Path::from(&literal[..literal.rfind('/').unwrap_or(0)]);
            let glob = globset::GlobBuilder::new(&text)
                .literal_separator(true)
                .build()
                .map_err(|e| err("bad glob").caused_by(e))?
                .compile_matcher();
            let listed: Vec<_> = store
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|e| err("listing failed").caused_by(e))?;
            for meta in listed {
                if glob.is_match(meta.location.as_ref()) {
                    files.push((file_url(&meta.location), meta.size));
                }
            }
            if files.is_empty() {
                return Err(err("no file matches this pattern"));
            }
        } else {
            match store.head(&object).await {
                Ok(meta) => files.push((file_url(&meta.location), meta.size)),
                Err(object_store::Error::NotFound { .. }) => {
                    let listed: Vec<_> = store
                        .list(Some(&object))
                        .try_collect()
                        .await
                        .map_err(|e| err("listing failed").caused_by(e))?;
                    for meta in listed {
                        let name = meta.location.filename().unwrap_or_default();
                        if !name.starts_with('.') && !name.starts_with('_') {
                            files.push((file_url(&meta.location), meta.size));
                        }
                    }
                    if files.is_empty() {
                        return Err(err("no such file or directory"));
                    }
                }
                Err(e) => return Err(err("cannot read").caused_by(e)),
            }
        }
        files.sort();
        Ok(files)
    }

    /// Registers a store for `scheme://authority` (tests, custom clients).
    pub fn register(&self, url: &Url, store: Arc<dyn ObjectStore>) {
        if let Ok(mut stores) = self.stores.lock() {
            stores.insert(format!("{}://{}", url.scheme(), url.authority()), store);
        }
    }
}
