//! Errors raised while a pipeline runs inside a task.
//!
//! Errors keep their causes as `source` values rather than flattened text,
//! so that code can inspect them (a storage error stays an
//! `object_store::Error`) and a report can name the root cause. Following the
//! Rust API guidelines (C-GOOD-ERR), a `Display` says only what failed at its
//! own level; [`report`] joins the whole chain, as `anyhow`'s `{:#}` does.

use std::error::Error as StdError;
use thiserror::Error;

/// A cause kept as a value: any error that can cross threads.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a pipeline operator failed. The variants say whose fault it is, which
/// the scheduler uses to decide whether a retry can help.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// Reading an input failed (I/O, storage); a retry may succeed.
    #[error("reading {path}")]
    Input {
        /// The file or object that could not be read.
        path: String,
        /// The storage or I/O error.
        #[source]
        source: BoxError,
    },
    /// The input itself is bad (a corrupt gzip file): retrying cannot help.
    #[error("bad input in {path}")]
    BadInput {
        /// The file or object that is bad.
        path: String,
        /// What is wrong with it (for gzip, the decoder's error).
        #[source]
        source: BoxError,
    },
    /// Shuffle data could not be written, or read for a reason other than
    /// a lost block (the store failed); a retry may succeed.
    #[error("shuffle I/O failed")]
    Shuffle {
        /// The shuffle error, which names the object.
        #[source]
        source: BoxError,
    },
    /// A block of a parent shuffle is missing or damaged: its map task must
    /// be rerun.
    #[error("fetch failed for {shuffle} map partition {map_partition} ({data_path})")]
    FetchFailed {
        /// The shuffle read.
        shuffle: crate::ids::ShuffleId,
        /// The map partition whose output is unreadable.
        map_partition: u32,
        /// The data object that could not be read.
        data_path: String,
        /// Why: the object is missing, or a block failed its checksum.
        #[source]
        source: BoxError,
    },
    /// Encoding or decoding a record or a descriptor failed.
    #[error("codec: {context}")]
    Codec {
        /// What was being encoded or decoded, and as what.
        context: String,
        /// The encoder's error, if one caused it.
        #[source]
        source: Option<BoxError>,
    },
    /// A shipped function could not be instantiated.
    #[error("function {name}: {message}")]
    Function {
        /// The function's descriptive name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The task was killed (its job was cancelled or the attempt was
    /// superseded); its sources stopped early, so whatever the sink saw is
    /// incomplete and must not be committed.
    #[error("task killed")]
    Killed,
    /// An operator over its memory reservation could not spill: spilling
    /// is off, the spill directory cannot be written, or the cap on spill
    /// space was reached. Retryable: another executor may have room.
    #[error(
        "{operator} needed to spill and could not (memory: RIFFLE_EXECUTOR_MEMORY; spill space: RIFFLE_SPILL_DIR, RIFFLE_SPILL_MAX)"
    )]
    Spill {
        /// The operator that was spilling (`reduce_by_key`, `sort_by`, ...).
        operator: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A bug in Riffle; please report it.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

impl PipelineError {
    /// A codec error caused by `source`, in `context` ("decoding a record").
    pub fn codec(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        PipelineError::Codec {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A codec error with no underlying error: `context` says it all.
    pub fn codec_message(context: impl Into<String>) -> Self {
        PipelineError::Codec {
            context: context.into(),
            source: None,
        }
    }
}

/// `error` and its chain of causes as one line, outermost first:
/// `"reading s3://b/k: Generic S3 error: connection reset"`.
///
/// A cause whose text its parent already printed (many foreign errors put
/// their source in their own message) is not repeated.
pub fn report(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = e.source();
    }
    out
}

/// The message of a caught panic (`&str` or `String` payloads; anything
/// else is named as such).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_every_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = PipelineError::Input {
            path: "file:///data/a.log".into(),
            source: Box::new(io),
        };
        assert_eq!(report(&err), "reading file:///data/a.log: no such file");
        // A cause that already printed its own source is not repeated.
        #[derive(Debug, Error)]
        #[error("outer: {source}")]
        struct Echo {
            source: std::io::Error,
        }
        let echo = Echo {
            source: std::io::Error::other("root"),
        };
        assert_eq!(report(&echo), "outer: root");
    }
}
