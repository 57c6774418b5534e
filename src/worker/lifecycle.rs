//! A worker's lifecycle: signals become [`Stop`] values (TERM drains, INT and QUIT quit,
//! USR1 reopens the logs), and the heartbeat proves to the master that the event loop
//! still turns.

use crate::http::{access_log::AccessLog, Stop};
use crate::logging;
use crate::sys::scoreboard::Scoreboard;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, warn};

/// Turns signals into `Stop` values (TERM → drain, INT/QUIT → quit) and log reopening.
pub(super) fn watch_signals(
    stop: watch::Sender<Stop>,
    log: logging::Handle,
    access: Option<AccessLog>,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    // Registering a handler replaces the default action (terminate) of these, which belong
    // to the master; a terminal hang-up must not kill workers behind the master's back.
    let ignored: Vec<_> = [
        SignalKind::hangup(),
        SignalKind::from_raw(21),
        SignalKind::from_raw(22),
        SignalKind::user_defined2(),
    ]
    .into_iter()
    .map(signal)
    .collect::<Result<_, _>>()?;
    tokio::spawn(async move {
        let _ignored = ignored;
        loop {
            tokio::select! {
                _ = term.recv() => { stop.send_replace(Stop::Drain); }
                _ = int.recv() => { stop.send_replace(Stop::Quit); }
                _ = quit.recv() => { stop.send_replace(Stop::Quit); }
                _ = usr1.recv() => {
                    if let Err(e) = log.reopen() { error!("cannot reopen error log: {e}"); }
                    if let Some(a) = &access { if let Err(e) = a.reopen() { error!("cannot reopen access log: {e}"); } }
                }
            }
        }
    });
    Ok(())
}

/// Beats the scoreboard from the event loop, so a blocked loop stops the beats; drains
/// if the master has gone (the kernel's parent-death signal is the first line of defence).
pub(super) async fn heartbeat(
    board: Arc<Scoreboard>,
    timeout_secs: u64,
    master: nix::unistd::Pid,
    stop: watch::Sender<Stop>,
) {
    let every = Duration::from_millis((timeout_secs * 1000 / 4).clamp(100, 1000));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        board.beat();
        if crate::sys::process::parent_pid() != master && *stop.borrow() == Stop::Run {
            warn!("The master (pid: {master}) has gone; draining");
            stop.send_replace(Stop::Drain);
        }
    }
}
