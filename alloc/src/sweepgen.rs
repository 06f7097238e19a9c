//! The sweep-generation protocol: one word per span that says, relative to the heap's
//! generation, whether the span awaits sweeping, is being swept, is swept, or sits in a cache.
//!
//! The heap's generation `sg` is even and grows by 2 when a mark phase ends (world stopped).
//! A span's word, relative to it:
//!
//! | span word | meaning                                                          |
//! |-----------|------------------------------------------------------------------|
//! | `sg - 2`  | needs sweeping this cycle                                        |
//! | `sg - 1`  | being swept right now by exactly one party                      |
//! | `sg`      | swept, ready for use                                             |
//! | `sg + 1`  | was cached before this cycle began: the cache must sweep it on release |
//! | `sg + 3`  | swept this cycle and then cached                                 |
//!
//! The only transition out of "needs sweeping" is a compare-and-swap `sg-2 → sg-1`, so among
//! every party that reaches a span (a cache refill, the background sweeper, a proportional
//! sweep, `ensure_swept`) exactly one wins and sweeps it; the winner publishes with a Release
//! store of `sg` (or `sg+3` when it keeps the span for its cache) that pairs with the Acquire
//! loads below. The model in this file's loom tests checks exactly-once sweeping.

use crate::loom::{AtomicU32, AtomicUsize, Ordering, fence, thread};

/// A span's sweep generation word (see the module docs for the encoding).
///
/// Written by whoever owns the span at the moment (the claimer of a sweep, the cache that
/// holds it, the heap while the world is stopped); read by anyone who reaches the span.
#[derive(Debug)]
pub(crate) struct SweepGen(AtomicU32);

/// The value a freed span carries: odd, so it never equals `sg - 2` for an even `sg`.
pub(crate) const SWEEPGEN_FREE: u32 = 1;

impl SweepGen {
    pub(crate) fn new(v: u32) -> Self {
        SweepGen(AtomicU32::new(v))
    }

    /// The current word. Acquire: pairs with the Release stores of `finish`/`set`, so a party
    /// that sees "swept" also sees the swept bitmaps.
    pub(crate) fn load(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }

    /// Try to become the one sweeper of this span for generation `sg`.
    /// AcqRel: the Acquire half pairs with the Release store that made the span unswept (or
    /// with the previous cycle's sweep), the Release half orders nothing but is harmless.
    pub(crate) fn try_claim(&self, sg: u32) -> bool {
        self.0
            .compare_exchange(
                sg.wrapping_sub(2),
                sg.wrapping_sub(1),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Publish a new state (swept `sg`, cached `sg+3`, claimed `sg-1` by a releasing cache,
    /// free). Release: pairs with `load`/`try_claim`'s Acquire.
    pub(crate) fn set(&self, v: u32) {
        self.0.store(v, Ordering::Release)
    }
}

/// Whether a span whose word is `v` is swept (or cached after sweeping) under generation `sg`.
#[cfg(all(test, loom))]
pub(crate) fn is_swept(v: u32, sg: u32) -> bool {
    v == sg || v == sg.wrapping_add(3)
}

/// The lists a sweeper walks, per class: what `SweepState::sweep_one` needs from mcentral
/// (the heap's lists of spans, or a model's lists of ids).
pub(crate) trait SweepLists {
    /// A span (a pointer in the heap, an id in a model).
    type Span: Copy;
    /// Number of classes the cursor walks.
    fn classes(&self) -> usize;
    /// Pop an entry of `class`'s unswept lists under generation `sg`.
    fn pop_unswept(&self, class: usize, sg: u32) -> Option<Self::Span>;
    /// The span's sweep-generation word.
    fn gen_of(&self, s: Self::Span) -> &SweepGen;
    /// Sweep a span whose claim we won, publish generation `sg` and relink it (or free it).
    /// Returns the pages swept.
    fn sweep(&self, s: Self::Span, sg: u32) -> usize;
}

/// The heap-wide half of the protocol: the generation, the sweepers' cursor over the
/// classes, whether unswept spans may remain, and the gate that keeps the generation from
/// changing under a sweeper (Go's `sweepLocker`).
///
/// **The gate.** A sweeper acting on a stale generation is the classic failure here: it
/// reads `sg`, the world flips to `sg + 2`, and it then walks the *new* cycle's lists (whose
/// parity says "swept" under its stale `sg`), pushes the shared cursor past every class,
/// clears `pending`, and drops the entries whose claim fails — ending sweeping for the cycle.
/// So every sweep that is not a cache's (caches are excluded by the stop-the-world) runs
/// inside [`SweepState::enter`], and the stop-the-world coordinator ([`SweepState::close`])
/// closes the gate and waits until no sweeper is inside before it sweeps, flips
/// ([`SweepState::advance`]) or starts marking, and reopens it when done. The gate is a
/// Dekker handshake: the sweeper increments `active` then reads `closed`, the closer sets
/// `closed` then reads `active`, each with a
/// SeqCst fence between its store and its load, so at least one of them sees the other.
/// A sweep in flight is bounded work (one span, or one walk of the cursor), so the closer waits
/// briefly; it must not wait on a sweeper blocked on something a stopped thread holds — which
/// is why drop-queue pushes run after the sweeper has left the gate.
#[derive(Debug)]
pub(crate) struct SweepState {
    /// The heap's generation (even). Written only by `advance`, with the world stopped
    /// (Release); read by sweepers and caches (Acquire).
    pub(crate) sweepgen: AtomicU32,
    /// Whether unswept spans may remain this cycle (1) — a hint, Relaxed.
    pub(crate) pending: AtomicU32,
    /// First class whose unswept lists may be non-empty (sweepers advance it), on a line of
    /// its own.
    pub(crate) cursor: crate::heap::Padded<AtomicUsize>,
    /// Sweepers inside the gate.
    pub(crate) active: crate::heap::Padded<AtomicUsize>,
    /// Nonzero while the gate is closed.
    closed: AtomicU32,
}

/// A sweeper inside the gate: the generation cannot change until it drops.
pub(crate) struct Entered<'a>(&'a SweepState);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        // Release: a closer that sees the count drop sees everything this sweeper wrote.
        self.0.active.fetch_sub(1, Ordering::Release);
    }
}

impl SweepState {
    pub(crate) fn new(sg: u32) -> Self {
        SweepState {
            sweepgen: AtomicU32::new(sg),
            pending: AtomicU32::new(0),
            cursor: crate::heap::Padded(AtomicUsize::new(0)),
            active: crate::heap::Padded(AtomicUsize::new(0)),
            closed: AtomicU32::new(0),
        }
    }

    /// The current generation. Acquire: pairs with `advance`'s Release store, so a party that
    /// sees the new generation also sees the lists as they were at the flip.
    #[inline]
    pub(crate) fn sweepgen(&self) -> u32 {
        self.sweepgen.load(Ordering::Acquire)
    }

    /// Enter the gate (see the type docs); waits while the gate is closed.
    pub(crate) fn enter(&self) -> Entered<'_> {
        loop {
            self.active.fetch_add(1, Ordering::Relaxed);
            // StoreLoad: our increment is visible before we read `closed` (pairs with the
            // fence in `close`).
            fence(Ordering::SeqCst);
            // Acquire: when the value read is the store of `open` (not the initial one), we
            // must see what the closer did before reopening — the new generation, cursor.
            if self.closed.load(Ordering::Acquire) == 0 {
                return Entered(self);
            }
            self.active.fetch_sub(1, Ordering::Release);
            while self.closed.load(Ordering::Acquire) != 0 {
                thread::yield_now();
            }
        }
    }

    /// Close the gate (with the world stopped): new sweepers wait, and this returns once no
    /// sweeper is inside. The closer may then sweep (`sweep_one_closed`) and `advance`.
    pub(crate) fn close(&self) {
        self.closed.store(1, Ordering::Relaxed);
        // StoreLoad: pairs with the fence in `enter`.
        fence(Ordering::SeqCst);
        // Acquire: pairs with `Entered::drop`'s Release.
        while self.active.load(Ordering::Acquire) != 0 {
            thread::yield_now();
        }
    }

    /// Reopen the gate.
    pub(crate) fn open(&self) {
        // Release: a sweeper that sees the gate open sees everything the closer did.
        self.closed.store(0, Ordering::Release);
    }

    /// Advance the generation by two, rewind the cursor, mark sweeping pending. Only with
    /// the gate closed (by this thread).
    pub(crate) fn advance(&self) -> u32 {
        let sg = self.sweepgen.load(Ordering::Relaxed).wrapping_add(2);
        self.sweepgen.store(sg, Ordering::Release);
        self.cursor.store(0, Ordering::Relaxed);
        self.pending.store(1, Ordering::Relaxed);
        sg
    }

    /// Unswept spans were added to class lists (a cache let go of a span cached before the
    /// flip): rewind the cursor. Called after the push, so no sweeper can pass the class
    /// after the push without seeing the span.
    pub(crate) fn rewind(&self) {
        self.pending.store(1, Ordering::Relaxed);
        self.cursor.store(0, Ordering::Relaxed);
    }

    /// Sweep one unswept span of `lists`, inside the gate. Returns the pages swept, or `None`
    /// when no unswept span is left this cycle.
    pub(crate) fn sweep_one<L: SweepLists>(&self, lists: &L) -> Option<usize> {
        let _in = self.enter();
        // Stable until `_in` drops: a flip waits for us.
        self.sweep_one_at(lists, self.sweepgen())
    }

    /// `sweep_one` for the thread that holds the gate closed.
    pub(crate) fn sweep_one_closed<L: SweepLists>(&self, lists: &L) -> Option<usize> {
        self.sweep_one_at(lists, self.sweepgen())
    }

    fn sweep_one_at<L: SweepLists>(&self, lists: &L, sg: u32) -> Option<usize> {
        loop {
            let cursor = self.cursor.load(Ordering::Relaxed);
            if cursor >= lists.classes() {
                self.pending.store(0, Ordering::Relaxed);
                // A cache that let go of a stale span may have rewound the cursor between
                // our load and the store: then sweeping is not done.
                if self.cursor.load(Ordering::Relaxed) < lists.classes() {
                    self.pending.store(1, Ordering::Relaxed);
                    continue;
                }
                return None;
            }
            let Some(s) = lists.pop_unswept(cursor, sg) else {
                // This class is drained for the cycle (unswept lists grow only at the flip,
                // or by an uncache that also rewinds the cursor).
                let _ = self.cursor.compare_exchange(
                    cursor,
                    cursor + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                continue;
            };
            // A failed claim is a stale entry: the span was swept (and relinked) by someone
            // who reached it another way. With the generation pinned, dropping it is right.
            if lists.gen_of(s).try_claim(sg) {
                return Some(lists.sweep(s, sg));
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! The sweep protocol over plain lists, single-threaded and with a racing sweeper (these
    //! also run under Miri; the loom models below explore the interleavings).
    use super::*;
    use std::sync::Mutex;

    struct Lists {
        gens: Vec<SweepGen>,
        swept: Vec<AtomicUsize>,
        /// `sets[class][parity]`; span `i` is of class `i % 2`.
        sets: Vec<[Mutex<Vec<usize>>; 2]>,
    }

    fn parity(sg: u32) -> usize {
        (sg / 2 % 2) as usize
    }

    impl SweepLists for Lists {
        type Span = usize;
        fn classes(&self) -> usize {
            2
        }
        fn pop_unswept(&self, class: usize, sg: u32) -> Option<usize> {
            self.sets[class][1 - parity(sg)].lock().unwrap().pop()
        }
        fn gen_of(&self, s: usize) -> &SweepGen {
            &self.gens[s]
        }
        fn sweep(&self, s: usize, sg: u32) -> usize {
            self.swept[s].fetch_add(1, Ordering::Relaxed);
            self.gens[s].set(sg);
            self.sets[s % 2][parity(sg)].lock().unwrap().push(s);
            1
        }
    }

    #[test]
    fn cycles_sweep_every_span_once_with_a_racing_sweeper() {
        const SPANS: usize = 6;
        let cycles = if cfg!(miri) { 3 } else { 200 };
        let lists = std::sync::Arc::new(Lists {
            gens: (0..SPANS).map(|_| SweepGen::new(2)).collect(),
            swept: (0..SPANS).map(|_| AtomicUsize::new(0)).collect(),
            sets: (0..2)
                .map(|_| [Mutex::new(Vec::new()), Mutex::new(Vec::new())])
                .collect(),
        });
        for s in 0..SPANS {
            lists.sets[s % 2][parity(2)].lock().unwrap().push(s);
        }
        let state = std::sync::Arc::new(SweepState::new(2));
        state.cursor.store(2, Ordering::Relaxed);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let bg = {
            let (l, st, stop) = (lists.clone(), state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if st.sweep_one(&*l).is_none() {
                        std::thread::yield_now();
                    }
                }
            })
        };
        for cycle in 1..=cycles {
            // start_mark: finish the sweep with the gate closed.
            state.close();
            while state.sweep_one_closed(&*lists).is_some() {}
            state.open();
            for s in 0..SPANS {
                assert_eq!(
                    lists.swept[s].load(Ordering::Relaxed),
                    cycle - 1,
                    "span {s}"
                );
            }
            // finish_mark.
            state.close();
            state.advance();
            state.open();
        }
        stop.store(true, Ordering::Relaxed);
        bg.join().unwrap();
        while state.sweep_one(&*lists).is_some() {}
        for s in 0..SPANS {
            assert_eq!(lists.swept[s].load(Ordering::Relaxed), cycles);
            assert_eq!(lists.gens[s].load(), state.sweepgen());
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Exactly-once sweeping and span hand-off between a cache, mcentral and the sweeper,
    //! modelled as plain data over the shim: span ids in `SpanSet`s, a sweep counter per span.
    use super::*;
    use crate::loom::{Arc, AtomicUsize, thread};
    use crate::spanset::SpanSet;

    struct Model {
        gens: Vec<SweepGen>,
        swept: Vec<AtomicUsize>,
        unswept: SpanSet<usize>,
        swept_list: SpanSet<usize>,
    }

    impl Model {
        fn sweep(&self, id: usize, sg: u32) {
            // The body of a sweep: in the real heap, bitmap work. Count it.
            self.swept[id].fetch_add(1, Ordering::Relaxed);
            self.gens[id].set(sg);
            self.swept_list.push(id);
        }

        /// Background sweeper / proportional sweep: pop unswept spans, sweep those we win.
        fn sweep_one(&self, sg: u32) -> bool {
            match self.unswept.pop() {
                Some(id) => {
                    if self.gens[id].try_claim(sg) {
                        self.sweep(id, sg);
                    }
                    true
                }
                None => false,
            }
        }

        /// `ensure_swept`: reach one span directly, not through a list.
        fn ensure_swept(&self, id: usize, sg: u32) {
            loop {
                let v = self.gens[id].load();
                if is_swept(v, sg) {
                    return;
                }
                if self.gens[id].try_claim(sg) {
                    self.sweep(id, sg);
                    return;
                }
                thread::yield_now();
            }
        }
    }

    /// Two classes of one span each, in per-parity lists, swept through the heap's own
    /// `SweepState::sweep_one`.
    struct Lists {
        gens: Vec<SweepGen>,
        swept: Vec<AtomicUsize>,
        /// `sets[class][parity]`.
        sets: Vec<[SpanSet<usize>; 2]>,
    }

    fn parity(sg: u32) -> usize {
        (sg / 2 % 2) as usize
    }

    impl SweepLists for Lists {
        type Span = usize;
        fn classes(&self) -> usize {
            self.sets.len()
        }
        fn pop_unswept(&self, class: usize, sg: u32) -> Option<usize> {
            self.sets[class][1 - parity(sg)].pop()
        }
        fn gen_of(&self, s: usize) -> &SweepGen {
            &self.gens[s]
        }
        fn sweep(&self, s: usize, sg: u32) -> usize {
            self.swept[s].fetch_add(1, Ordering::Relaxed);
            self.gens[s].set(sg);
            // Span `s` is of class `s`.
            self.sets[s][parity(sg)].push(s);
            1
        }
    }

    impl Lists {
        fn entries(&self, s: usize) -> usize {
            // Drain and refill every set, counting `s`.
            let mut n = 0;
            for class in &self.sets {
                for set in class {
                    let mut keep = Vec::new();
                    while let Some(x) = set.pop() {
                        n += (x == s) as usize;
                        keep.push(x);
                    }
                    for x in keep {
                        set.push(x);
                    }
                }
            }
            n
        }
    }

    #[test]
    fn a_flip_never_lets_a_sweeper_act_on_the_old_generation() {
        // The world flips from generation 4 to 6 (`finish_mark`) while a background sweeper
        // runs `sweep_one`; then the next cycle's sweeping runs on the main thread. Without
        // the gate the sweeper could read 4, then walk the new cycle's lists: drop a span
        // the main thread had just swept into them (its claim for 4 fails), or push the
        // cursor past both classes before the main thread swept anything.
        loom::model(|| {
            let sg = 4u32;
            let lists = Arc::new(Lists {
                gens: (0..2).map(|_| SweepGen::new(sg)).collect(),
                swept: (0..2).map(|_| AtomicUsize::new(0)).collect(),
                sets: (0..2).map(|_| [SpanSet::new(), SpanSet::new()]).collect(),
            });
            for s in 0..2 {
                lists.sets[s][parity(sg)].push(s);
            }
            let state = Arc::new(SweepState::new(sg));
            // Cycle 4's sweep is over.
            state.cursor.store(2, Ordering::Relaxed);
            let (l1, st1) = (lists.clone(), state.clone());
            let bg = thread::spawn(move || {
                // Two calls: one may straddle the flip, the next runs after it.
                st1.sweep_one(&*l1);
                st1.sweep_one(&*l1);
            });
            // finish_mark, as the heap does it.
            state.close();
            let new = state.advance();
            state.open();
            while state.sweep_one(&*lists).is_some() {}
            bg.join().unwrap();
            // The sweeper may have finished the cycle; either way nothing is left.
            assert!(state.sweep_one(&*lists).is_none());
            for s in 0..2 {
                assert_eq!(
                    lists.swept[s].load(Ordering::Relaxed),
                    1,
                    "span {s} swept once"
                );
                assert_eq!(
                    lists.gens[s].load(),
                    new,
                    "span {s} swept for the new cycle"
                );
                assert_eq!(lists.entries(s), 1, "span {s} in exactly one list");
            }
        });
    }

    #[test]
    fn each_span_is_swept_exactly_once_per_cycle() {
        loom::model(|| {
            let sg = 4u32;
            let n = 3;
            let m = Arc::new(Model {
                gens: (0..n).map(|_| SweepGen::new(sg - 2)).collect(),
                swept: (0..n).map(|_| AtomicUsize::new(0)).collect(),
                unswept: SpanSet::new(),
                swept_list: SpanSet::new(),
            });
            for id in 0..n {
                m.unswept.push(id);
            }
            let m1 = m.clone();
            let bg = thread::spawn(move || while m1.sweep_one(sg) {});
            let m2 = m.clone();
            let direct = thread::spawn(move || m2.ensure_swept(1, sg));
            let m3 = m.clone();
            // A proportional sweep inside another thread's allocation.
            let proportional = thread::spawn(move || {
                m3.sweep_one(sg);
            });
            // A cache refill on this thread: take an unswept span and sweep it if it wins.
            m.sweep_one(sg);
            bg.join().unwrap();
            direct.join().unwrap();
            proportional.join().unwrap();
            while m.sweep_one(sg) {}
            for id in 0..n {
                assert_eq!(m.swept[id].load(Ordering::Relaxed), 1, "span {id}");
                assert!(is_swept(m.gens[id].load(), sg));
            }
        });
    }

    #[test]
    fn spans_pass_between_caches_central_and_sweeper_with_one_owner_at_a_time() {
        loom::model(|| {
            // Span 0 is cached by cache A (swept then cached: sg+3); span 1 waits unswept in
            // mcentral. Cache A releases its span (to the swept partial list) while cache B
            // refills (swept list first, else an unswept span it sweeps) and the background
            // sweeper drains the unswept list. Every acquisition checks that nobody else owns
            // the span.
            let sg = 4u32;
            let m = Arc::new(Model {
                gens: vec![SweepGen::new(sg + 3), SweepGen::new(sg - 2)],
                swept: (0..2).map(|_| AtomicUsize::new(0)).collect(),
                unswept: SpanSet::new(),
                swept_list: SpanSet::new(),
            });
            let owners: Arc<Vec<AtomicUsize>> =
                Arc::new(vec![AtomicUsize::new(1), AtomicUsize::new(0)]);
            m.unswept.push(1);
            let (m1, o1) = (m.clone(), owners.clone());
            let cache_a = thread::spawn(move || {
                // uncacheSpan: not stale, so publish "swept" and hand the span to mcentral.
                assert_eq!(m1.gens[0].load(), sg + 3);
                o1[0].fetch_sub(1, Ordering::AcqRel);
                m1.gens[0].set(sg);
                m1.swept_list.push(0);
            });
            let (m2, o2) = (m.clone(), owners.clone());
            let cache_b = thread::spawn(move || {
                // refill: a swept span, else sweep an unswept one we win.
                let got = match m2.swept_list.pop() {
                    Some(id) => Some(id),
                    None => match m2.unswept.pop() {
                        Some(id) if m2.gens[id].try_claim(sg) => {
                            m2.swept[id].fetch_add(1, Ordering::Relaxed);
                            Some(id)
                        }
                        _ => None,
                    },
                };
                if let Some(id) = got {
                    assert_eq!(
                        o2[id].fetch_add(1, Ordering::AcqRel),
                        0,
                        "span {id} owned twice"
                    );
                    m2.gens[id].set(sg + 3);
                    o2[id].fetch_sub(1, Ordering::AcqRel);
                    m2.gens[id].set(sg);
                    m2.swept_list.push(id);
                }
            });
            // The background sweeper on this thread.
            while let Some(id) = m.unswept.pop() {
                if m.gens[id].try_claim(sg) {
                    assert_eq!(
                        owners[id].fetch_add(1, Ordering::AcqRel),
                        0,
                        "span {id} owned twice"
                    );
                    owners[id].fetch_sub(1, Ordering::AcqRel);
                    m.sweep(id, sg);
                }
            }
            cache_a.join().unwrap();
            cache_b.join().unwrap();
            assert_eq!(
                m.swept[1].load(Ordering::Relaxed),
                1,
                "the unswept span is swept exactly once"
            );
            for id in 0..2 {
                assert!(is_swept(m.gens[id].load(), sg));
            }
        });
    }

    #[test]
    fn a_span_cached_before_the_flip_is_swept_once_by_its_cache() {
        loom::model(|| {
            // Generation 2: span 0 is swept and then cached (2+3). The world stops, the
            // generation moves to 4; the span now reads 5 = sg+1: the cache must sweep it.
            // Span 1 sits in the unswept list for the background sweeper.
            let sg = 4u32;
            let m = Arc::new(Model {
                gens: vec![SweepGen::new(5), SweepGen::new(sg - 2)],
                swept: (0..2).map(|_| AtomicUsize::new(0)).collect(),
                unswept: SpanSet::new(),
                swept_list: SpanSet::new(),
            });
            m.unswept.push(1);
            let m1 = m.clone();
            let bg = thread::spawn(move || {
                while m1.sweep_one(sg) {}
                // The sweeper never claims a cached span.
                assert!(!m1.gens[0].try_claim(sg) || m1.swept[0].load(Ordering::Relaxed) == 0);
            });
            // The cache releases its span: stale (sg+1) → claim as sg-1 and sweep it.
            let v = m.gens[0].load();
            assert_eq!(v, sg + 1);
            m.gens[0].set(sg - 1);
            m.sweep(0, sg);
            bg.join().unwrap();
            // A refill then takes a swept span off the list and caches it (sg+3).
            let id = m.swept_list.pop().expect("a swept span");
            m.gens[id].set(sg + 3);
            assert!(is_swept(m.gens[id].load(), sg));
            assert_eq!(m.swept[0].load(Ordering::Relaxed), 1);
            assert_eq!(m.swept[1].load(Ordering::Relaxed), 1);
        });
    }
}
