//! TLS on the TCP binds (`--certfile`, `--keyfile`, `--ca-certs`, `--cert-reqs`):
//! rustls with the ring provider, TLS 1.2 and 1.3 only, ALPN for HTTP/2.
//!
//! The files are read where they are used: the master reads them at every load of the
//! configuration only to check them (a certificate that does not parse, a key that does
//! not parse or does not match the certificate refuses the boot with exit 2, or keeps
//! the old generation on `HUP`), and each worker reads them when it starts, so a `HUP`
//! serves renewed certificates. Key material never reaches a log or `corral config`
//! (which shows the paths).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which protocols a bind speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HttpVersions {
    /// HTTP/1.1 only.
    #[serde(rename = "1")]
    One,
    /// HTTP/2 only (ALPN `h2`; on plain TCP, prior knowledge).
    #[serde(rename = "2")]
    Two,
    /// Both: ALPN on TLS, and on plain TCP the HTTP/2 preface tells.
    #[serde(rename = "auto")]
    Auto,
}

impl HttpVersions {
    pub const NAMES: &'static [&'static str] = &["1", "2", "auto"];
}

/// Client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertReqs {
    None,
    Optional,
    Required,
}

impl CertReqs {
    pub const NAMES: &'static [&'static str] = &["none", "optional", "required"];
}

/// The TLS files of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    pub reqs: CertReqs,
}

impl Files {
    /// The files `c` names, if TLS is on.
    pub fn of(c: &crate::config::Config) -> Option<Files> {
        Some(Files {
            cert: c.certfile.clone()?,
            key: c.keyfile.clone()?,
            ca: c.ca_certs.clone(),
            reqs: c.cert_reqs,
        })
    }
}

/// A rustls server configuration from `files`, offering `http` by ALPN.
pub fn server_config(files: &Files, http: HttpVersions) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("cannot read certificate file {}: {e}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate file {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "certificate file {} holds no PEM certificate",
            files.cert.display()
        ));
    }
    // The key's own error would not name the file; its bytes are never shown.
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "key file {}: no usable PEM private key ({e})",
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| format!("key file {}: {e}", files.key.display()))?;
    rustls::sign::CertifiedKey::new(certs.clone(), signing)
        .keys_match()
        .map_err(|e| {
            format!(
                "key file {} does not match certificate {}: {e}",
                files.key.display(),
                files.cert.display()
            )
        })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match (files.reqs, &files.ca) {
        (CertReqs::None, _) => builder.with_no_client_auth(),
        (_, None) => return Err("--cert-reqs optional or required needs --ca-certs".into()),
        (reqs, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("cannot read CA file {}: {e}", ca.display()))?
            {
                let c = c.map_err(|e| format!("CA file {}: {e}", ca.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if reqs == CertReqs::Optional {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| e.to_string())?)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = match http {
        HttpVersions::One => vec![b"http/1.1".to_vec()],
        HttpVersions::Two => vec![b"h2".to_vec()],
        HttpVersions::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(Arc::new(cfg))
}

/// The files `--reload` should watch.
pub fn watched(files: &Files) -> Vec<&Path> {
    [
        Some(files.cert.as_path()),
        Some(files.key.as_path()),
        files.ca.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
