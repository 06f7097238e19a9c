//! One timer: its arm state and what it does when it fires.
//!
//! `state` is `seq << 1 | armed`. Arming bumps `seq` and sets `armed`, then pushes a heap
//! entry tagged with the new `seq`; stopping clears `armed`; firing CASes `seq << 1 | 1`
//! from the entry to unarmed (or, for a ticker, to the next `seq`, re-armed). An entry whose
//! `seq` is no longer current is stale and fires nothing — so stop and reset never search a
//! heap, and a timer fires at most once per arming.

use super::home::TimerHome;
use crate::chan::Sender;
use crate::loom::{AtomicU64, Ordering};
use crate::park::Goroutine;
use std::sync::Arc;
use std::time::Instant;

/// What a timer does when it fires. Runs on whichever M runs the timer, without a P held by
/// the timer: it must not block.
pub(crate) enum Action {
    /// Ready a goroutine sleeping in `sleep`.
    Ready(Goroutine),
    /// Offer the firing time on a channel of capacity 1, dropping it if the last one was not
    /// taken yet (Go's `time.Timer` / `time.Ticker` channels).
    Send(Sender<Instant>),
    /// Start `f` in a new goroutine (Go's `time.AfterFunc`).
    Func(Arc<dyn Fn() + Send + Sync>),
}

/// A timer.
pub(crate) struct TimerCell {
    state: AtomicU64,
    /// Ticker period in nanoseconds; 0 for a one-shot timer. Written by `reset`.
    period: AtomicU64,
    pub(crate) action: Action,
    pub(crate) home: Arc<TimerHome>,
}

impl std::fmt::Debug for TimerCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerCell")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl TimerCell {
    pub(crate) fn new(action: Action, home: Arc<TimerHome>, period: u64) -> TimerCell {
        TimerCell {
            state: AtomicU64::new(0),
            period: AtomicU64::new(period),
            action,
            home,
        }
    }

    /// Whether the timer is armed.
    pub(crate) fn is_armed(&self) -> bool {
        self.state.load(Ordering::Acquire) & 1 == 1
    }

    pub(crate) fn set_period(&self, period: u64) {
        self.period.store(period, Ordering::Relaxed);
    }

    /// Marks the timer armed with a new sequence number; returns `(seq, was_armed)`. The
    /// caller pushes the heap entry.
    pub(crate) fn arm(&self) -> (u64, bool) {
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            let seq = (old >> 1) + 1;
            match self.state.compare_exchange_weak(
                old,
                seq << 1 | 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let was = old & 1 == 1;
                    if !was {
                        self.home.armed.fetch_add(1, Ordering::SeqCst);
                    }
                    return (seq, was);
                }
                Err(cur) => old = cur,
            }
        }
    }

    /// Disarms; returns whether the timer was armed (Go's `Stop`).
    pub(crate) fn stop(&self) -> bool {
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            if old & 1 == 0 {
                return false;
            }
            match self.state.compare_exchange_weak(
                old,
                old & !1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.home.armed.fetch_sub(1, Ordering::SeqCst);
                    return true;
                }
                Err(cur) => old = cur,
            }
        }
    }

    /// An entry armed with `seq` came due. Returns `None` if it is stale; otherwise the
    /// timer fired, and `Some(next)` carries the ticker's next `(seq, when)` to push.
    pub(crate) fn fire(&self, seq: u64, when: u64, now: u64) -> Option<Option<(u64, u64)>> {
        let period = self.period.load(Ordering::Relaxed);
        let (new, next) = match now.saturating_sub(when).checked_div(period) {
            None => (seq << 1, None), // one-shot
            Some(missed) => {
                // Skip ticks missed while nobody ran timers (Go does the same).
                let next_when = when.saturating_add(period.saturating_mul(missed + 1));
                ((seq + 1) << 1 | 1, Some((seq + 1, next_when)))
            }
        };
        self.state
            .compare_exchange(seq << 1 | 1, new, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        if next.is_none() {
            self.home.armed.fetch_sub(1, Ordering::SeqCst);
        }
        Some(next)
    }
}
