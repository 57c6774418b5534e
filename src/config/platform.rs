//! What the platform implies when the configuration does not say: Heroku's defaults
//! (`DYNO` set) and its fail-safe. They sit between the built-in defaults and
//! `corral.toml`, so any setting wins over them.

use super::load::{ConfigError, Origin};
use super::schema::Schema;
use std::collections::BTreeMap;

/// Under Heroku: keep-alive beyond the router's 90 s idle timeout (95 s, as Heroku's own
/// buildpacks set Puma, nginx and Apache, so the router never reuses a connection the
/// dyno is closing), the router's forwarding headers believed (the router is a dyno's
/// only peer), and workers from the dyno's memory rather than the host's CPUs
/// (`WEB_CONCURRENCY` still wins).
pub(super) fn heroku_defaults() -> Vec<(&'static str, toml::Value)> {
    vec![
        ("keep_alive", toml::Value::Integer(95)),
        (
            "forwarded_allow_ips",
            toml::Value::Array(vec![toml::Value::String("*".into())]),
        ),
        ("workers", toml::Value::Integer(i64::from(dyno_workers()))),
    ]
}

/// One worker per 256 MiB of the dyno's memory limit (cgroup), at least 1 and at most
/// 2 × CPUs + 1: 2 on a 512 MB dyno, 4 on 1 GB. The host's CPU count says nothing on a
/// dyno (`nproc` is 8 on the smallest).
fn dyno_workers() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let limit = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok())
    .filter(|b| *b < 1 << 50);
    match limit {
        Some(bytes) => (bytes / (256 << 20)).clamp(1, 2 * cpus + 1) as u32,
        None => cpus as u32,
    }
}

/// Under Heroku an SQLite file lives on the dyno's disk, which is replaced at every
/// restart and deploy: refuse, unless `database.allow_ephemeral` says it is meant.
pub(super) fn heroku_fail_safe(
    schema: &Schema,
    merged: &toml::Table,
    origins: &BTreeMap<&'static str, Origin>,
) -> Result<(), ConfigError> {
    let db = |k: &str| merged.get("database").and_then(|d| d.get(k));
    let sqlite = db("url")
        .and_then(toml::Value::as_str)
        .is_some_and(|u| u.starts_with("sqlite:"));
    if sqlite && db("allow_ephemeral").and_then(toml::Value::as_bool) != Some(true) {
        let key = schema.find("database.url").expect("a core key");
        return Err(ConfigError::bad_value(
            key,
            &origins[key.path],
            "DYNO is set (Heroku) but the database is SQLite: a dyno's disk is wiped at every restart, and every user with it. Attach Heroku Postgres (it sets DATABASE_URL), or set CORRAL_DATABASE_ALLOW_EPHEMERAL=true if losing the data is intended",
        ));
    }
    Ok(())
}
