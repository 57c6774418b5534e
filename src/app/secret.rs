//! The signing secret: required and strong in production, generated once in development.
//!
//! Production means `--production`, or Heroku (`DYNO` set), or systemd (`INVOCATION_ID`
//! set). There, an HMAC algorithm without `SECRET_KEY`, with one shorter than 32 bytes, or
//! with Django's `django-insecure-` placeholder, refuses to start (exit 2). In
//! development a random key is generated on first use and kept, with mode 0600, beside
//! the SQLite database (`corral.db.secret`) or in `corral.secret` for other databases, so
//! tokens survive restarts; a warning says so. The key itself is never logged.

use super::settings::AuthConfig;
use crate::config::{Config, ConfigError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tracing::warn;

const MIN_SECRET_BYTES: usize = 32;

/// `corral check`: the rules and key files of `prepare`, without creating anything.
pub(super) fn check(c: &Config) -> Result<(), ConfigError> {
    let auth = AuthConfig::of(c)?;
    rules(c, &auth)?;
    if !auth.is_hmac() {
        return key_files(&auth);
    }
    if auth.secret_key.is_none() {
        // What `prepare` would load or create: it must be usable, or creatable.
        let path = dev_key_path(c);
        inspect(&path).map_err(|e| {
            ConfigError::new(format!(
                "cannot keep the development secret key in {}: {e}",
                path.display()
            ))
        })?;
    }
    Ok(())
}

/// Parses the PEM key files of an asymmetric algorithm (errors name the key and file).
fn key_files(auth: &AuthConfig) -> Result<(), ConfigError> {
    super::auth::keys::load(auth)
        .map(drop)
        .map_err(|e| ConfigError::new(e.to_string()))
}

fn rules(c: &Config, auth: &AuthConfig) -> Result<(), ConfigError> {
    if !auth.is_hmac() {
        return Ok(());
    }
    let prod = c.production_reason();
    match (&auth.secret_key, prod) {
        (None, Some(why)) => Err(ConfigError::new(format!(
            "SECRET_KEY is not set; a production server ({why}) will not start without one. Set SECRET_KEY to at least {MIN_SECRET_BYTES} random bytes, for example from `openssl rand -base64 48`"
        ))),
        (Some(k), Some(why)) if k.len() < MIN_SECRET_BYTES => Err(ConfigError::new(format!(
            "SECRET_KEY is {} bytes long; a production server ({why}) needs at least {MIN_SECRET_BYTES} (RFC 7518 §3.2)",
            k.len()
        ))),
        (Some(k), Some(why)) if k.starts_with("django-insecure-") => {
            Err(ConfigError::new(format!("SECRET_KEY is Django's development placeholder (django-insecure-…); a production server ({why}) refuses it")))
        }
        _ => Ok(()),
    }
}

/// The master's hook: enforce the rules, or load/create the development key. Key files
/// are parsed here too, so a bad one stops `serve` with exit 2 (and a HUP keeps the old
/// generation) instead of failing in every worker.
pub(super) fn prepare(c: &mut Config) -> Result<(), ConfigError> {
    let mut auth = AuthConfig::of(c)?;
    rules(c, &auth)?;
    if !auth.is_hmac() {
        return key_files(&auth);
    }
    match &auth.secret_key {
        Some(k) if k.len() < MIN_SECRET_BYTES => {
            warn!(
                "SECRET_KEY is {} bytes long; use at least {MIN_SECRET_BYTES} random bytes",
                k.len()
            );
        }
        Some(_) => {}
        None => {
            let path = dev_key_path(c);
            let (key, created) = load_or_create(&path).map_err(|e| {
                ConfigError::new(format!(
                    "cannot keep the development secret key in {}: {e}",
                    path.display()
                ))
            })?;
            warn!(
                "SECRET_KEY is not set: signing with the development key {} {} (mode 0600). Set SECRET_KEY in production",
                if created { "created in" } else { "kept in" },
                path.display()
            );
            auth.secret_key = Some(key);
            c.app.set(&auth)?;
        }
    }
    Ok(())
}

fn dev_key_path(c: &Config) -> PathBuf {
    match c.database.url.sqlite_path() {
        Some(db) => {
            let mut s = db.as_os_str().to_owned();
            s.push(".secret");
            PathBuf::from(s)
        }
        None => PathBuf::from("corral.secret"),
    }
}

/// What is at the development key's path.
enum KeyFile {
    /// A usable key.
    Key(String),
    /// Nothing: `prepare` creates it.
    Missing,
}

/// Looks at the development key file without creating anything: a usable key, nothing,
/// or an error that says what is wrong (a dangling link, a directory, no usable key).
fn inspect(path: &Path) -> std::io::Result<KeyFile> {
    let link = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if dir.is_dir() {
                nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).map_err(|e| {
                    std::io::Error::other(format!(
                        "the directory {} is not writable ({e}), so the key cannot be created; set SECRET_KEY",
                        dir.display()
                    ))
                })?;
            }
            return Ok(KeyFile::Missing);
        }
        Err(e) => return Err(e),
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && link.file_type().is_symlink() => {
            return Err(std::io::Error::other(
                "it is a symbolic link to a file that does not exist; remove it, or set SECRET_KEY",
            ))
        }
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        return Err(std::io::Error::other(
            "it is a directory, not a key file; remove it, or set SECRET_KEY",
        ));
    }
    let k = std::fs::read_to_string(path)?;
    if k.trim().len() < MIN_SECRET_BYTES {
        return Err(std::io::Error::other(
            "the file exists but holds no usable key; delete it to generate a new one",
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        warn!(
            "{} is readable by other users (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    Ok(KeyFile::Key(k.trim().to_string()))
}

/// The development key: the one kept at `path`, or a new one written there.
fn load_or_create(path: &Path) -> std::io::Result<(String, bool)> {
    if let KeyFile::Key(k) = inspect(path)? {
        return Ok((k, false));
    }
    let mut bytes = [0u8; 48];
    getrandom(&mut bytes)?;
    let key = URL_SAFE_NO_PAD.encode(bytes);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(key.as_bytes())?;
            f.write_all(b"\n")?;
            Ok((key, true))
        }
        // Another process created it first: use theirs (once; a second failure is a real
        // problem, not a race).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match inspect(path)? {
            KeyFile::Key(k) => Ok((k, false)),
            KeyFile::Missing => Err(e),
        },
        Err(e) => Err(e),
    }
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use argon2::password_hash::rand_core::RngCore;
    argon2::password_hash::rand_core::OsRng
        .try_fill_bytes(buf)
        .map_err(std::io::Error::other)
}
