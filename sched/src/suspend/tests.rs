//! Tests of suspension by signal on plain threads: spinning, sleeping, deferring, stray signals, stress.

use super::nopreempt::NoPreempt;
use super::registration::register_current;
use super::slot::{Status, SuspendSlot};
use std::arch::asm;
use std::os::unix::thread::JoinHandleExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Watchdog for waits that must end (generous; never a timing assertion).
const WATCHDOG: Duration = Duration::from_secs(60);

const MAGIC: u64 = 0x5eed_cafe_f00d_d00d;
const PATTERN: u128 = 0x1122_3344_5566_7788_99aa_bbcc_ddee_ff00;

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut n = 0u32;
    while !f() {
        assert!(start.elapsed() < WATCHDOG, "watchdog: {what}");
        // Yield a little, then sleep: the spinners may need this core to make progress.
        n += 1;
        if n < 64 {
            thread::yield_now();
        } else {
            thread::sleep(Duration::from_micros(50));
        }
    }
}

fn wait_status(slot: &SuspendSlot, want: Status) {
    wait_until(&format!("slot to be {want:?}"), || slot.poll() == want);
}

/// What a spinning thread shares with the test.
#[derive(Default)]
struct Spinner {
    slot: Arc<SuspendSlot>,
    stop: AtomicBool,
    ready: AtomicBool,
    counter: AtomicU64,
    /// The spin loop's code range [start, end).
    range: [AtomicUsize; 2],
    /// The address of a local in the spinning frame.
    local: AtomicUsize,
}

/// The spin loop: holds MAGIC in r12 / x20 and PATTERN in xmm7 / v8, and increments the
/// counter until `stop`, with no calls. Records its own code range first.
#[inline(never)]
fn spin_asm(s: &Spinner) {
    let local = 0u64;
    s.local
        .store(std::ptr::addr_of!(local) as usize, Ordering::Relaxed);
    s.ready.store(true, Ordering::Release);
    let lo = PATTERN as u64;
    let hi = (PATTERN >> 64) as u64;
    // SAFETY: the asm writes only the counter (an aligned u64 inside an AtomicU64 others read
    // atomically), the range slots (likewise), and the registers it declares as clobbered.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        asm!(
            "mov r12, {magic}",
            "movq xmm7, {lo}",
            "movq xmm0, {hi}",
            "punpcklqdq xmm7, xmm0",
            "lea {tmp}, [rip + 2f]",
            "mov qword ptr [{range}], {tmp}",
            "lea {tmp}, [rip + 3f]",
            "mov qword ptr [{range} + 8], {tmp}",
            "2:",
            "add qword ptr [{ctr}], 1",
            "cmp byte ptr [{stop}], 0",
            "je 2b",
            "3:",
            magic = in(reg) MAGIC,
            lo = in(reg) lo,
            hi = in(reg) hi,
            range = in(reg) s.range.as_ptr(),
            ctr = in(reg) s.counter.as_ptr(),
            stop = in(reg) s.stop.as_ptr(),
            tmp = out(reg) _,
            out("r12") _,
            out("xmm7") _,
            out("xmm0") _,
            options(nostack),
        );
    }
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        asm!(
            "mov x20, {magic}",
            "fmov d8, {lo}",
            "mov v8.d[1], {hi}",
            "adr {tmp}, 2f",
            "str {tmp}, [{range}]",
            "adr {tmp}, 3f",
            "str {tmp}, [{range}, #8]",
            "2:",
            "ldr {tmp}, [{ctr}]",
            "add {tmp}, {tmp}, #1",
            "str {tmp}, [{ctr}]",
            "ldrb {tmp:w}, [{stop}]",
            "cbz {tmp:w}, 2b",
            "3:",
            magic = in(reg) MAGIC,
            lo = in(reg) lo,
            hi = in(reg) hi,
            range = in(reg) s.range.as_ptr(),
            ctr = in(reg) s.counter.as_ptr(),
            stop = in(reg) s.stop.as_ptr(),
            tmp = out(reg) _,
            out("x20") _,
            out("v8") _,
            options(nostack),
        );
    }
}

/// Like `spin_asm`, holding PATTERN in the upper half of ymm9 (the XSAVE area's AVX part).
///
/// # Safety
///
/// The CPU supports AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn spin_avx(s: &Spinner) {
    s.ready.store(true, Ordering::Release);
    let lo = PATTERN as u64;
    let hi = (PATTERN >> 64) as u64;
    // SAFETY: AVX is available (the contract); the asm writes only the counter and the
    // registers it declares as clobbered.
    unsafe {
        asm!(
            "movq xmm0, {lo}",
            "movq xmm1, {hi}",
            "punpcklqdq xmm0, xmm1",
            "vinsertf128 ymm9, ymm9, xmm0, 1",
            "2:",
            "add qword ptr [{ctr}], 1",
            "cmp byte ptr [{stop}], 0",
            "je 2b",
            lo = in(reg) lo,
            hi = in(reg) hi,
            ctr = in(reg) s.counter.as_ptr(),
            stop = in(reg) s.stop.as_ptr(),
            out("xmm0") _,
            out("xmm1") _,
            out("ymm9") _,
            options(nostack),
        );
    }
}

fn spawn_spinner() -> (Arc<Spinner>, thread::JoinHandle<()>) {
    spawn_spinner_with(spin_asm)
}

fn spawn_spinner_with(spin: fn(&Spinner)) -> (Arc<Spinner>, thread::JoinHandle<()>) {
    let s = Arc::new(Spinner::default());
    let h = {
        let s = Arc::clone(&s);
        thread::spawn(move || {
            let _reg = register_current(&s.slot);
            spin(&s);
        })
    };
    wait_until("spinner to start", || s.ready.load(Ordering::Acquire));
    (s, h)
}

fn stop(s: &Spinner, h: thread::JoinHandle<()>) {
    s.stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    assert_eq!(s.slot.poll(), Status::Unregistered);
}

/// A suspended spinner's counter stays put across yields (it cannot run).
fn assert_frozen(s: &Spinner) {
    let c = s.counter.load(Ordering::Relaxed);
    for _ in 0..100 {
        thread::yield_now();
    }
    thread::sleep(Duration::from_millis(10));
    assert_eq!(
        s.counter.load(Ordering::Relaxed),
        c,
        "counter moved while suspended"
    );
}

fn wait_advance(s: &Spinner) {
    let c = s.counter.load(Ordering::Relaxed);
    wait_until("counter to advance", || {
        s.counter.load(Ordering::Relaxed) > c
    });
}

#[test]
#[cfg_attr(miri, ignore)]
fn spinning_thread_is_suspended_and_resumed() {
    let (s, h) = spawn_spinner();
    wait_advance(&s);
    assert!(s.slot.request());
    assert!(
        !s.slot.request(),
        "a second request while one is outstanding"
    );
    wait_status(&s.slot, Status::Suspended);
    assert_frozen(&s);
    // SAFETY: our request succeeded, poll said Suspended, nobody resumes meanwhile.
    let ctx = unsafe { s.slot.context() };
    let (start, end) = (
        s.range[0].load(Ordering::Relaxed),
        s.range[1].load(Ordering::Relaxed),
    );
    assert!(
        (start..end).contains(&ctx.pc()),
        "pc {:#x} outside the loop {start:#x}..{end:#x}",
        ctx.pc()
    );
    // The local lies just above where a scan of the stack starts: above the stack pointer,
    // or in the red zone below it (the spinner is a leaf frame when optimised).
    let local = s.local.load(Ordering::Relaxed);
    let from = ctx.stack_scan_start();
    assert!(
        from <= local && local - from < 64 * 1024,
        "the spinning frame's local at {local:#x} is not just above the scan start {from:#x} \
         (sp {:#x})",
        ctx.sp()
    );
    assert_ne!(ctx.fp(), 0);
    assert!(ctx.stack_scan_start() <= ctx.sp());
    assert!(s.slot.resume());
    assert_eq!(s.slot.poll(), Status::Running);
    wait_advance(&s);
    // A second round works the same.
    assert!(s.slot.request());
    wait_status(&s.slot, Status::Suspended);
    assert_frozen(&s);
    assert!(s.slot.resume());
    wait_advance(&s);
    stop(&s, h);
}

#[test]
#[cfg_attr(miri, ignore)]
fn general_and_vector_registers_are_saved() {
    let (s, h) = spawn_spinner();
    assert!(s.slot.request());
    wait_status(&s.slot, Status::Suspended);
    // SAFETY: as in the test above.
    let ctx = unsafe { s.slot.context() };
    #[cfg(target_arch = "x86_64")]
    let (greg, vreg) = (ctx.general()[libc::REG_R12 as usize], ctx.vector(7));
    #[cfg(target_arch = "aarch64")]
    let (greg, vreg) = (ctx.general()[20], ctx.vector(8));
    assert_eq!(greg, MAGIC);
    assert_eq!(vreg, Some(PATTERN));
    // The scan's view holds them too.
    let words = ctx.as_words();
    assert!(words.contains(&MAGIC));
    assert!(
        words
            .windows(2)
            .any(|w| w[0] == PATTERN as u64 && w[1] == (PATTERN >> 64) as u64)
    );
    #[cfg(target_arch = "x86_64")]
    assert!(
        words.len() > 23 + 512 / 8,
        "XSAVE area beyond the legacy image"
    );
    assert!(s.slot.resume());
    stop(&s, h);
}

#[cfg(target_arch = "x86_64")]
#[test]
#[cfg_attr(miri, ignore)]
fn avx_upper_halves_are_saved() {
    if !std::arch::is_x86_feature_detected!("avx") {
        return;
    }
    // SAFETY: AVX is available (checked above).
    let (s, h) = spawn_spinner_with(|s| unsafe { spin_avx(s) });
    assert!(s.slot.request());
    wait_status(&s.slot, Status::Suspended);
    // SAFETY: our request succeeded, poll said Suspended, nobody resumes meanwhile.
    let words = unsafe { s.slot.context() }.as_words();
    // The XSAVE standard format keeps YMM_Hi128 (16 bytes per register) at byte 576.
    let i = 23 + (576 + 16 * 9) / 8;
    assert!(words.len() >= i + 2, "no AVX state saved");
    assert_eq!(
        (words[i], words[i + 1]),
        (PATTERN as u64, (PATTERN >> 64) as u64)
    );
    assert!(s.slot.resume());
    stop(&s, h);
}

#[test]
#[cfg_attr(miri, ignore)]
fn no_preempt_window_defers_until_it_ends() {
    let slot = Arc::new(SuspendSlot::new());
    let inside = Arc::new(AtomicBool::new(false));
    let leave = Arc::new(AtomicBool::new(false));
    let after = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let h = {
        let (slot, inside, leave, after, stop) = (
            slot.clone(),
            inside.clone(),
            leave.clone(),
            after.clone(),
            stop.clone(),
        );
        thread::spawn(move || {
            let _reg = register_current(&slot);
            {
                let _outer = NoPreempt::enter();
                let _inner = NoPreempt::enter();
                inside.store(true, Ordering::Release);
                while !leave.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                drop(_inner);
                // Still inside the outer window: still deferred.
                assert_eq!(NoPreempt::depth(), 1);
            }
            // The window's end re-raised the request: suspended before this line ran.
            while !stop.load(Ordering::Relaxed) {
                after.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    wait_until("thread in its window", || inside.load(Ordering::Acquire));
    assert!(slot.request());
    wait_status(&slot, Status::Deferred);
    // Deferred stays deferred while the window lasts.
    thread::sleep(Duration::from_millis(20));
    assert_eq!(slot.poll(), Status::Deferred);
    leave.store(true, Ordering::Release);
    wait_status(&slot, Status::Suspended);
    assert_eq!(
        after.load(Ordering::Relaxed),
        0,
        "ran on after its window ended"
    );
    assert!(slot.resume());
    wait_until("thread to run on", || after.load(Ordering::Relaxed) > 0);
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
}

thread_local! {
    /// This thread's answer to the busy hook (const: read in the handler).
    static BUSY: AtomicBool = const { AtomicBool::new(false) };
}

fn busy_hook() -> bool {
    BUSY.with(|b| b.load(Ordering::Relaxed))
}

#[test]
#[cfg_attr(miri, ignore)]
fn busy_hook_defers() {
    // SAFETY: the hook reads a const-initialised thread-local atomic: async-signal-safe.
    // Other tests' threads never set BUSY, so they are unaffected.
    unsafe { super::nopreempt::set_busy_hook(Some(busy_hook)) };
    let slot = Arc::new(SuspendSlot::new());
    let phase = Arc::new(AtomicUsize::new(0));
    let h = {
        let (slot, phase) = (slot.clone(), phase.clone());
        thread::spawn(move || {
            let _reg = register_current(&slot);
            BUSY.with(|b| b.store(true, Ordering::Relaxed));
            phase.store(1, Ordering::Release);
            while phase.load(Ordering::Acquire) == 1 {
                std::hint::spin_loop();
            }
            BUSY.with(|b| b.store(false, Ordering::Relaxed));
            phase.store(3, Ordering::Release);
            while phase.load(Ordering::Acquire) == 3 {
                std::hint::spin_loop();
            }
        })
    };
    wait_until("thread busy", || phase.load(Ordering::Acquire) == 1);
    assert!(slot.request());
    wait_status(&slot, Status::Deferred);
    phase.store(2, Ordering::Release);
    wait_until("thread idle", || phase.load(Ordering::Acquire) == 3);
    // A busy window is not a NoPreempt window: the coordinator retries.
    assert_eq!(slot.poll(), Status::Deferred);
    assert!(slot.retry_deferred());
    wait_status(&slot, Status::Suspended);
    assert!(slot.resume());
    phase.store(4, Ordering::Release);
    h.join().unwrap();
}

#[test]
#[cfg_attr(miri, ignore)]
fn sleeping_thread_is_suspended_and_its_sleep_completes() {
    const SLEEP: Duration = Duration::from_millis(300);
    let slot = Arc::new(SuspendSlot::new());
    let sleeping = Arc::new(AtomicBool::new(false));
    let h = {
        let (slot, sleeping) = (slot.clone(), sleeping.clone());
        thread::spawn(move || {
            let _reg = register_current(&slot);
            sleeping.store(true, Ordering::Release);
            let t = Instant::now();
            thread::sleep(SLEEP);
            t.elapsed()
        })
    };
    wait_until("thread to sleep", || sleeping.load(Ordering::Acquire));
    thread::sleep(Duration::from_millis(50));
    assert!(slot.request());
    wait_status(&slot, Status::Suspended);
    assert!(slot.resume());
    let slept = h.join().unwrap();
    // std's sleep retries EINTR with the remaining time: never shorter than asked.
    assert!(slept >= SLEEP, "sleep cut short: {slept:?}");
}

#[test]
#[cfg_attr(miri, ignore)]
fn stress_two_spinners() {
    let cycles = 10_000;
    let (a, ha) = spawn_spinner();
    let (b, hb) = spawn_spinner();
    for i in 0..cycles {
        assert!(a.slot.request());
        assert!(b.slot.request());
        wait_status(&a.slot, Status::Suspended);
        wait_status(&b.slot, Status::Suspended);
        let (ca, cb) = (
            a.counter.load(Ordering::Relaxed),
            b.counter.load(Ordering::Relaxed),
        );
        thread::yield_now();
        assert_eq!(a.counter.load(Ordering::Relaxed), ca);
        assert_eq!(b.counter.load(Ordering::Relaxed), cb);
        assert!(a.slot.resume());
        assert!(b.slot.resume());
        // Every 8th cycle both must run again before the next request; in between the next
        // request races with the handler's return from the last suspension (the state turns
        // REQUESTED before the handler saw RUNNING; the pending signal then suspends again).
        if i % 8 == 0 {
            wait_until("a to advance", || a.counter.load(Ordering::Relaxed) > ca);
            wait_until("b to advance", || b.counter.load(Ordering::Relaxed) > cb);
        }
    }
    stop(&a, ha);
    stop(&b, hb);
}

#[test]
#[cfg_attr(miri, ignore)]
fn stray_signals_are_ignored() {
    super::signal::install();
    // A registered thread with no request outstanding.
    let (s, h) = spawn_spinner();
    let tid = s.slot.tid_for_tests();
    super::signal::send(tid);
    // SAFETY: signalling a live thread of this process with a signal whose handler is ours.
    unsafe { libc::pthread_kill(h.as_pthread_t() as libc::pthread_t, libc::SIGURG) };
    wait_advance(&s);
    wait_advance(&s);
    assert_eq!(s.slot.poll(), Status::Running);
    // A cancelled request: its signal may land after the resume, and is ignored.
    assert!(s.slot.request());
    s.slot.resume();
    wait_advance(&s);
    assert_eq!(s.slot.poll(), Status::Running);
    stop(&s, h);

    // An unregistered thread, with our cookie and without.
    let go = Arc::new(AtomicBool::new(false));
    let tid = Arc::new(AtomicUsize::new(0));
    let h = {
        let (go, tid) = (go.clone(), tid.clone());
        thread::spawn(move || {
            tid.store(super::signal::current_tid(), Ordering::Release);
            let mut n = 0u64;
            while !go.load(Ordering::Acquire) {
                n += 1;
                std::hint::spin_loop();
            }
            n
        })
    };
    wait_until("thread to start", || tid.load(Ordering::Acquire) != 0);
    super::signal::send(tid.load(Ordering::Relaxed));
    // SAFETY: as above.
    unsafe { libc::pthread_kill(h.as_pthread_t() as libc::pthread_t, libc::SIGURG) };
    go.store(true, Ordering::Release);
    h.join().unwrap();
}

#[test]
#[cfg_attr(miri, ignore)]
fn request_fails_for_an_unregistered_slot() {
    let slot = SuspendSlot::new();
    assert_eq!(slot.poll(), Status::Unregistered);
    assert!(!slot.request());
    assert!(!slot.retry_deferred());
    assert!(!slot.resume());
}

/// Costs, printed (run with `--ignored --nocapture`, in release for meaningful numbers).
#[test]
#[ignore = "a measurement that prints and asserts nothing: run by hand with --ignored --nocapture"]
fn measure_costs() {
    const N: u32 = 10_000_000;
    let t = Instant::now();
    for _ in 0..N {
        let g = NoPreempt::enter();
        std::hint::black_box(&g);
        drop(g);
    }
    println!(
        "NoPreempt enter+exit: {:.2} ns",
        t.elapsed().as_nanos() as f64 / f64::from(N)
    );
    let (s, h) = spawn_spinner();
    let mut rounds: Vec<Duration> = (0..1000)
        .map(|_| {
            let t = Instant::now();
            assert!(s.slot.request());
            while s.slot.poll() != Status::Suspended {
                std::hint::spin_loop();
            }
            s.slot.resume();
            let d = t.elapsed();
            wait_advance(&s);
            d
        })
        .collect();
    rounds.sort();
    println!(
        "request -> suspended -> resume: median {:?}, p90 {:?}",
        rounds[500], rounds[900]
    );
    stop(&s, h);
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_slot_registers_one_thread_at_a_time() {
    let (s, h) = spawn_spinner();
    let slot = s.slot.clone();
    thread::spawn(move || {
        let again =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| register_current(&slot)));
        assert!(again.is_err(), "a second thread registered the same slot");
        // The failed attempt left this thread unregistered: it can take another slot.
        let other = Arc::new(SuspendSlot::new());
        let _reg = register_current(&other);
        assert_eq!(other.poll(), Status::Running);
    })
    .join()
    .unwrap();
    // The first registration is intact.
    assert!(s.slot.request());
    wait_status(&s.slot, Status::Suspended);
    assert!(s.slot.resume());
    stop(&s, h);
    // Unregistered, the slot takes a new thread.
    let slot = s.slot.clone();
    thread::spawn(move || {
        let _reg = register_current(&slot);
        assert_eq!(slot.poll(), Status::Running);
    })
    .join()
    .unwrap();
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_leaked_registration_ends_with_its_thread() {
    let slot = Arc::new(SuspendSlot::new());
    {
        let slot = slot.clone();
        thread::spawn(move || std::mem::forget(register_current(&slot)))
            .join()
            .unwrap();
    }
    assert_eq!(slot.poll(), Status::Unregistered);
    assert!(!slot.request());
}
