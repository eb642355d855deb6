//! `riffle certs`: a certificate authority and certificates for the driver
//! and the executors of a test or small cluster, ready for the
//! `RIFFLE_TLS_*` variables (see `riffle_executor::tls`).
//!
//! Files written to the output directory (keys with mode 0600):
//!
//! | file | what |
//! | --- | --- |
//! | `ca.pem`, `ca-key.pem` | the CA: `RIFFLE_TLS_CA` everywhere; keep its key to sign more |
//! | `driver.pem`, `driver-key.pem` | the driver's certificate and key |
//! | `executor.pem`, `executor-key.pem` | the executors' certificate and key |
//!
//! Both leaf certificates may serve and connect (server and client
//! authentication, for mutual TLS) and name `localhost`, `127.0.0.1`, `::1`
//! and every `--host` given, so one set works on loopback and on the hosts
//! of a small cluster. A production cluster uses certificates from its own
//! CA instead.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The driver's certificate and key.
    pub driver: (PathBuf, PathBuf),
    /// The executors' certificate and key.
    pub executor: (PathBuf, PathBuf),
}

/// Why certificates could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// A host name that cannot go in a certificate.
    #[error("--host {host:?} cannot be named in a certificate: {message}")]
    BadHost {
        /// The host.
        host: String,
        /// rcgen's reason.
        message: String,
    },
    /// Key or certificate generation failed.
    #[error("cannot generate the {what}: {message}")]
    Generate {
        /// Which key or certificate.
        what: &'static str,
        /// rcgen's reason.
        message: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Certificates live a year: long enough for a test or demo cluster,
/// short enough that a forgotten one expires.
const VALID_DAYS: i64 = 365;

/// Writes a CA and driver and executor certificates valid for `hosts`
/// (plus `localhost`, `127.0.0.1` and `::1`) into `out`, creating it. An
/// existing file of the same name is replaced.
///
/// # Errors
///
/// [`CertsError`], naming the host or file.
pub fn generate(out: &Path, hosts: &[String]) -> Result<CertFiles, CertsError> {
    let generate = |what: &'static str| {
        move |e: rcgen::Error| CertsError::Generate {
            what,
            message: e.to_string(),
        }
    };
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    for host in hosts {
        if !names.contains(host) {
            // Checked one by one, so the error names the bad one.
            CertificateParams::new(vec![host.clone()]).map_err(|e| CertsError::BadHost {
                host: host.clone(),
                message: e.to_string(),
            })?;
            names.push(host.clone());
        }
    }
    // A minute of slack for clocks a little behind ours.
    let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let until = now + time::Duration::days(VALID_DAYS);

    let ca_key = KeyPair::generate().map_err(generate("CA key"))?;
    let mut ca =
        CertificateParams::new(Vec::<String>::new()).map_err(generate("CA certificate"))?;
    ca.distinguished_name = name("Riffle cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now;
    ca.not_after = until;
    let ca_cert = ca
        .self_signed(&ca_key)
        .map_err(generate("CA certificate"))?;
    let issuer = Issuer::new(ca, ca_key);

    std::fs::create_dir_all(out).map_err(|source| CertsError::Write {
        path: out.display().to_string(),
        source,
    })?;
    let ca_path = out.join("ca.pem");
    write(&ca_path, &ca_cert.pem(), false)?;
    write(&out.join("ca-key.pem"), &issuer.key().serialize_pem(), true)?;

    let leaf = |role: &'static str| -> Result<(PathBuf, PathBuf), CertsError> {
        let key = KeyPair::generate().map_err(generate("leaf key"))?;
        let mut params = CertificateParams::new(names.clone()).map_err(generate("certificate"))?;
        params.distinguished_name = name(&format!("Riffle {role}"));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = now;
        params.not_after = until;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(generate("certificate"))?;
        let cert_path = out.join(format!("{role}.pem"));
        let key_path = out.join(format!("{role}-key.pem"));
        write(&cert_path, &cert.pem(), false)?;
        write(&key_path, &key.serialize_pem(), true)?;
        Ok((cert_path, key_path))
    };
    let driver = leaf("driver")?;
    let executor = leaf("executor")?;
    Ok(CertFiles {
        ca: ca_path,
        driver,
        executor,
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), CertsError> {
    use std::io::Write;
    let fail = |source| CertsError::Write {
        path: path.display().to_string(),
        source,
    };
    // Replaced, not truncated in place: a key file must never exist with
    // looser permissions, even for a moment.
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)
}
