//! Turning code addresses into function names, files and lines (allocates: never with the world stopped).
//!
//! Files, lines and inlined calls come from the binary's debug information through the
//! `backtrace` crate (the resolver std's own backtraces use). The function an address
//! physically lies in is named, and its start (for Go's `+0x1d` offset) found, from the
//! symbol table (`symtab.rs`: the light debug information has bare names only), or else
//! from the unwinder's tables. One address can stand for several frames: when calls
//! were inlined, the debug information records each inlined function at that address, and
//! each becomes a [`Frame`], innermost first, as Go prints inlined calls.
//!
//! # Not while the world is stopped
//!
//! Symbolizing allocates, takes `backtrace`'s global lock and, the first time, reads and
//! parses the debug information of every loaded object. A goroutine stopped by a
//! stop-the-world may hold the allocator's lock (or be inside this very code), so doing any
//! of this during the stop can deadlock. The dumper collects raw addresses with
//! [`walk`](super::walk) while the world is stopped, restarts it, and only then calls
//! [`symbolize`] or [`symbolize_stack`].

use core::ffi::c_void;

use super::symtab;

/// One frame of a goroutine's trace, as the dump prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The function, demangled and without the `::h0123456789abcdef` hash; `?` when the
    /// address has no symbol.
    pub(crate) function: String,
    /// The source file of the call (or of the instruction, for an exact pc), if the debug
    /// information names one.
    pub(crate) file: Option<String>,
    /// The line in `file`, if known.
    pub(crate) line: Option<u32>,
    /// The address minus the start of the function that contains it, printed as `+0x1d`.
    /// `None` for an inlined frame (Go prints no offset there: there is no call of its own)
    /// and when neither the symbol table nor the unwinder knows the function's start.
    pub(crate) offset: Option<usize>,
}

unsafe extern "C" {
    /// The start of the function whose unwind entry (FDE) covers the code near `pc`, or null.
    /// Provided by the unwinder std links (libgcc_s on linux-gnu, libunwind elsewhere). It
    /// only searches the unwind tables of the loaded objects and never dereferences `pc`,
    /// so any value is fine: hence `safe`.
    ///
    /// libgcc looks up `pc - 1` (it expects a return address); LLVM's libunwind looks up
    /// `pc` itself. [`function_start`] accounts for that.
    safe fn _Unwind_FindEnclosingFunction(pc: *mut c_void) -> *mut c_void;
}

/// The start of the function containing the instruction byte at `addr`, if the unwind
/// tables cover it.
fn function_start(addr: usize) -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    let query = addr.wrapping_add(1); // libgcc subtracts one again
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let query = addr;
    let start = _Unwind_FindEnclosingFunction(query as *mut c_void) as usize;
    (start != 0 && start <= addr).then_some(start)
}

/// Appends the frames at `pc` to `out`: the functions inlined there, innermost first, then
/// the function the code physically belongs to. Always appends at least one frame (`?` for
/// an address nobody knows).
///
/// `exact` says `pc` is the address of an instruction (an interrupted pc); otherwise it is
/// a return address, as every address a [`walk`](super::walk) yields, and the *call* before
/// it is looked up — at `pc - 1`, since the return address may already belong to the next
/// line or, after a call that never returns, to the next function. The offset is `pc`
/// itself minus the function's start, as Go prints it.
///
/// Allocates: see the module documentation.
pub(crate) fn symbolize(pc: usize, exact: bool, out: &mut Vec<Frame>) {
    let lookup = if exact { pc } else { pc.wrapping_sub(1) };
    let first = out.len();
    if pc != 0 {
        backtrace::resolve(lookup as *mut c_void, |sym| {
            out.push(Frame {
                function: sym
                    .name()
                    .map_or_else(|| "?".to_string(), |n| strip_hash(format!("{n:#}"))),
                file: sym.filename().map(|p| p.display().to_string()),
                line: sym.lineno(),
                offset: None,
            });
        });
    }
    if out.len() == first {
        out.push(Frame {
            function: "?".to_string(),
            file: None,
            line: None,
            offset: None,
        });
    }
    // The last frame is the physical function; the ones before it were inlined into it.
    // The symbol table names it with its full path (see `symtab.rs`) and knows its start;
    // failing that, the unwinder's tables know the start.
    if pc != 0
        && let Some(last) = out.last_mut()
    {
        if let Some((start, name)) = symtab::lookup(lookup) {
            last.function = strip_hash(format!("{:#}", backtrace::SymbolName::new(name)));
            last.offset = Some(pc - start);
        } else if let Some(start) = function_start(lookup) {
            last.offset = Some(pc - start);
        }
    }
}

/// Symbolizes a whole trace as [`walk`](super::walk) collected it: every address a return
/// address, except the first when `first_exact` (a pc interrupted mid-function).
///
/// Allocates: see the module documentation.
pub(crate) fn symbolize_stack(pcs: &[usize], first_exact: bool) -> Vec<Frame> {
    let mut frames = Vec::with_capacity(pcs.len());
    for (i, &pc) in pcs.iter().enumerate() {
        symbolize(pc, i == 0 && first_exact, &mut frames);
    }
    frames
}

/// Removes the `::h` + 16 hex digits hash of a legacy-mangled Rust name, if the demangler
/// left one (the alternate `{:#}` form already omits it).
fn strip_hash(mut name: String) -> String {
    let hash_len = 3 + 16;
    if name.len() > hash_len {
        let (head, tail) = name.split_at(name.len() - hash_len);
        if let Some(hex) = tail.strip_prefix("::h")
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && !head.is_empty()
        {
            name.truncate(head.len());
        }
    }
    name
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::trace::{current_start, walk};
    use std::hint::black_box;

    #[test]
    fn strip_hash_removes_only_a_real_hash() {
        assert_eq!(strip_hash("a::b::h0123456789abcdef".into()), "a::b");
        assert_eq!(
            strip_hash("a::b::h0123456789abcdeg".into()),
            "a::b::h0123456789abcdeg"
        );
        assert_eq!(strip_hash("a::b::h0123".into()), "a::b::h0123");
        assert_eq!(
            strip_hash("::h0123456789abcdef".into()),
            "::h0123456789abcdef"
        );
        assert_eq!(strip_hash("plain".into()), "plain");
    }

    #[test]
    #[cfg_attr(miri, ignore = "symbolization reads the binary's debug information")]
    fn an_unknown_address_is_one_question_mark_frame() {
        let mut out = Vec::new();
        symbolize(0, false, &mut out);
        symbolize(8, false, &mut out);
        let unknown = Frame {
            function: "?".into(),
            file: None,
            line: None,
            offset: None,
        };
        assert_eq!(out, [unknown.clone(), unknown]);
    }

    /// A real walk of the test thread's stack (its bounds come from `pthread_getattr_np`).
    #[cfg(target_os = "linux")]
    mod thread_walk {
        use super::*;

        /// The calling thread's stack, `[lo, hi)`.
        fn thread_stack() -> (usize, usize) {
            // SAFETY: `attr` is initialised by `pthread_getattr_np` before use and destroyed
            // after; the out-pointers are valid locals.
            unsafe {
                let mut attr: libc::pthread_attr_t = core::mem::zeroed();
                assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
                let mut addr: *mut c_void = core::ptr::null_mut();
                let mut size: libc::size_t = 0;
                assert_eq!(libc::pthread_attr_getstack(&attr, &mut addr, &mut size), 0);
                libc::pthread_attr_destroy(&mut attr);
                (addr as usize, addr as usize + size)
            }
        }

        /// Whether `f` is the function called `short` in this module, by its full path (from
        /// the symbol table: the debug information alone would give the bare name).
        fn names(f: &Frame, short: &str) -> bool {
            f.function == format!("gort_sched::trace::symbolize::tests::thread_walk::{short}")
        }

        /// What the probes saw: the return addresses of the walk and the line of each probe's
        /// call, innermost first.
        struct Probe {
            pcs: Vec<usize>,
            lines: Vec<u32>,
        }

        #[inline(never)]
        fn trace_probe_alpha(p: &mut Probe) {
            let line = line!() + 1;
            trace_probe_beta(p);
            p.lines.push(black_box(line)); // after the call: no tail call
        }

        #[inline(never)]
        fn trace_probe_beta(p: &mut Probe) {
            let line = line!() + 1;
            trace_probe_gamma(p);
            p.lines.push(black_box(line));
        }

        #[inline(never)]
        fn trace_probe_gamma(p: &mut Probe) {
            let line = line!() + 1;
            let start = current_start();
            let (lo, hi) = thread_stack();
            let mut pcs = [0usize; 256];
            // SAFETY: `[lo, hi)` is this thread's own stack, mapped and written by no one else.
            let n = unsafe { walk(start.pc, start.fp, lo, hi, &mut pcs) };
            p.pcs.extend_from_slice(&pcs[..n]);
            p.lines.push(black_box(line));
        }

        #[test]
        #[cfg_attr(miri, ignore = "walks the real stack and symbolizes")]
        // A frame of its own in optimised builds too (inlined into the harness's closure, its
        // line-tables-only debug information would name it without its path).
        #[inline(never)]
        fn a_walk_of_this_thread_names_the_nested_calls_with_their_lines() {
            let mut p = Probe {
                pcs: Vec::new(),
                lines: Vec::new(),
            };
            trace_probe_alpha(&mut p);
            let frames = symbolize_stack(&p.pcs, false);
            let dump = format!("{frames:#?}");
            // Each probe appears once, innermost first, at the line of its call, in this file.
            let mut last = None;
            for (name, line) in ["gamma", "beta", "alpha"].iter().zip(&p.lines) {
                let want = format!("trace_probe_{name}");
                let at: Vec<usize> = (0..frames.len())
                    .filter(|&i| names(&frames[i], &want))
                    .collect();
                assert_eq!(at.len(), 1, "{want} not found once in {dump}");
                let f = &frames[at[0]];
                assert!(last < Some(at[0]), "{want} out of order in {dump}");
                last = Some(at[0]);
                assert!(
                    f.file
                        .as_deref()
                        .is_some_and(|file| file.ends_with(file!())),
                    "{dump}"
                );
                assert_eq!(f.line, Some(*line), "{want} in {dump}");
            }
            // The probes' frames are physical calls: their offset is the return address
            // minus the function's own address.
            for (name, func) in [
                ("gamma", trace_probe_gamma as *const () as usize),
                ("beta", trace_probe_beta as *const () as usize),
                ("alpha", trace_probe_alpha as *const () as usize),
            ] {
                let i = frames
                    .iter()
                    .position(|f| names(f, &format!("trace_probe_{name}")))
                    .unwrap();
                let off = frames[i]
                    .offset
                    .unwrap_or_else(|| panic!("no offset: {dump}"));
                assert!(p.pcs.contains(&(func + off)), "{name}: {off:#x} in {dump}");
            }
            // Formatted, every frame is a `(...)` line and a location line.
            let mut text = String::new();
            crate::trace::write_frames(&mut text, &frames);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(
                lines.len(),
                2 * frames.len().min(crate::trace::MAX_FRAMES),
                "{text}"
            );
            for pair in lines.chunks(2) {
                assert!(pair[0].ends_with("(...)"), "{text}");
                let (loc, off) = pair[1].split_once(" +0x").unwrap_or((pair[1], "0"));
                let (file, line) = loc.rsplit_once(':').expect("no `file:line`");
                assert!(file.starts_with('\t') && file.len() > 1, "{text}");
                assert!(line.parse::<u32>().is_ok(), "{text}");
                assert!(usize::from_str_radix(off, 16).is_ok(), "{text}");
            }
            // The test function itself called alpha: the walk went on past the probes.
            assert!(
                frames.iter().any(|f| names(
                    f,
                    "a_walk_of_this_thread_names_the_nested_calls_with_their_lines"
                )),
                "{dump}"
            );
        }
    }
}
