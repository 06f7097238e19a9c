//! Go's `time` for goroutines: `sleep`, `after`, `tick`, `Timer` and `Ticker`, on the
//! runtime's per-P timer heaps (`timer/`).
//!
//! From a goroutine, timers live on its runtime: an idle M sleeps in the idle hook exactly
//! until the earliest one, a sleeping goroutine holds no M, and a pending timer means the
//! program is not deadlocked. From a plain thread, `sleep` is the thread's own sleep and
//! the other timers run on a small process-wide runtime made for the purpose (its one
//! polling M sleeps until the next deadline), so channels from `after` and `tick` work
//! anywhere. Zero durations fire at once; stopping a timer twice is fine.

use crate::chan::{Receiver, chan};
use crate::m::current_m;
use crate::park::{WaitReason, park_for};
use crate::sched::Shared;
use crate::timer::{Action, TimerCell};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The runtime whose heaps a timer created here goes on: the calling goroutine's, or the
/// process-wide timer runtime for plain threads.
fn home_runtime() -> Arc<Shared> {
    let m = current_m();
    if !m.is_null() {
        // SAFETY: a non-null current M is this thread's live M; the clone ends the borrow.
        return unsafe { (*m).shared.clone() };
    }
    static TIMERS: OnceLock<crate::Runtime> = OnceLock::new();
    TIMERS
        .get_or_init(|| {
            // SAFETY: no user goroutine ever runs on this runtime: it only runs timers, whose
            // actions send on channels or ready goroutines (`after_func` from a plain thread
            // starts an OS thread instead).
            unsafe { crate::Builder::new().gomaxprocs(1).build() }
                .expect("runtime: the timer runtime's configuration is valid")
        })
        .shared()
        .clone()
}

/// A new timer on the home runtime, armed to fire `action` after `d` (then every `period`
/// nanoseconds, unless 0).
fn arm_new(action: Action, d: Duration, period: u64) -> (Arc<TimerCell>, Arc<Shared>) {
    let shared = home_runtime();
    let cell = Arc::new(TimerCell::new(action, shared.timers.clone(), period));
    shared.arm_timer(&cell, shared.timers.deadline_after(d));
    (cell, shared)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Pauses the calling goroutine for at least `d` (Go's `time.Sleep`): it parks, its M runs
/// other goroutines. On a plain thread, sleeps the thread. Zero returns at once.
pub fn sleep(d: Duration) {
    if d.is_zero() {
        return;
    }
    let Some(me) = crate::park::current() else {
        std::thread::sleep(d);
        return;
    };
    let (cell, _shared) = arm_new(Action::Ready(me), d, 0);
    while cell.is_armed() {
        park_for(WaitReason::Sleep);
    }
}

/// A channel that receives the time once, after `d` (Go's `time.After`).
pub fn after(d: Duration) -> Receiver<Instant> {
    Timer::new(d).into_receiver()
}

/// A channel that receives the time every `d` (Go's `time.Tick`); the ticker runs for the
/// life of the program. Use [`Ticker`] to be able to stop it.
///
/// # Panics
/// If `d` is zero (Go's `Tick` returns nil then; a channel that never fires is a bug).
pub fn tick(d: Duration) -> Receiver<Instant> {
    let t = Ticker::new(d);
    let rx = t.rx.clone();
    std::mem::forget(t);
    rx
}

/// A single event at a future time (Go's `time.Timer`): the time is sent on its channel, or
/// a function runs in a new goroutine ([`Timer::after_func`]).
pub struct Timer {
    cell: Arc<TimerCell>,
    shared: Arc<Shared>,
    rx: Option<Receiver<Instant>>,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("armed", &self.cell.is_armed())
            .finish_non_exhaustive()
    }
}

impl Timer {
    /// A timer that sends the time on its channel after `d` (Go's `time.NewTimer`).
    pub fn new(d: Duration) -> Timer {
        let (tx, rx) = chan(1);
        Timer::start(Action::Send(tx), d, Some(rx))
    }

    /// A timer that runs `f` in its own goroutine after `d` (Go's `time.AfterFunc`). Created
    /// from a plain thread, `f` runs on a new OS thread instead.
    pub fn after_func(d: Duration, f: impl Fn() + Send + Sync + 'static) -> Timer {
        let f: std::sync::Arc<dyn Fn() + Send + Sync> = if current_m().is_null() {
            let f = std::sync::Arc::new(f);
            std::sync::Arc::new(move || {
                let f = f.clone();
                std::thread::spawn(move || f());
            })
        } else {
            std::sync::Arc::new(f)
        };
        Timer::start(Action::Func(f), d, None)
    }

    fn start(action: Action, d: Duration, rx: Option<Receiver<Instant>>) -> Timer {
        let (cell, shared) = arm_new(action, d, 0);
        Timer { cell, shared, rx }
    }

    /// The channel the time is sent on (`None` for an `after_func` timer).
    pub fn receiver(&self) -> Option<&Receiver<Instant>> {
        self.rx.as_ref()
    }

    fn into_receiver(mut self) -> Receiver<Instant> {
        self.rx
            .take()
            .expect("runtime: channel timer without a channel")
    }

    /// Stops the timer; returns whether it was pending (false: it already fired or was
    /// stopped). A value already sent stays in the channel.
    pub fn stop(&self) -> bool {
        self.cell.stop()
    }

    /// Re-arms the timer to fire after `d`; returns whether it was pending.
    pub fn reset(&self, d: Duration) -> bool {
        let when = self.shared.timers.deadline_after(d);
        self.shared.arm_timer(&self.cell, when)
    }
}

/// A channel of periodic ticks (Go's `time.Ticker`). Ticks a slow receiver misses are
/// dropped, not queued. Dropping the `Ticker` stops it.
pub struct Ticker {
    cell: Arc<TimerCell>,
    shared: Arc<Shared>,
    rx: Receiver<Instant>,
}

impl std::fmt::Debug for Ticker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticker").finish_non_exhaustive()
    }
}

impl Ticker {
    /// Ticks every `d`.
    ///
    /// # Panics
    /// If `d` is zero: "non-positive interval for Ticker", as Go's `NewTicker`.
    pub fn new(d: Duration) -> Ticker {
        assert!(
            !d.is_zero(),
            "non-positive interval for Ticker: use a positive Duration"
        );
        let (tx, rx) = chan(1);
        let (cell, shared) = arm_new(Action::Send(tx), d, nanos(d));
        Ticker { cell, shared, rx }
    }

    /// The channel ticks are sent on.
    pub fn receiver(&self) -> &Receiver<Instant> {
        &self.rx
    }

    /// Stops the ticks.
    pub fn stop(&self) {
        self.cell.stop();
    }

    /// Ticks every `d` from now on.
    ///
    /// # Panics
    /// If `d` is zero.
    pub fn reset(&self, d: Duration) {
        assert!(
            !d.is_zero(),
            "non-positive interval for Ticker.reset: use a positive Duration"
        );
        self.cell.set_period(nanos(d));
        let when = self.shared.timers.deadline_after(d);
        self.shared.arm_timer(&self.cell, when);
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.cell.stop();
    }
}
