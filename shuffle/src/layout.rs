//! Where shuffle objects live in the store.

use crate::error::ShuffleError;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use riffle_planner::ids::{JobId, ShuffleId};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A shuffle store: an object store plus the prefix Riffle may use in it.
#[derive(Clone, Debug)]
pub struct ShuffleStore {
    /// The object store (local directory, memory, S3, ...).
    pub store: Arc<dyn ObjectStore>,
    /// The prefix all shuffle objects go under.
    pub prefix: Path,
    /// How map outputs are compressed.
    pub compression: ShuffleCompression,
}

/// The compression of shuffle streams. Readers take either, so processes
/// that disagree still read each other's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShuffleCompression {
    /// Plain Arrow IPC.
    None,
    /// LZ4 frames per buffer.
    Lz4,
}

impl ShuffleCompression {
    /// The compression for a store at `url`: `setting` (`lz4` or `none`,
    /// from `RIFFLE_SHUFFLE_COMPRESSION`) if given; otherwise none for a
    /// local directory or memory, where bytes are cheap and LZ4 cost ~10%
    /// of TPC-H's time, and LZ4 for remote stores, where bytes travel.
    pub fn resolve(setting: Option<&str>, url: &url::Url) -> Result<Self, ShuffleError> {
        match setting.map(str::to_ascii_lowercase).as_deref() {
            Some("lz4") => Ok(ShuffleCompression::Lz4),
            Some("none") => Ok(ShuffleCompression::None),
            Some(other) => Err(ShuffleError::encode_message(format!(
                "RIFFLE_SHUFFLE_COMPRESSION is {other:?}; expected lz4 or none"
            ))),
            None if matches!(url.scheme(), "file" | "memory") => Ok(ShuffleCompression::None),
            None => Ok(ShuffleCompression::Lz4),
        }
    }
}

impl ShuffleStore {
    /// A store using `prefix` inside `store`, compressing with LZ4.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        ShuffleStore {
            store,
            prefix,
            compression: ShuffleCompression::Lz4,
        }
    }

    /// This store with map outputs compressed by `compression`.
    pub fn with_compression(mut self, compression: ShuffleCompression) -> Self {
        self.compression = compression;
        self
    }

    /// The data object key of one map task attempt. Keys are spread over 256
    /// hashed prefixes so that object stores that partition by key prefix
    /// (S3) do not funnel a whole job through one partition.
    pub fn data_path(&self, job: JobId, shuffle: ShuffleId, map: u32, attempt: u32) -> Path {
        let mut hasher = rustc_hash::FxHasher::default();
        (job, shuffle, map).hash(&mut hasher);
        let h = hasher.finish() % 256;
        self.prefix
            .clone()
            .join(format!("{h:02x}"))
            .join(job.to_string())
            .join(shuffle.to_string())
            .join(format!("map-{map}"))
            .join(format!("attempt-{attempt}.data"))
    }

    /// The index object key that goes with a data object key.
    pub fn index_path(data_path: &Path) -> Path {
        Path::from(format!(
            "{}.index",
            data_path.as_ref().trim_end_matches(".data")
        ))
    }

    /// Deletes the data and index objects of the given map outputs. Missing
    /// objects are fine: deletion must be idempotent.
    pub async fn delete_outputs(&self, data_paths: &[String]) -> Result<(), ShuffleError> {
        for data in data_paths {
            let data = Path::from(data.as_str());
            for path in [Self::index_path(&data), data] {
                match self.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(ShuffleError::storage(&path, e)),
                }
            }
        }
        Ok(())
    }
}
