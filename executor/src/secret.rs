//! The shared secret every driver and executor proves on every call.
//!
//! As Spark's `spark.authenticate`, but never optional: an executor jumps to
//! code offsets named in the messages it receives, so any process that can
//! reach its port and pass the check can make it run code. Where the secret
//! comes from, first found wins:
//!
//! 1. `RIFFLE_SECRET` (or `ContextBuilder::secret` on a driver);
//! 2. the file named by `RIFFLE_SECRET_FILE`;
//! 3. `~/.riffle/secret`.
//!
//! A driver that listens for executors started by hand and finds none
//! creates the file (mode 0600, in a 0700 directory), so executors of the
//! same user on the same machine find it; `riffle secret` does the same
//! ahead of time. A `local-cluster` driver makes a random one for its own
//! children and hands it over in their environment, never on their command
//! line (which every user of the machine can read).
//!
//! The value never appears in `Debug` output, logs or error messages.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// The variable holding the secret itself.
pub const SECRET_VAR: &str = "RIFFLE_SECRET";
/// The variable naming a file that holds the secret.
pub const SECRET_FILE_VAR: &str = "RIFFLE_SECRET_FILE";

/// Bytes of randomness in a generated secret (hex-encoded: 64 characters).
const RANDOM_BYTES: usize = 32;

/// A shared secret: printable ASCII (it travels in an HTTP/2 header), at
/// most 1 KiB. `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why no usable secret was found. Messages name the source (variable or
/// file), never the value.
#[derive(Debug, Error)]
pub enum SecretError {
    /// A value that cannot be a secret.
    #[error("the shared secret from {source_name} is unusable: {why}")]
    Invalid {
        /// Where the value came from (`RIFFLE_SECRET`, a file path).
        source_name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A secret file other users could read.
    #[error(
        "the shared secret file {path} is readable or writable by other users (mode {mode:o}): \
         run `chmod 600 {path}`"
    )]
    Exposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or creating the file failed.
    #[error("cannot {action} the shared secret file {path}: {source}")]
    Io {
        /// `read` or `create`.
        action: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No secret anywhere.
    #[error(
        "no shared secret: set RIFFLE_SECRET, point RIFFLE_SECRET_FILE at a file only you can read, \
         or run `riffle secret` to create ~/.riffle/secret (a driver listening for executors \
         creates it too); every driver and executor of a cluster needs the same one"
    )]
    Missing,
    /// The operating system's random source failed.
    #[error("cannot make a random secret: {0}")]
    Random(String),
}

impl Secret {
    /// Checks `value` (from `source_name`, for the error message).
    ///
    /// # Errors
    ///
    /// [`SecretError::Invalid`] for an empty value, one over 1 KiB, or one
    /// with characters an HTTP header cannot carry.
    pub fn new(value: &str, source_name: &str) -> Result<Secret, SecretError> {
        let value = value.trim_end_matches(['\n', '\r']);
        let invalid = |why| SecretError::Invalid {
            source_name: source_name.to_string(),
            why,
        };
        if value.is_empty() {
            return Err(invalid("it is empty"));
        }
        if value.len() > 1024 {
            return Err(invalid("it is longer than 1024 bytes"));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "it holds characters other than printable ASCII without spaces",
            ));
        }
        Ok(Secret(value.into()))
    }

    /// A fresh secret of 32 random bytes from the operating system.
    ///
    /// # Errors
    ///
    /// [`SecretError::Random`] if the operating system has no randomness to
    /// give.
    pub fn random() -> Result<Secret, SecretError> {
        use rand::TryRngCore;
        let mut bytes = [0u8; RANDOM_BYTES];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| SecretError::Random(e.to_string()))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Secret(hex.into()))
    }

    /// The value, for the one place that sends or compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret file this process would use: `RIFFLE_SECRET_FILE`, else
    /// `~/.riffle/secret` (`None` without a home directory).
    pub fn default_file(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
        env(SECRET_FILE_VAR).map(PathBuf::from).or_else(|| {
            env("HOME")
                .filter(|h| !h.is_empty())
                .map(|home| Path::new(&home).join(".riffle").join("secret"))
        })
    }

    /// The secret from `RIFFLE_SECRET`, else from the secret file if it
    /// exists; `None` when there is neither.
    ///
    /// # Errors
    ///
    /// An unusable value, or a file that cannot be read or that other
    /// users can read.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<Secret>, SecretError> {
        if let Some(secret) = Secret::explicit(&env)? {
            return Ok(Some(secret));
        }
        match Secret::default_file(&env) {
            Some(path) if path.exists() => Secret::read_file(&path).map(Some),
            _ => Ok(None),
        }
    }

    /// The secret the user named for this process: `RIFFLE_SECRET`, else
    /// the file named by `RIFFLE_SECRET_FILE` (which must exist). A driver
    /// that starts no server has no use for `~/.riffle/secret`, so it
    /// looks no further than this.
    ///
    /// # Errors
    ///
    /// As [`Secret::from_env`].
    pub fn explicit(env: impl Fn(&str) -> Option<String>) -> Result<Option<Secret>, SecretError> {
        if let Some(value) = env(SECRET_VAR) {
            return Secret::new(&value, SECRET_VAR).map(Some);
        }
        match env(SECRET_FILE_VAR) {
            Some(path) => Secret::read_file(Path::new(&path)).map(Some),
            None => Ok(None),
        }
    }

    /// Reads a secret file, refusing one that other users can read or write.
    ///
    /// # Errors
    ///
    /// [`SecretError::Io`], [`SecretError::Exposed`] or
    /// [`SecretError::Invalid`], each naming the file.
    pub fn read_file(path: &Path) -> Result<Secret, SecretError> {
        let shown = path.display().to_string();
        let io = |source| SecretError::Io {
            action: "read",
            path: shown.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SecretError::Exposed { path: shown, mode });
            }
        }
        if meta.len() > 4096 {
            return Err(SecretError::Invalid {
                source_name: shown,
                why: "the file is larger than 4 KiB",
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Secret::new(&text, &shown)
    }

    /// The secret in `path`, creating the file with a fresh random secret
    /// (mode 0600; its directory 0700) if there is none. Two processes
    /// racing to create it end up with the same secret: the file appears
    /// whole, under its final name, exactly once.
    ///
    /// Returns the secret and whether this call created the file.
    ///
    /// # Errors
    ///
    /// As [`Secret::read_file`], or [`SecretError::Io`] if the file cannot
    /// be created.
    pub fn read_or_create_file(path: &Path) -> Result<(Secret, bool), SecretError> {
        if path.exists() {
            return Secret::read_file(path).map(|s| (s, false));
        }
        let shown = path.display().to_string();
        let io = |source| SecretError::Io {
            action: "create",
            path: shown.clone(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(io)?;
        let secret = Secret::random()?;
        // Written whole under a temporary name, then linked into place:
        // `hard_link` fails if the name exists, so a reader never sees a
        // half-written file and a racing creator never replaces ours.
        static ATTEMPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let attempt = ATTEMPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".secret.{}.{attempt}.tmp", std::process::id()));
        write_private(&tmp, secret.expose()).map_err(io)?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok((secret, true)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Secret::read_file(path).map(|s| (s, false))
            }
            Err(e) => Err(io(e)),
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(value.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_and_never_printed() {
        let s = Secret::new("abc123\n", "RIFFLE_SECRET").unwrap();
        assert_eq!(s.expose(), "abc123");
        assert!(!format!("{s:?} {s}").contains("abc123"));
        for bad in ["", "with space", "tab\there", "é"] {
            let err = Secret::new(bad, "RIFFLE_SECRET").unwrap_err().to_string();
            assert!(err.contains("RIFFLE_SECRET"), "{err}");
            assert!(bad.is_empty() || !err.contains(bad), "{err}");
        }
        let long = "x".repeat(1025);
        assert!(Secret::new(&long, "f").is_err());
    }

    #[test]
    fn random_secrets_differ() {
        let (a, b) = (Secret::random().unwrap(), Secret::random().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 2 * RANDOM_BYTES);
    }

    #[test]
    fn the_file_is_created_private_once_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("secret");
        let (first, created) = Secret::read_or_create_file(&path).unwrap();
        assert!(created);
        let (again, created) = Secret::read_or_create_file(&path).unwrap();
        assert!(!created);
        assert_eq!(first, again);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Secret::read_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600") && err.contains("644"), "{err}");
        assert!(!err.contains(first.expose()), "{err}");
    }

    #[test]
    fn racing_creators_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let secrets: Vec<Secret> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| Secret::read_or_create_file(&path).unwrap().0))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(secrets.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        let (from_file, _) = Secret::read_or_create_file(&file).unwrap();
        let file_s = file.display().to_string();
        let env = |var: &'static str, value: Option<String>| {
            move |name: &str| (name == var).then(|| value.clone()).flatten()
        };
        let s = Secret::from_env(env("RIFFLE_SECRET", Some("direct".into())))
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "direct");
        let s = Secret::from_env(env("RIFFLE_SECRET_FILE", Some(file_s)))
            .unwrap()
            .unwrap();
        assert_eq!(s, from_file);
        let missing = dir.path().join("none").display().to_string();
        let err = Secret::from_env(env("RIFFLE_SECRET_FILE", Some(missing.clone()))).unwrap_err();
        assert!(err.to_string().contains(&missing), "{err}");
        let home = dir.path().display().to_string();
        assert!(Secret::from_env(env("HOME", Some(home))).unwrap().is_none());
    }
}
