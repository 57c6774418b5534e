//! The arbiter's answers to its control clients: the console's requests (`/metrics`,
//! `corral status`, `corral ctl …`) and the outcomes that waiting clients are told
//! (a reload done or failed, an upgrade failed, the workers settled).

use super::{Arbiter, Phase};
use crate::master::console::{Ask, Cmd, Reply};
use crate::master::report;
use tracing::info;

impl Arbiter {
    /// A reload failed: counted, and told to the control clients waiting for it.
    pub(super) fn reload_failed(&mut self, why: String) {
        self.tally.reloaded(None);
        self.reload_ignored(&why);
    }

    pub(super) fn reload_ignored(&mut self, why: &str) {
        let gen = self.generations.number();
        for id in std::mem::take(&mut self.waiting.reload) {
            self.console.reply(
                id,
                Reply::Json(serde_json::json!({ "ok": false, "error": format!("reload failed: {why}; generation {gen} keeps serving") })),
            );
        }
    }

    pub(super) fn reload_done(&mut self, took: std::time::Duration) {
        self.tally.reloaded(Some(took));
        let gen = self.generations.number();
        for id in std::mem::take(&mut self.waiting.reload) {
            self.console.reply(
                id,
                Reply::Json(serde_json::json!({ "ok": true, "generation": gen, "elapsed_ms": took.as_millis() as u64 })),
            );
        }
    }

    pub(super) fn upgrade_failed(&mut self, why: &str) {
        self.console.rebind();
        for id in std::mem::take(&mut self.waiting.upgrade) {
            self.console.reply(
                id,
                Reply::Json(serde_json::json!({ "ok": false, "error": format!("upgrade failed: {why}; this master keeps serving") })),
            );
        }
    }

    // ---- the console ----

    /// Answers a console request, now or (for operations) once they are done.
    pub(super) fn answer(&mut self, ask: Ask) {
        let (id, cmd) = match ask {
            Ask::Metrics { id, format } => {
                let snap = report::metrics(&self.workers, &self.tally, self.generations.number());
                let body = report::encode(&snap, self.hooks.metrics, format);
                let reply = Reply::Http {
                    status: "200 OK",
                    content_type: format.content_type(),
                    body,
                };
                return self.console.reply(id, reply);
            }
            Ask::Control { id, cmd } => (id, cmd),
        };
        let refuse = |why: &str| Reply::Json(serde_json::json!({ "ok": false, "error": why }));
        info!(command = ?cmd, "Control: {cmd:?}");
        match cmd {
            Cmd::Status => {
                let facts = report::MasterFacts {
                    generation: self.generations.number(),
                    workers_wanted: self.num_workers,
                    phase: match self.phase {
                        Phase::Booting => "booting",
                        Phase::Running => "running",
                        Phase::Delaying { .. } => "shutting down",
                        Phase::Stopping { .. } => "stopping",
                    },
                    config_file: self.generations.loaded().file.as_deref(),
                };
                let doc = report::status(&self.workers, &self.tally, &facts);
                self.console.reply(id, Reply::Json(doc));
            }
            _ if self.phase != Phase::Running => self.console.reply(
                id,
                refuse("the master is not running (booting or stopping)"),
            ),
            Cmd::Reload => {
                self.waiting.reload.push(id);
                self.handle_hup();
            }
            Cmd::Ttin => {
                self.waiting.settle.push(id);
                self.handle_ttin();
            }
            Cmd::Ttou if self.num_workers == 1 => self
                .console
                .reply(id, refuse("already at one worker, the fewest there can be")),
            Cmd::Ttou => {
                self.waiting.settle.push(id);
                self.handle_ttou();
            }
            Cmd::Upgrade => {
                self.waiting.upgrade.push(id);
                self.handle_usr2();
            }
            Cmd::Stop { quick } => {
                self.console.reply(
                    id,
                    Reply::Json(serde_json::json!({ "ok": true, "stopping": true })),
                );
                if quick {
                    self.stop(true);
                } else {
                    self.terminate();
                }
            }
        }
    }

    /// Answers `ctl ttin`/`ttou` once the workers match the wanted number, all ready.
    pub(super) fn answer_settled(&mut self) {
        if self.waiting.settle.is_empty() {
            return;
        }
        let gen = self.generations.number();
        let all_ready = self
            .workers
            .iter()
            .all(|w| w.generation == gen && w.is_ready() && w.is_healthy());
        let n = self.workers.iter().count();
        if self.phase == Phase::Running && all_ready && n == self.num_workers as usize {
            for id in std::mem::take(&mut self.waiting.settle) {
                self.console.reply(
                    id,
                    Reply::Json(serde_json::json!({ "ok": true, "workers": n })),
                );
            }
        }
    }
}
