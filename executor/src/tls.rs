//! TLS for every gRPC channel between a driver and its executors (rustls,
//! through tonic), optionally mutual.
//!
//! Every process is both a server (the driver serves `DriverService`, an
//! executor `ExecutorService`) and a client of the other, so each needs the
//! same three files, named by variables as Spark's `spark.ssl.*` settings
//! name keystores:
//!
//! | variable | what |
//! | --- | --- |
//! | `RIFFLE_TLS_CERT` | this process's certificate chain (PEM) |
//! | `RIFFLE_TLS_KEY` | its private key (PEM) |
//! | `RIFFLE_TLS_CA` | the CA certificate that signed every peer's certificate (PEM) |
//! | `RIFFLE_TLS_MUTUAL` | `1`: servers also demand a client certificate signed by that CA |
//!
//! `riffle certs --out DIR` writes a CA and certificates for a test or small
//! cluster. With TLS configured, peer URLs are `https://`; a plain
//! `http://` one is refused with a message saying so, never silently sent
//! in plain text (and the other way round).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The variable naming this process's certificate chain.
pub const TLS_CERT_VAR: &str = "RIFFLE_TLS_CERT";
/// The variable naming this process's private key.
pub const TLS_KEY_VAR: &str = "RIFFLE_TLS_KEY";
/// The variable naming the cluster's CA certificate.
pub const TLS_CA_VAR: &str = "RIFFLE_TLS_CA";
/// `1` to require client certificates (mutual TLS).
pub const TLS_MUTUAL_VAR: &str = "RIFFLE_TLS_MUTUAL";

/// A TLS configuration could not be used. Messages name the file or
/// variable, never key material.
#[derive(Debug, Error)]
pub enum TlsError {
    /// Some of the three files are named, not all.
    #[error(
        "TLS needs {missing} as well as {given}: set all of RIFFLE_TLS_CERT, RIFFLE_TLS_KEY and RIFFLE_TLS_CA, or none"
    )]
    Incomplete {
        /// The variables that are set.
        given: String,
        /// The variables that are not.
        missing: String,
    },
    /// A file could not be read.
    #[error("cannot read the TLS {what} {path}: {source}")]
    Read {
        /// `certificate`, `key` or `CA certificate`.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no PEM block of the expected kind.
    #[error("the TLS {what} {path} holds no PEM \"{label}\" block")]
    NotPem {
        /// `certificate`, `key` or `CA certificate`.
        what: &'static str,
        /// The file.
        path: String,
        /// The label looked for (`CERTIFICATE`, `PRIVATE KEY`).
        label: &'static str,
    },
    /// `RIFFLE_TLS_MUTUAL` is neither `0` nor `1`.
    #[error("{TLS_MUTUAL_VAR}={0:?} is not 0 or 1")]
    BadMutual(String),
    /// rustls refused the certificates or key.
    #[error("the TLS files ({cert}, {key}, {ca}) are not usable: {message}")]
    Unusable {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// The CA file.
        ca: String,
        /// rustls's reason.
        message: String,
    },
    /// A URL's scheme does not match whether TLS is on.
    #[error("{0}")]
    Scheme(String),
}

/// This process's TLS identity, the CA its peers must be signed by, and
/// whether servers demand client certificates. `Debug` shows the file
/// names only.
#[derive(Clone)]
pub struct TlsConfig {
    files: Arc<TlsFiles>,
    identity: Identity,
    ca: Certificate,
}

/// Where a [`TlsConfig`] was read from: what a `local-cluster` driver hands
/// its children (paths, never key material, in their environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This process's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA certificate of the cluster (PEM).
    pub ca: PathBuf,
    /// Servers demand client certificates signed by the CA.
    pub mutual: bool,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TlsConfig").field(&*self.files).finish()
    }
}

fn read_pem(path: &Path, what: &'static str, labels: &[&'static str]) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    if labels
        .iter()
        .any(|label| text.contains(&format!("-----BEGIN {label}-----")))
    {
        Ok(bytes)
    } else {
        Err(TlsError::NotPem {
            what,
            path: path.display().to_string(),
            label: labels[0],
        })
    }
}

impl TlsConfig {
    /// Reads and checks the three files.
    ///
    /// # Errors
    ///
    /// [`TlsError::Read`], [`TlsError::NotPem`] or [`TlsError::Unusable`],
    /// naming the file.
    pub fn from_files(files: TlsFiles) -> Result<TlsConfig, TlsError> {
        let cert = read_pem(&files.cert, "certificate", &["CERTIFICATE"])?;
        let key = read_pem(
            &files.key,
            "key",
            &["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"],
        )?;
        let ca = read_pem(&files.ca, "CA certificate", &["CERTIFICATE"])?;
        let config = TlsConfig {
            files: Arc::new(files),
            identity: Identity::from_pem(cert, key),
            ca: Certificate::from_pem(ca),
        };
        // Building the server side parses every file: a bad key or
        // certificate fails here, at start-up, naming the files.
        tonic::transport::Server::builder()
            .tls_config(config.server())
            .map_err(|e| config.unusable(e))?;
        Ok(config)
    }

    /// The configuration named by `RIFFLE_TLS_CERT`, `RIFFLE_TLS_KEY`,
    /// `RIFFLE_TLS_CA` and `RIFFLE_TLS_MUTUAL`; `None` when none is set.
    ///
    /// # Errors
    ///
    /// [`TlsError::Incomplete`] when only some are set, else as
    /// [`TlsConfig::from_files`].
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<TlsConfig>, TlsError> {
        let vars = [TLS_CERT_VAR, TLS_KEY_VAR, TLS_CA_VAR];
        let values: Vec<Option<String>> = vars.iter().map(|v| env(v)).collect();
        let mutual = match env(TLS_MUTUAL_VAR).as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => return Err(TlsError::BadMutual(other.to_string())),
        };
        if values.iter().all(Option::is_none) {
            return if mutual {
                Err(TlsError::Incomplete {
                    given: TLS_MUTUAL_VAR.into(),
                    missing: vars.join(", "),
                })
            } else {
                Ok(None)
            };
        }
        let names = |set: bool| {
            vars.iter()
                .zip(&values)
                .filter(|(_, v)| v.is_some() == set)
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (Some(cert), Some(key), Some(ca)) =
            (values[0].clone(), values[1].clone(), values[2].clone())
        else {
            return Err(TlsError::Incomplete {
                given: names(true),
                missing: names(false),
            });
        };
        TlsConfig::from_files(TlsFiles {
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
            mutual,
        })
        .map(Some)
    }

    /// The files this configuration was read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The variables that give a child process the same configuration.
    pub fn to_vars(&self) -> Vec<(&'static str, String)> {
        let f = &self.files;
        vec![
            (TLS_CERT_VAR, f.cert.display().to_string()),
            (TLS_KEY_VAR, f.key.display().to_string()),
            (TLS_CA_VAR, f.ca.display().to_string()),
            (TLS_MUTUAL_VAR, if f.mutual { "1" } else { "0" }.to_string()),
        ]
    }

    /// The server side: this identity, and with mutual TLS a demand for a
    /// client certificate signed by the CA.
    pub fn server(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new().identity(self.identity.clone());
        if self.files.mutual {
            config.client_ca_root(self.ca.clone())
        } else {
            config
        }
    }

    /// The client side: trust only the CA (not the system's roots), and
    /// present this identity (servers without mutual TLS ignore it).
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
    }

    fn unusable(&self, e: impl std::fmt::Display) -> TlsError {
        let f = &self.files;
        TlsError::Unusable {
            cert: f.cert.display().to_string(),
            key: f.key.display().to_string(),
            ca: f.ca.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// The URL scheme of peers: `https` with TLS, `http` without.
pub fn scheme(tls: Option<&TlsConfig>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

/// Refuses a peer URL whose scheme does not match the TLS setting, so a
/// configured process never sends plain text (and an unconfigured one
/// never tries TLS it cannot verify). `whose` names the URL in the message
/// (`the driver URL`, `executor-3's address`).
///
/// # Errors
///
/// [`TlsError::Scheme`] saying what to change.
pub fn check_url(url: &str, tls: Option<&TlsConfig>, whose: &str) -> Result<(), TlsError> {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
    match (scheme, tls.is_some()) {
        ("https", true) | ("http", false) => Ok(()),
        ("http", true) => Err(TlsError::Scheme(format!(
            "{whose} {url} is plain http://, but TLS is configured (RIFFLE_TLS_*): use https:// so nothing travels in plain text"
        ))),
        ("https", false) => Err(TlsError::Scheme(format!(
            "{whose} {url} is https://, but TLS is not configured: set RIFFLE_TLS_CERT, RIFFLE_TLS_KEY and RIFFLE_TLS_CA (see `riffle certs`)"
        ))),
        _ => Err(TlsError::Scheme(format!(
            "{whose} {url:?} is not an http:// or https:// URL"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_and_bad_settings_are_named() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(TlsConfig::from_env(env(&[])).unwrap().is_none());
        let err = TlsConfig::from_env(env(&[(TLS_CERT_VAR, "/c")])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("RIFFLE_TLS_KEY, RIFFLE_TLS_CA")
                && msg.contains("as well as RIFFLE_TLS_CERT"),
            "{msg}"
        );
        let err = TlsConfig::from_env(env(&[(TLS_MUTUAL_VAR, "yes")])).unwrap_err();
        assert!(err.to_string().contains("\"yes\""), "{err}");
        let err = TlsConfig::from_env(env(&[
            (TLS_CERT_VAR, "/nonexistent/c.pem"),
            (TLS_KEY_VAR, "/nonexistent/k.pem"),
            (TLS_CA_VAR, "/nonexistent/ca.pem"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/c.pem"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let err = TlsConfig::from_files(TlsFiles {
            cert: junk.clone(),
            key: junk.clone(),
            ca: junk.clone(),
            mutual: false,
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("junk.pem") && err.to_string().contains("CERTIFICATE"),
            "{err}"
        );
    }

    #[test]
    fn url_schemes_must_match_the_setting() {
        assert!(check_url("http://127.0.0.1:1", None, "the driver URL").is_ok());
        let err = check_url("https://h:1", None, "the driver URL").unwrap_err();
        assert!(err.to_string().contains("TLS is not configured"), "{err}");
        assert!(check_url("ftp://h:1", None, "x").is_err());
        assert!(check_url("h:1", None, "x").is_err());
    }
}
