//! Goroutine dumps in Go's text format: `stack(all)` and the fatal reports' goroutine list.
//!
//! A dump walks each goroutine's stack by frame pointers (the workspace is built with
//! `-C force-frame-pointers=yes`, `.cargo/config.toml`; code built without them ends its
//! walks early but never reads outside the goroutine's stack) from where it stopped: a
//! parked or queued goroutine from the frame `switch` left at its saved stack pointer, one
//! stopped at a safepoint from the safepoint's frame, one suspended by signal from its
//! interrupted registers. Goroutines other than the caller are walked with the world
//! stopped, into buffers reserved beforehand; names and lines are looked up after the
//! restart (symbolization allocates).

use crate::park::WaitReason;
use crate::sched::Shared;
use crate::trace::{self, MAX_FRAMES};
use crate::world::{GStatus, WorldStopped};
use std::fmt::Write;
use std::sync::Arc;

/// Frames recorded per goroutine (Go prints at most 100).
const FRAMES: usize = MAX_FRAMES;
/// Frames recorded per goroutine however many there are.
const MIN_FRAMES: usize = 16;
/// Return addresses a dump reserves in all (32 MiB): with many goroutines, each gets fewer
/// frames (down to `MIN_FRAMES`).
const DUMP_WORDS: usize = 4 << 20;
/// Goroutines a dump lists besides the caller; the rest are counted.
const DUMP_GOROUTINES: usize = 100_000;

/// One goroutine's walk, recorded during a stop.
#[derive(Clone, Copy)]
struct Walked {
    id: u64,
    status: GStatus,
    /// Its addresses: `pcs[at..at + len]`.
    at: usize,
    len: usize,
}

/// The bounds of the calling goroutine's stack, or of the calling thread's.
fn current_bounds() -> (usize, usize) {
    let g = crate::m::current_g();
    if !g.is_null() {
        // SAFETY: the running goroutine owns its stack slot while it runs (we are it).
        if let Some(s) = unsafe { (*(*g).stack.get()).as_ref() } {
            return (s.base() as usize, s.top() as usize);
        }
    }
    thread_bounds()
}

/// The calling thread's stack bounds; (0, 0) when unknown (the walk then records nothing).
#[cfg(target_os = "linux")]
fn thread_bounds() -> (usize, usize) {
    // SAFETY: `attr` is initialised by pthread_getattr_np before use and destroyed after;
    // the out-pointers are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return (0, 0);
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size = 0usize;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        if ok {
            (addr as usize, addr as usize + size)
        } else {
            (0, 0)
        }
    }
}

/// The calling thread's stack bounds (macOS: the stack grows down from the address
/// `pthread_get_stackaddr_np` gives).
#[cfg(target_os = "macos")]
fn thread_bounds() -> (usize, usize) {
    // SAFETY: both calls only read the calling thread's own attributes.
    unsafe {
        let top = libc::pthread_get_stackaddr_np(libc::pthread_self()) as usize;
        let size = libc::pthread_get_stacksize_np(libc::pthread_self());
        (top - size, top)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn thread_bounds() -> (usize, usize) {
    (0, 0)
}

/// The calling goroutine's (or thread's) frames, from the caller of this function outward.
#[inline(never)]
fn own_frames() -> Vec<usize> {
    let start = trace::current_start();
    let mut pcs = vec![0; FRAMES];
    let (lo, hi) = current_bounds();
    // SAFETY: `[lo, hi)` is the calling goroutine's (or thread's) own stack: mapped, and
    // below our frame nothing writes to it while we walk the frames above.
    let n = unsafe { trace::walk(start.pc, start.fp, lo, hi, &mut pcs) };
    pcs.truncate(n);
    pcs
}

/// Go's `runtime.Stack`: the calling goroutine's stack (`goroutine 7 [running]:` then its
/// frames) and, with `all`, every other goroutine of its runtime after it, each after a
/// blank line. Other goroutines are walked with the world stopped (briefly: the walk reads
/// a few words per frame). On a plain thread, the thread's own frames under `thread
/// [running]:`, and no others.
pub fn stack(all: bool) -> String {
    let pcs = own_frames();
    let me = crate::park::goid();
    let mut out = String::new();
    match me {
        Some(id) => trace::write_goroutine(&mut out, id, "running", &pcs),
        None => {
            let frames = trace::symbolize_stack(&pcs, false);
            out.push_str("thread [running]:\n");
            trace::write_frames(&mut out, &frames);
        }
    }
    if all && me.is_some() {
        let m = crate::m::current_m();
        // SAFETY: a goroutine runs on a live M, which keeps its runtime alive.
        let shared = unsafe { (*m).shared.clone() };
        others(&shared, me, &mut out);
    }
    out
}

/// Go's `runtime.Stack(buf, all)`: writes the dump into `buf`, truncated to fit, and
/// returns the number of bytes written.
pub fn stack_into(buf: &mut [u8], all: bool) -> usize {
    let text = stack(all);
    let n = text.len().min(buf.len());
    buf[..n].copy_from_slice(&text.as_bytes()[..n]);
    n
}

/// Appends every goroutine of `shared` except `me` to `out`, ordered by id.
pub(crate) fn others(shared: &Arc<Shared>, me: Option<u64>, out: &mut String) {
    // Reserved before the stop (goroutines cannot be created while it lasts), within a
    // budget: a program with millions of goroutines gets fewer frames each, and those beyond
    // `DUMP_GOROUTINES` are counted, not listed.
    let room = (shared.num_goroutine() + 64).min(DUMP_GOROUTINES);
    let per = (DUMP_WORDS / room).clamp(MIN_FRAMES, FRAMES);
    let mut walked: Vec<Walked> = Vec::with_capacity(room);
    let mut pcs = vec![0usize; room * per];
    let mut elided = 0usize;
    {
        let world = WorldStopped::stop(shared);
        let mut used = 0;
        world.for_each_goroutine(|g| {
            if Some(g.id) == me {
                return;
            }
            if walked.len() == walked.capacity() {
                elided += 1;
                return;
            }
            let len = match (&g.stack, g.pc) {
                // SAFETY: the goroutine's stack is mapped while it is registered, and the world
                // is stopped: nothing writes to it during the walk.
                (Some(stack), pc) if pc != 0 => unsafe {
                    trace::walk(pc, g.fp, stack.start, stack.end, &mut pcs[used..used + per])
                },
                _ => 0,
            };
            walked.push(Walked {
                id: g.id,
                status: g.status,
                at: used,
                len,
            });
            used += len;
        });
        world.start();
    }
    walked.sort_unstable_by_key(|w| w.id);
    for w in &walked {
        trace::write_goroutine(out, w.id, w.status.as_str(), &pcs[w.at..w.at + w.len]);
    }
    if elided > 0 {
        let _ = write!(out, "\n...{elided} additional goroutines elided...\n");
    }
}

/// The goroutine list of a fatal report (every goroutine parked; the caller holds the
/// scheduler lock with every M idle, so nothing runs and no stop is needed).
pub(crate) fn parked_dump(shared: &Shared) -> String {
    let mut entries: Vec<(u64, Option<WaitReason>, Vec<usize>)> = Vec::new();
    shared.allgs.for_each_live(|g, waiting| {
        let mut pcs = vec![0; FRAMES];
        // SAFETY: every M is idle (the caller's contract): no goroutine runs or is resumed,
        // so the stack slot and the saved context stay as they are while we read them.
        let (stack, sp) = unsafe { ((*g.stack.get()).as_ref(), (*g.ctx.get()).sp as usize) };
        let n = match stack {
            // SAFETY: as above; `sp` was saved by `switch` on this mapped stack.
            Some(s) if sp != 0 => unsafe {
                let start = trace::parked_start(sp);
                trace::walk(
                    start.pc,
                    start.fp,
                    s.base() as usize,
                    s.top() as usize,
                    &mut pcs,
                )
            },
            _ => 0,
        };
        pcs.truncate(n);
        entries.push((g.id(), waiting, pcs));
    });
    entries.sort_unstable_by_key(|e| e.0);
    let mut out = String::new();
    for (id, waiting, pcs) in entries {
        let state = waiting.map_or("runnable", WaitReason::as_str);
        trace::write_goroutine(&mut out, id, state, &pcs);
    }
    out
}
