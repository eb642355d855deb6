//! Output commit: a job's files appear only when the whole job succeeded.
//!
//! Tasks write `dir/_temporary/JOB/part-NNNNN-attempt-A{suffix}` (every
//! attempt its own name, so duplicates never collide); the driver renames
//! the winner of each partition to `part-NNNNN{suffix}` and writes
//! `_SUCCESS` (Hadoop's `FileOutputCommitter` protocol, version 1). On
//! failure or cancellation the job's `_temporary/JOB` is removed; a
//! directory another job committed to meanwhile is refused. Hive's `INSERT
//! OVERWRITE DIRECTORY` replaces a directory's contents with one file.

use crate::error::DriverError;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use riffle_planner::ids::JobId;
use riffle_planner::task::TaskOutput;
use riffle_shuffle::stores::ObjectStores;
use std::sync::Arc;

/// Moves each partition's file from `_temporary` to `part-NNNNN` plus
/// `suffix` (partition order is output order), then marks the directory
/// complete with `_SUCCESS` and removes `_temporary`.
pub(crate) async fn commit_files(
    stores: &ObjectStores,
    dir: &str,
    job: JobId,
    outputs: &[TaskOutput],
    suffix: &str,
) -> Result<(), DriverError> {
    let (store, base) = output_store(stores, dir)?;
    let success = base.clone().join("_SUCCESS");
    // Another job committed here since this one checked the directory.
    if store.head(&success).await.is_ok() {
        abort_files(stores, dir, job).await;
        return Err(DriverError::OutputExists {
            dir: dir.to_string(),
        });
    }
    for (p, output) in outputs.iter().enumerate() {
        let TaskOutput::Written { path } = output else {
            return Err(DriverError::Internal(
                "a writing task returned no file".into(),
            ));
        };
        let url = url::Url::parse(path).map_err(|e| DriverError::Internal(e.to_string()))?;
        let from = object_store::path::Path::from_url_path(url.path())
            .map_err(|e| DriverError::Internal(e.to_string()))?;
        let to = base.clone().join(format!("part-{p:05}{suffix}"));
        store
            .rename(&from, &to)
            .await
            .map_err(|e| storage(path, e))?;
    }
    store
        .put(&success, PutPayload::default())
        .await
        .map_err(|e| storage(dir, e))?;
    abort_files(stores, dir, job).await;
    Ok(())
}

/// Removes `job`'s uncommitted files under `dir/_temporary/JOB` (best
/// effort); other jobs writing the same directory keep theirs.
pub(crate) async fn abort_files(stores: &ObjectStores, dir: &str, job: JobId) {
    let Ok((store, base)) = output_store(stores, dir) else {
        return;
    };
    let temp = base.join("_temporary").join(job.to_string());
    let listed: Vec<_> = store.list(Some(&temp)).collect().await;
    for meta in listed.into_iter().flatten() {
        let _ = store.delete(&meta.location).await;
    }
    // The local store leaves empty directories behind; remove them so no
    // trace of the attempt stays visible (`_temporary` only once empty).
    if let Ok(url) = url::Url::parse(dir)
        && url.scheme() == "file"
        && let Ok(path) = url.to_file_path()
    {
        let _ = std::fs::remove_dir_all(path.join("_temporary").join(job.to_string()));
        let _ = std::fs::remove_dir(path.join("_temporary"));
    }
}

/// Replaces everything under `dir` with one file `000000_0` holding
/// `text` (Hive's `INSERT OVERWRITE DIRECTORY`, written by the driver).
pub(crate) async fn overwrite_directory(
    stores: &ObjectStores,
    dir: &str,
    text: String,
) -> Result<(), DriverError> {
    let url = ObjectStores::to_url(dir).map_err(DriverError::store)?;
    let (store, prefix) = stores.resolve(&url).map_err(DriverError::store)?;
    let old: Vec<_> = store.list(Some(&prefix)).collect().await;
    for meta in old {
        let meta = meta.map_err(|e| storage(dir, e))?;
        store
            .delete(&meta.location)
            .await
            .map_err(|e| storage(dir, e))?;
    }
    store
        .put(&prefix.clone().join("000000_0"), PutPayload::from(text))
        .await
        .map_err(|e| storage(dir, e))?;
    Ok(())
}

fn storage(path: &str, e: object_store::Error) -> DriverError {
    DriverError::storage(path, "committing output", e)
}

fn output_store(
    stores: &ObjectStores,
    dir: &str,
) -> Result<(Arc<dyn ObjectStore>, object_store::path::Path), DriverError> {
    let url = url::Url::parse(dir).map_err(|e| DriverError::Internal(e.to_string()))?;
    stores.resolve(&url).map_err(DriverError::store)
}
