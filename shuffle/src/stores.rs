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
    /// Turns a local path or URL into a URL: plain paths (and `file:/x`)
    /// become absolute `file://` URLs, with `.` and `..` resolved.
    pub fn to_url(path_or_url: &str) -> Result<Url, StoreUrlError> {
        let err = |message: &str| StoreUrlError::new(path_or_url, message);
        if path_or_url.contains("://") {
            return Url::parse(path_or_url).map_err(|e| err("not a valid URL").caused_by(e));
        }
        // `file:/tmp/x`, as Hadoop and Hive print local paths.
        let local = path_or_url.strip_prefix("file:").unwrap_or(path_or_url);
        let path = std::path::Path::new(local);
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| err("no current directory").caused_by(e))?
                .join(path)
        };
        // `a/../b` is `b` (lexically, as a shell user expects; object
        // paths may not contain `..`).
        let mut normal = std::path::PathBuf::new();
        for part in absolute.components() {
            match part {
                std::path::Component::ParentDir => {
                    normal.pop();
                }
                std::path::Component::CurDir => {}
                other => normal.push(other),
            }
        }
        Url::from_file_path(&normal).map_err(|()| err("not a valid file path"))
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

    /// The files (URL, size) that a path, directory or glob names, sorted,
    /// by Hadoop's input conventions (`FileInputFormat`'s hidden-file
    /// filter):
    /// - a path naming a file is that file, whatever its name;
    /// - a directory is every file below it, except where a path component
    ///   below the directory starts with `_` or `.` (`_SUCCESS`,
    ///   `_temporary/`, `.staging/`, `.part-0.crc`): those are markers and
    ///   leftovers of other tools, not data. A directory holding nothing
    ///   else is an empty input, not an error;
    /// - a glob (`logs/*.gz`) is every file it matches, with the same
    ///   filter on the components the glob itself does not spell out.
    ///
    /// Errors: a path that names nothing, a glob matching no file, a bad
    /// glob, or a listing the store refuses.
    pub async fn list_files(&self, path: &str) -> Result<Vec<(String, u64)>, StoreUrlError> {
        use futures::TryStreamExt;
        use object_store::ObjectStoreExt;
        let err = |message: &str| StoreUrlError::new(path, message);
        let url = Self::to_url(path)?;
        let (store, object) = self.resolve(&url)?;
        let list = |prefix: Path| {
            let store = store.clone();
            async move {
                store
                    .list(Some(&prefix))
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(|e| err("listing failed").caused_by(e))
            }
        };
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
            let pattern: Vec<&str> = text.split('/').collect();
            for meta in list(prefix).await? {
                let matched = glob.is_match(meta.location.as_ref());
                // A component the glob spells with a leading `_` or `.` was
                // asked for; any other such component is hidden.
                let hidden = meta.location.parts().enumerate().any(|(i, part)| {
                    let part = part.as_ref();
                    is_hidden(part) && pattern.get(i).is_none_or(|p| !p.starts_with(&part[..1]))
                });
                if matched && !hidden {
                    files.push((object_url(&url, &meta.location), meta.size));
                }
            }
            if files.is_empty() {
                return Err(err("no file matches this pattern"));
            }
        } else {
            match store.head(&object).await {
                Ok(meta) => files.push((object_url(&url, &meta.location), meta.size)),
                Err(object_store::Error::NotFound { .. }) => {
                    let depth = object.parts().count();
                    let listed = list(object.clone()).await?;
                    let exists = !listed.is_empty() || is_local_dir(&url);
                    for meta in listed {
                        if !meta
                            .location
                            .parts()
                            .skip(depth)
                            .any(|p| is_hidden(p.as_ref()))
                        {
                            files.push((object_url(&url, &meta.location), meta.size));
                        }
                    }
                    if !exists {
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

/// Hadoop's hidden-file rule: a name starting with `_` or `.` is not data.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.')
}

/// A local directory (possibly empty, which no object listing shows).
fn is_local_dir(url: &Url) -> bool {
    url.scheme() == "file" && url.to_file_path().is_ok_and(|p| p.is_dir())
}

/// The URL of `object` in the store `base` names. Each component is
/// percent-encoded, so that a file named `c#d.log`, `g?h.log` or
/// `e%20g.log` comes back to exactly that object when the URL is parsed
/// (`Path::from_url_path` decodes it).
pub fn object_url(base: &Url, object: &Path) -> String {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut segments) = url.path_segments_mut() {
        segments
            .clear()
            .extend(object.parts().map(|p| p.as_ref().to_string()));
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    /// Creates `files` (relative paths) under a new directory.
    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, file.as_bytes()).unwrap();
        }
        dir
    }

    /// The listed files, relative to `dir`.
    async fn listed(dir: &tempfile::TempDir, path: &str) -> Result<Vec<String>, StoreUrlError> {
        let stores = ObjectStores::default();
        let root = ObjectStores::to_url(dir.path().to_str().unwrap()).unwrap();
        let files = stores
            .list_files(&format!("{}{path}", dir.path().display()))
            .await?;
        Ok(files
            .into_iter()
            .map(|(url, _)| url.strip_prefix(root.as_str()).unwrap().to_string())
            .collect())
    }

    #[tokio::test]
    async fn hidden_components_below_the_listed_directory_are_skipped() {
        // The temporary directory's own name starts with `.`: only
        // components below the listed path count.
        let dir = tree(&[
            "d/part-00000",
            "d/sub/part-00001",
            "d/_temporary/0/_temporary/attempt_1/part-00002",
            "d/.staging/part-00003",
            "d/_logs/history",
            "d/.part-00000.crc",
            "d/_SUCCESS",
        ]);
        assert_eq!(
            listed(&dir, "/d").await.unwrap(),
            ["/d/part-00000", "/d/sub/part-00001"]
        );
        // Named explicitly, a hidden file is read.
        assert_eq!(
            listed(&dir, "/d/_logs/history").await.unwrap(),
            ["/d/_logs/history"]
        );
        // A glob skips hidden components it does not spell out.
        assert_eq!(listed(&dir, "/d/*").await.unwrap(), ["/d/part-00000"]);
        assert_eq!(listed(&dir, "/d/_*").await.unwrap(), ["/d/_SUCCESS"]);
        assert_eq!(
            listed(&dir, "/d/**/part-*").await.unwrap(),
            ["/d/part-00000", "/d/sub/part-00001"]
        );
    }

    #[tokio::test]
    async fn a_directory_of_markers_is_an_empty_input_and_nothing_is_an_error() {
        let dir = tree(&["only-markers/_SUCCESS", "only-markers/.crc"]);
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        assert!(listed(&dir, "/only-markers").await.unwrap().is_empty());
        assert!(listed(&dir, "/empty").await.unwrap().is_empty());
        let missing = listed(&dir, "/missing").await.unwrap_err();
        assert!(
            missing
                .to_string()
                .ends_with("/missing: no such file or directory"),
            "{missing}"
        );
        let none = listed(&dir, "/only-markers/*.log").await.unwrap_err();
        assert!(none.to_string().contains("no file matches"), "{none}");
    }

    #[test]
    fn local_paths_become_file_urls() {
        let url = |p: &str| ObjectStores::to_url(p).unwrap().to_string();
        assert_eq!(url("/a/b/../c/./d"), "file:///a/c/d");
        assert_eq!(url("file:/tmp/x"), "file:///tmp/x");
        assert_eq!(url("file:///tmp/x"), "file:///tmp/x");
        assert_eq!(url("/a b/c#d"), "file:///a%20b/c%23d");
    }

    #[tokio::test]
    async fn file_names_are_names_not_urls() {
        let names = ["a b.log", "c#d.log", "e%20g.log", "g?h.log", "ü.log"];
        let dir = tree(
            &names
                .map(|n| format!("d/{n}"))
                .each_ref()
                .map(|s| s.as_str()),
        );
        let stores = ObjectStores::default();
        let files = stores
            .list_files(dir.path().join("d").to_str().unwrap())
            .await
            .unwrap();
        assert_eq!(files.len(), names.len());
        for (url, size) in files {
            let (store, path) = stores.resolve(&Url::parse(&url).unwrap()).unwrap();
            let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
            assert_eq!(bytes.len() as u64, size, "{url}");
            let name = std::str::from_utf8(&bytes).unwrap();
            assert_eq!(path.filename(), name.strip_prefix("d/"), "{url}");
        }
    }
}
