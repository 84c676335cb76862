//! The send schedule of a load run, shared by its broker sessions and (when paced) one pacer
//! thread.
//!
//! Each session has a [`Lane`]: when each of its orders was due or sent, how many reached their
//! final state (the manager's in-flight window is counted against it), and with `--rate` how
//! many the pacer has released.
//!
//! Paced, order `i` of a lane is due at `start + i / rate`. One thread keeps the time for every
//! lane: it sleeps until the next order of any lane is due, but never less than [`MIN_TICK`],
//! and each wake releases to every lane what has come due with one notification. Waking once
//! per order (a thread per session did) more than doubled the load generator's CPU at a few
//! hundred thousand orders a second, CPU taken from the grid it measures on the same cores.
//! Latency is counted from each order's own due time, so a late wake shows up in the figures
//! (coordinated omission corrected). An OS sleep rather than a runtime timer: tokio's timer
//! wheel has 1 ms slots, which would send in 1 ms bursts.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shortest sleep between two releases: at high rates a lane is released every 50 us or
/// so (an order is at most that late, and a frame carries a few orders).
pub const MIN_TICK: Duration = Duration::from_micros(50);

/// The pacer's timer slack. Linux lets a sleep end up to 50 us late by default (to batch
/// wake-ups), which at low rates would make every order that late and the figures say so.
const TIMER_SLACK_NS: u64 = 1_000;

/// The longest schedule a paced run may have (a week): a rate so low that the last order
/// would be due later is refused up front rather than run for ever.
pub const MAX_SCHEDULE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often a lane stalled on the in-flight window is looked at again.
const WINDOW_POLL: Duration = Duration::from_micros(200);

/// One session's side of the schedule.
#[derive(Debug)]
pub struct Lane {
    /// Orders per second (`None`: sent as fast as the window allows, not paced).
    rate: Option<f64>,
    /// At most this many orders in flight (sent, not yet final).
    window: usize,
    /// When each order was due (paced) or sent, ns since the run's start (0: not yet).
    due_at: Vec<AtomicU64>,
    /// Orders that reached their final state.
    completed: AtomicUsize,
    /// Paced: orders released to the sender (only the pacer thread writes it).
    released: AtomicUsize,
    /// Paced: set when `released` moved.
    wake: tokio::sync::Notify,
    /// The session is gone: release nothing more.
    closed: AtomicBool,
}

impl Lane {
    /// A lane of `len` orders, at most `window` in flight, paced at `rate` orders per second if
    /// given.
    pub fn new(len: usize, window: usize, rate: Option<f64>) -> Arc<Lane> {
        Arc::new(Lane {
            rate,
            window: window.max(1),
            due_at: (0..len).map(|_| AtomicU64::new(0)).collect(),
            completed: AtomicUsize::new(0),
            released: AtomicUsize::new(0),
            wake: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// Whether the pacer releases this lane's orders (else they go as fast as the window allows).
    pub fn is_paced(&self) -> bool {
        self.rate.is_some()
    }

    fn len(&self) -> usize {
        self.due_at.len()
    }

    /// How many more orders may be sent now that `sent` have been, under the in-flight window.
    pub fn room(&self, sent: usize) -> usize {
        (self.completed.load(Ordering::Acquire) + self.window).saturating_sub(sent)
    }

    /// Records that orders `from..to` were sent at `at` (ns since the run's start).
    pub fn mark_sent(&self, from: usize, to: usize, at: u64) {
        for d in &self.due_at[from..to] {
            d.store(at.max(1), Ordering::Relaxed);
        }
    }

    /// When order `pos` was due or sent, since the run's start.
    pub fn due(&self, pos: usize) -> Duration {
        Duration::from_nanos(self.due_at[pos].load(Ordering::Relaxed))
    }

    /// Counts `n` more orders final, opening the window by as many.
    pub fn complete(&self, n: usize) {
        self.completed.fetch_add(n, Ordering::Release);
    }

    /// The session is done (or failed): the pacer stops releasing to it.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Paced: waits until more than `sent` orders are released and returns how many are.
    pub async fn released_beyond(&self, sent: usize) -> usize {
        loop {
            let released = self.released.load(Ordering::Acquire);
            if released > sent {
                return released;
            }
            // `notify_one` leaves a permit when nobody waits, so a release between the load
            // and this await is not missed.
            self.wake.notified().await;
        }
    }

    /// Order `pos`'s slot in the schedule, since the run's start.
    fn slot(rate: f64, pos: usize) -> Duration {
        // Saturates rather than panics: `run_load` refuses schedules anywhere near this long.
        Duration::try_from_secs_f64(pos as f64 / rate).unwrap_or(Duration::MAX)
    }

    /// Releases what is due at `elapsed` (within the window) and returns when this lane next
    /// needs the pacer (`None`: never again, or not paced).
    fn release(&self, elapsed: Duration) -> Option<Duration> {
        let rate = self.rate?;
        let len = self.len();
        let released = self.released.load(Ordering::Relaxed);
        if released >= len || self.closed.load(Ordering::Acquire) {
            return None;
        }
        let limit = self.completed.load(Ordering::Acquire) + self.window;
        let target = due_count(elapsed, rate, len).min(limit);
        if target > released {
            for pos in released..target {
                let slot = Self::slot(rate, pos).as_nanos().max(1) as u64;
                self.due_at[pos].store(slot, Ordering::Relaxed);
            }
            self.released.store(target, Ordering::Release);
            self.wake.notify_one();
        }
        if target >= len {
            None
        } else if target >= limit {
            Some(elapsed + WINDOW_POLL)
        } else {
            Some(Self::slot(rate, target))
        }
    }
}

/// How many orders of a lane paced at `rate` are due `elapsed` after the start (order `i` is
/// due at `i / rate`), at most `len`.
pub fn due_count(elapsed: Duration, rate: f64, len: usize) -> usize {
    let due = (elapsed.as_secs_f64() * rate).floor();
    if due >= len as f64 {
        len
    } else {
        due as usize + 1
    }
}

/// Starts the pacer thread for the paced lanes among `lanes`; it ends when every one is
/// released in full or closed.
pub fn spawn_pacer(lanes: Vec<Arc<Lane>>, start: Instant) -> std::io::Result<()> {
    let paced: Vec<Arc<Lane>> = lanes.into_iter().filter(|l| l.is_paced()).collect();
    if paced.is_empty() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            set_timer_slack(TIMER_SLACK_NS);
            pace(&paced, start)
        })
        .map(drop)
}

/// The pacer thread's loop: release what is due, sleep until the next order of any lane.
fn pace(paced: &[Arc<Lane>], start: Instant) {
    loop {
        let elapsed = start.elapsed();
        let next = paced.iter().filter_map(|lane| lane.release(elapsed)).min();
        let Some(next) = next else { return };
        std::thread::sleep(next.saturating_sub(start.elapsed()).max(MIN_TICK));
    }
}

/// Sets this thread's timer slack (how late the kernel may end its sleeps), where Linux has it.
fn set_timer_slack(ns: u64) {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes a value and changes only this thread's timer slack; it
    // reads and writes no memory of ours. A refusal leaves the default slack, which is harmless.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = ns;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_counts_follow_the_slots() {
        // At 1,000/s order i is due at i ms: order 0 at once, order 5 at exactly 5 ms.
        assert_eq!(due_count(Duration::ZERO, 1000.0, 10), 1);
        assert_eq!(due_count(Duration::from_micros(4_999), 1000.0, 10), 5);
        assert_eq!(due_count(Duration::from_millis(5), 1000.0, 10), 6);
        assert_eq!(due_count(Duration::from_secs(60), 1000.0, 10), 10);
        assert_eq!(due_count(Duration::from_secs(60), 1000.0, 0), 0);
    }

    #[test]
    fn a_release_stamps_each_order_with_its_own_slot_and_keeps_to_the_window() {
        let lane = Lane::new(100, 8, Some(1000.0));
        // 20 ms in, 21 orders are due, but only 8 may be in flight.
        let next = lane.release(Duration::from_millis(20));
        assert_eq!(lane.released.load(Ordering::Relaxed), 8);
        assert_eq!(next, Some(Duration::from_millis(20) + WINDOW_POLL));
        assert_eq!(lane.due(0), Duration::from_nanos(1));
        assert_eq!(lane.due(7), Duration::from_millis(7));
        assert_eq!(lane.due(8), Duration::ZERO, "not released");
        // Three final: three more go, each stamped with its slot (not the release time).
        lane.complete(3);
        let next = lane.release(Duration::from_millis(30));
        assert_eq!(lane.released.load(Ordering::Relaxed), 11);
        assert_eq!(lane.due(10), Duration::from_millis(10));
        assert_eq!(next, Some(Duration::from_millis(30) + WINDOW_POLL));
        // An open window: the next wake is the next order's slot.
        lane.complete(100);
        assert_eq!(
            lane.release(Duration::from_millis(30)),
            Some(Duration::from_millis(31))
        );
        assert_eq!(lane.released.load(Ordering::Relaxed), 31);
        // All released: the lane needs the pacer no more; a closed lane neither.
        assert_eq!(lane.release(Duration::from_secs(1)), None);
        let closed = Lane::new(10, 8, Some(1000.0));
        closed.close();
        assert_eq!(closed.release(Duration::from_secs(1)), None);
        assert_eq!(closed.released.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_pacer_releases_every_lane_on_schedule() {
        // Two lanes at different rates, the window wide open: both are released in full, in
        // about the time the slower one's schedule takes, and never ahead of it.
        let fast = Lane::new(400, 1 << 20, Some(20_000.0));
        let slow = Lane::new(100, 1 << 20, Some(2_000.0));
        let unpaced = Lane::new(5, 1 << 20, None);
        let start = Instant::now();
        spawn_pacer(vec![fast.clone(), slow.clone(), unpaced.clone()], start).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for lane in [&fast, &slow] {
                let mut seen = 0;
                while seen < lane.len() {
                    seen = lane.released_beyond(seen).await;
                    // What is released was due: its slot is in the past.
                    assert!(lane.due(seen - 1) <= start.elapsed());
                }
            }
        });
        let took = start.elapsed();
        assert!(took >= Duration::from_micros(49_500), "{took:?}");
        assert_eq!(slow.due(99), Duration::from_micros(49_500));
        assert_eq!(fast.due(399), Duration::from_micros(19_950));
        assert_eq!(unpaced.released.load(Ordering::Relaxed), 0);
    }
}
