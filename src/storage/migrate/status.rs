//! Where each migration stands: what the binary knows joined with what the database
//! recorded, and the guard that refuses to go on past a failure or drift.

use super::history::{Applied, Conn};
use super::source::Migration;
use super::{label, MigrateError, Target};

/// Where a migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Applied,
    Pending,
    /// Applied, but its file has changed since.
    Drifted,
    /// Applied, but this binary does not know it.
    Missing,
    Failed,
    /// Started outside a transaction and never finished (the process died).
    Running,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Drifted => "drifted",
            State::Missing => "missing",
            State::Failed => "failed",
            State::Running => "running",
        }
    }
}

/// One line of `migrate status`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub version: i64,
    pub name: String,
    pub state: State,
    pub no_transaction: bool,
    pub applied: Option<Applied>,
}

/// Joins what the binary knows with what the database recorded.
pub fn compare(known: &[Migration], rows: &[Applied]) -> Vec<Entry> {
    let mut out: Vec<Entry> = known
        .iter()
        .map(|m| {
            let row = rows.iter().find(|r| r.version == m.version);
            let state = match row {
                None => State::Pending,
                Some(r) if r.state == "failed" => State::Failed,
                Some(r) if r.state == "running" => State::Running,
                Some(r) if r.checksum != m.checksum => State::Drifted,
                Some(_) => State::Applied,
            };
            Entry {
                version: m.version,
                name: m.name.clone(),
                state,
                no_transaction: m.no_transaction,
                applied: row.cloned(),
            }
        })
        .collect();
    for r in rows
        .iter()
        .filter(|r| !known.iter().any(|m| m.version == r.version))
    {
        let state = match r.state.as_str() {
            "failed" => State::Failed,
            "running" => State::Running,
            _ => State::Missing,
        };
        out.push(Entry {
            version: r.version,
            name: r.name.clone(),
            state,
            no_transaction: false,
            applied: Some(r.clone()),
        });
    }
    out.sort_by_key(|e| e.version);
    out
}

/// Refuses to go on past a failed/running migration, drift, or unknown versions.
pub(crate) fn guard(entries: &[Entry], known: &[Migration]) -> Result<(), MigrateError> {
    if let Some(e) = entries
        .iter()
        .find(|e| matches!(e.state, State::Failed | State::Running))
    {
        let a = e.applied.as_ref().expect("failed rows exist");
        let what = if e.state == State::Running {
            "was interrupted (state running)"
        } else {
            "is recorded as failed"
        };
        return Err(MigrateError::Failed {
            version: e.version,
            name: e.name.clone(),
            statement: None,
            error: format!(
                "it {what} since {}{}",
                a.started_at,
                a.error
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
            recorded: true,
        });
    }
    let mut drift = vec![];
    for e in entries {
        match e.state {
            State::Drifted => {
                let a = e.applied.as_ref().expect("drifted rows exist");
                let now = known.iter().find(|m| m.version == e.version).map(|m| &m.checksum[..12]).unwrap_or("");
                drift.push(format!(
                    "migration {} was changed after it was applied (checksum {} recorded, {now} now): restore the file, or put the change in a new migration",
                    label(e.version, &e.name),
                    &a.checksum[..a.checksum.len().min(12)]
                ));
            }
            State::Missing => drift.push(format!(
                "migration {} is applied in the database but unknown to this binary (an older release, or a deleted file)",
                label(e.version, &e.name)
            )),
            _ => {}
        }
    }
    if drift.is_empty() {
        Ok(())
    } else {
        Err(MigrateError::Drift(drift))
    }
}

/// Reads the history without taking the lock (status, plan, check).
pub async fn read_entries(t: &Target) -> Result<(Vec<Entry>, Vec<Migration>), MigrateError> {
    let known = t.known()?;
    if t.url.sqlite_path().is_some_and(|p| !p.exists()) {
        // Nothing is applied to a database that does not exist yet; looking must not
        // create it.
        return Ok((compare(&known, &[]), known));
    }
    let mut conn = Conn::open(&t.url, t.connect_timeout, false).await?;
    let rows = conn.history().await;
    conn.close().await;
    Ok((compare(&known, &rows?), known))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_classifies() {
        let known = vec![
            Migration::new(1, "a", "x", None),
            Migration::new(2, "b", "y", None),
        ];
        let row = |v: i64, c: &str, s: &str| Applied {
            version: v,
            name: "n".into(),
            checksum: c.into(),
            state: s.into(),
            started_at: String::new(),
            finished_at: None,
            duration_ms: None,
            applied_by: String::new(),
            error: None,
        };
        let e = compare(
            &known,
            &[
                row(1, &known[0].checksum, "applied"),
                row(3, "z", "applied"),
            ],
        );
        let states: Vec<_> = e.iter().map(|e| (e.version, e.state)).collect();
        assert_eq!(
            states,
            vec![
                (1, State::Applied),
                (2, State::Pending),
                (3, State::Missing)
            ]
        );
        let e = compare(&known, &[row(1, "other", "applied")]);
        assert_eq!(e[0].state, State::Drifted);
        assert!(matches!(guard(&e, &known), Err(MigrateError::Drift(_))));
    }
}
