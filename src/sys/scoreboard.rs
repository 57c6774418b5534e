//! A worker's scoreboard: one page of shared memory (a `memfd`) that the worker writes and
//! its master reads, after Apache's scoreboard.
//!
//! Its first page carries the heartbeat (a `CLOCK_MONOTONIC` timestamp), the worker's state (booting,
//! ready, retiring), its request count, a boot-failure message, and the requests in
//! flight (method, path, request id, start time); the pages after it hold the worker's
//! metrics ([`Stats`]). The master reads it to detect hung
//! workers and to say what a hung worker was doing when it kills it: a worker that is
//! stopped or spinning cannot tell anyone, but its scoreboard still can.
//!
//! Every field is an atomic, so concurrent access from two processes is well defined.
//! Only the worker's event-loop thread writes, so each in-flight slot uses a sequence
//! counter (a seqlock) to let the master detect and skip a half-written slot.

use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

pub use super::stats::Stats;

/// Requests in flight that a scoreboard can describe at once.
pub const SLOTS: usize = 8;
const TEXT_WORDS: usize = 32; // 256 bytes per slot: "METHOD PATH\nREQUEST-ID"
const MESSAGE_WORDS: usize = 64; // 512 bytes of boot-failure message
const MAGIC: u64 = 0x636f_7272_616c_5342; // "corralSB"

/// What a worker is doing, as the master sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Booting = 0,
    Ready = 1,
    /// It wants to be replaced (`--max-requests` reached) and keeps serving meanwhile.
    WantsRetire = 2,
    /// It is draining: no longer accepting.
    Draining = 3,
}

#[repr(C)]
struct Slot {
    seq: AtomicU32,
    len: AtomicU32,
    started_ms: AtomicU64,
    text: [AtomicU64; TEXT_WORDS],
}

#[repr(C)]
struct Board {
    magic: AtomicU64,
    heartbeat_ms: AtomicU64,
    state: AtomicU32,
    message_len: AtomicU32,
    requests: AtomicU64,
    connections: AtomicU64,
    /// Metrics kept in fixed fields, so the request path needs no lookup for them.
    active_requests: AtomicU64,
    connections_accepted: AtomicU64,
    /// Written by the master: the server is shutting down (`--shutdown-delay`).
    shutting_down: AtomicU32,
    message: [AtomicU64; MESSAGE_WORDS],
    slots: [Slot; SLOTS],
}

const SIZE: usize = std::mem::size_of::<Board>();
const _: () = assert!(SIZE <= 4096, "a scoreboard fits in one page");

/// Pages of shared memory (a memfd), mapped read-write: the storage of a [`Scoreboard`]
/// (its board, then its [`Stats`]) and of the [`Balance`] board.
struct SharedPage {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the page is only accessed through atomics (see its users); the pointer stays
// valid until `Drop`, so it may move between and be shared by threads.
unsafe impl Send for SharedPage {}
// SAFETY: as above.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    fn create(name: &std::ffi::CStr, len: usize) -> std::io::Result<SharedPage> {
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC)?;
        nix::unistd::ftruncate(&fd, len as i64)?;
        SharedPage::map(fd, len)
    }

    /// Maps an inherited memfd, which must be at least `len` bytes long.
    fn open(fd: RawFd, len: usize) -> std::io::Result<SharedPage> {
        let fd = super::adopt_fd(fd)?;
        let size = nix::sys::stat::fstat(&fd)?.st_size;
        if (size as usize) < len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("shared memory is {size} bytes, expected {len}"),
            ));
        }
        SharedPage::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> std::io::Result<SharedPage> {
        let nz = NonZeroUsize::new(len).expect("non-zero");
        // SAFETY: a fresh shared mapping of a memfd at least `len` bytes long (checked by
        // the callers); no other mapping aliases this range in this process, and users
        // read it only through atomics, whose alignment (at most 8) a page-aligned
        // address satisfies.
        let ptr = unsafe {
            mmap(
                None,
                nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd.as_fd(),
                0,
            )?
        };
        Ok(SharedPage {
            fd,
            ptr: ptr.cast(),
            len,
        })
    }

    /// The bytes at page-aligned `offset` viewed as a `T` made of atomics (all-zero bytes
    /// must be a valid `T`).
    fn get<T>(&self, offset: usize) -> &T {
        assert!(offset % 4096 == 0 && offset + std::mem::size_of::<T>() <= self.len);
        // SAFETY: the mapping is live, page-aligned and `len` bytes long for as long as
        // `self`, and the assertion keeps `T` inside it at an aligned offset; it was
        // zero-filled by ftruncate; callers only use types made of atomics, for which any
        // bytes written by another process through those atomics are valid.
        unsafe { self.ptr.add(offset).cast::<T>().as_ref() }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `map`, once; no reference into it outlives
        // `self`.
        unsafe {
            let _ = munmap(self.ptr.cast(), self.len);
        }
    }
}

/// Bytes of a scoreboard: the board's page, then the stats table's pages.
const BOARD_LEN: usize = 4096 + std::mem::size_of::<Stats>().div_ceil(4096) * 4096;

/// A mapping of one worker's scoreboard, in the master or in the worker itself.
pub struct Scoreboard {
    page: SharedPage,
}

impl Scoreboard {
    /// Creates a fresh, zeroed scoreboard (master side, before spawning the worker).
    pub fn create() -> std::io::Result<Scoreboard> {
        let sb = Scoreboard {
            page: SharedPage::create(c"corral-scoreboard", BOARD_LEN)?,
        };
        sb.board().magic.store(MAGIC, Release);
        sb.board()
            .heartbeat_ms
            .store(super::monotonic_ms(), Release);
        Ok(sb)
    }

    /// Maps the scoreboard whose descriptor this worker inherited.
    pub fn open(fd: RawFd) -> std::io::Result<Scoreboard> {
        let sb = Scoreboard {
            page: SharedPage::open(fd, BOARD_LEN)?,
        };
        if sb.board().magic.load(Acquire) != MAGIC {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a corral scoreboard",
            ));
        }
        Ok(sb)
    }

    fn board(&self) -> &Board {
        self.page.get(0)
    }

    /// The worker's metrics (it records, the master sums); its pages are touched only
    /// when metrics are on.
    pub fn stats(&self) -> &Stats {
        self.page.get(4096)
    }

    /// The descriptor to hand to the worker.
    pub fn raw_fd(&self) -> RawFd {
        self.page.fd.as_raw_fd()
    }

    // ---- written by the worker ----

    pub fn beat(&self) {
        self.board()
            .heartbeat_ms
            .store(super::monotonic_ms(), Release);
    }

    pub fn set_state(&self, s: State) {
        self.board().state.store(s as u32, Release);
    }

    pub fn add_request(&self) -> u64 {
        self.board().requests.fetch_add(1, Relaxed) + 1
    }

    pub fn set_connections(&self, n: u64) {
        self.board().connections.store(n, Relaxed);
    }

    /// A request began (`+1`) or ended (`-1`).
    pub fn add_active(&self, delta: i64) {
        self.board()
            .active_requests
            .fetch_add(delta as u64, Relaxed);
    }

    /// Master side: tells the worker the server is about to stop (its readiness check
    /// should fail while it keeps serving).
    pub fn set_shutting_down(&self) {
        self.board().shutting_down.store(1, Release);
    }

    pub fn shutting_down(&self) -> bool {
        self.board().shutting_down.load(Acquire) != 0
    }

    pub fn connection_accepted(&self) {
        self.board().connections_accepted.fetch_add(1, Relaxed);
    }

    /// Records why the worker could not boot, for the master's one-line reason.
    pub fn set_message(&self, msg: &str) {
        let b = self.board();
        let len = write_words(&b.message, msg.as_bytes());
        b.message_len.store(len as u32, Release);
    }

    /// Describes a request in slot `i` (`0..SLOTS`).
    pub fn slot_begin(&self, i: usize, method: &str, path: &str, request_id: &str) {
        let s = &self.board().slots[i];
        let seq = s.seq.load(Relaxed);
        s.seq.store(seq.wrapping_add(1) | 1, Release); // odd: being written
        std::sync::atomic::fence(Release);
        s.started_ms.store(super::monotonic_ms(), Relaxed);
        let mut buf = [0u8; TEXT_WORDS * 8];
        let text = fill(
            &mut buf,
            &[
                method.as_bytes(),
                b" ",
                path.as_bytes(),
                b"\n",
                request_id.as_bytes(),
            ],
        );
        let len = write_words(&s.text, text);
        s.len.store(len as u32, Relaxed);
        s.seq.store((seq | 1).wrapping_add(1), Release); // even: stable, in use
    }

    pub fn slot_end(&self, i: usize) {
        let s = &self.board().slots[i];
        s.len.store(0, Release);
        s.started_ms.store(0, Release);
    }

    // ---- read by the master ----

    pub fn heartbeat_ms(&self) -> u64 {
        self.board().heartbeat_ms.load(Acquire)
    }

    pub fn state(&self) -> State {
        match self.board().state.load(Acquire) {
            1 => State::Ready,
            2 => State::WantsRetire,
            3 => State::Draining,
            _ => State::Booting,
        }
    }

    pub fn requests(&self) -> u64 {
        self.board().requests.load(Relaxed)
    }

    pub fn connections(&self) -> u64 {
        self.board().connections.load(Relaxed)
    }

    pub fn active_requests(&self) -> i64 {
        self.board().active_requests.load(Relaxed) as i64
    }

    pub fn connections_accepted(&self) -> u64 {
        self.board().connections_accepted.load(Relaxed)
    }

    pub fn message(&self) -> Option<String> {
        let b = self.board();
        let len = b.message_len.load(Acquire) as usize;
        (len > 0).then(|| String::from_utf8_lossy(&read_words(&b.message, len)).into_owned())
    }

    /// Requests in flight: `(method and path, request id, started_ms)`, oldest first.
    pub fn in_flight(&self) -> Vec<InFlight> {
        let mut out = vec![];
        for s in &self.board().slots {
            for _attempt in 0..3 {
                let before = s.seq.load(Acquire);
                if before & 1 == 1 {
                    std::hint::spin_loop();
                    continue;
                }
                let started = s.started_ms.load(Acquire);
                let len = s.len.load(Acquire) as usize;
                let bytes = read_words(&s.text, len);
                std::sync::atomic::fence(Acquire);
                if s.seq.load(Relaxed) != before {
                    continue;
                }
                if len > 0 && started > 0 {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    let (line, id) = text.split_once('\n').unwrap_or((&text, ""));
                    let (method, path) = line.split_once(' ').unwrap_or((line, ""));
                    out.push(InFlight {
                        method: method.to_string(),
                        path: path.to_string(),
                        request_id: id.to_string(),
                        started_ms: started,
                    });
                }
                break;
            }
        }
        out.sort_by_key(|r| r.started_ms);
        out
    }
}

/// A request a worker was serving, as recorded in its scoreboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub method: String,
    pub path: String,
    pub request_id: String,
    pub started_ms: u64,
}

fn fill<'a>(buf: &'a mut [u8], parts: &[&[u8]]) -> &'a [u8] {
    let mut n = 0;
    for p in parts {
        let take = p.len().min(buf.len() - n);
        buf[n..n + take].copy_from_slice(&p[..take]);
        n += take;
    }
    &buf[..n]
}

/// Stores `bytes` in `words` (cut to fit); returns how many were stored.
pub(super) fn write_words(words: &[AtomicU64], bytes: &[u8]) -> usize {
    let len = bytes.len().min(words.len() * 8);
    for (i, chunk) in bytes[..len].chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        words[i].store(u64::from_le_bytes(w), Relaxed);
    }
    len
}

/// The first `len` bytes stored in `words`.
pub(super) fn read_words(words: &[AtomicU64], len: usize) -> Vec<u8> {
    let len = len.min(words.len() * 8);
    let mut out = Vec::with_capacity(len);
    for w in words.iter().take(len.div_ceil(8)) {
        out.extend_from_slice(&w.load(Relaxed).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_state_message_and_slots() {
        let sb = Scoreboard::create().unwrap();
        assert_eq!(sb.state(), State::Booting);
        sb.set_state(State::Ready);
        assert_eq!(sb.state(), State::Ready);
        sb.set_message("cannot open database: permission denied");
        assert_eq!(
            sb.message().unwrap(),
            "cannot open database: permission denied"
        );
        sb.slot_begin(2, "POST", "/api/token/", "abc-123");
        let f = sb.in_flight();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (
                f[0].method.as_str(),
                f[0].path.as_str(),
                f[0].request_id.as_str()
            ),
            ("POST", "/api/token/", "abc-123")
        );
        sb.slot_end(2);
        assert!(sb.in_flight().is_empty());
        assert_eq!(sb.add_request(), 1);
    }
}

/// Bytes of the balance board: its page of slots, then the host's rate counters.
const BALANCE_LEN: usize = 4096 + std::mem::size_of::<super::rates::Rates>().div_ceil(4096) * 4096;

/// Slots in the balance board: one page of counters.
pub const BALANCE_SLOTS: usize = 512;

/// One page of shared memory where every worker of a master publishes how many
/// connections it holds, so each can defer accepting while a sibling holds fewer
/// (load-aware accept; Gunicorn's uneven-load issue #792). The master owns the slots.
///
/// A slot holds 0 when unused or not accepting, else 1 + the worker's connection count.
pub struct Balance {
    page: SharedPage,
}

impl Balance {
    /// Creates the board (master side).
    pub fn create() -> std::io::Result<Balance> {
        let b = Balance {
            page: SharedPage::create(c"corral-balance", BALANCE_LEN)?,
        };
        b.rates().init_secret();
        Ok(b)
    }

    /// Maps the board a worker inherited.
    pub fn open(fd: RawFd) -> std::io::Result<Balance> {
        Ok(Balance {
            page: SharedPage::open(fd, BALANCE_LEN)?,
        })
    }

    /// The host's shared rate counters (login throttling), after the balance page.
    pub fn rates(&self) -> &super::rates::Rates {
        self.page.get(4096)
    }

    fn slots(&self) -> &[AtomicU64; BALANCE_SLOTS] {
        self.page.get(0)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.page.fd.as_raw_fd()
    }

    /// Publishes a worker's connection count (`None`: not accepting).
    pub fn publish(&self, slot: usize, connections: Option<u64>) {
        if let Some(s) = self.slots().get(slot) {
            s.store(connections.map_or(0, |c| c + 1), Relaxed);
        }
    }

    /// Whether the worker in `slot` holds more than one connection more than the least
    /// loaded accepting worker.
    pub fn busier_than_others(&self, slot: usize) -> bool {
        let slots = self.slots();
        let Some(mine) = slots.get(slot).map(|s| s.load(Relaxed)).filter(|m| *m > 0) else {
            return false;
        };
        let least = slots
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != slot)
            .map(|(_, s)| s.load(Relaxed))
            .filter(|v| *v > 0)
            .min();
        least.is_some_and(|l| mine > l + 1)
    }
}

#[cfg(test)]
mod balance_tests {
    use super::*;

    #[test]
    fn defers_only_when_clearly_busier() {
        let b = Balance::create().unwrap();
        b.publish(0, Some(3));
        assert!(!b.busier_than_others(0), "alone: never defer");
        b.publish(1, Some(2));
        assert!(!b.busier_than_others(0));
        b.publish(1, Some(1));
        assert!(b.busier_than_others(0));
        b.publish(1, None);
        assert!(
            !b.busier_than_others(0),
            "siblings not accepting do not count"
        );
    }
}
