//! Go's goroutine dump text: a header line per goroutine, then two lines per frame.
//!
//! ```text
//! goroutine 7 [chan receive]:
//! app::worker(...)
//!     /src/app/worker.rs:123 +0x1d
//! app::main::{{closure}}(...)
//!     /src/app/main.rs:9 +0x40
//!
//! goroutine 8 [runnable]:
//! ...
//! ```
//!
//! The function line always ends in `(...)`: Go prints the argument words there, which we
//! do not know. The location line is a tab (shown as spaces above), `file:line`, and ` +0x`
//! with the offset of the return address in its function; a frame inlined into the next one has no offset (as in
//! Go), and an unknown location prints `?:0`. At most [`MAX_FRAMES`] frames are printed, then
//! Go's `...additional frames elided...`.
//!
//! Formatting is split from symbolization ([`write_frames`] takes [`Frame`]s), so the text
//! is tested exactly on made-up frames; [`write_goroutine`] does both.

use core::fmt::Write as _;

use super::symbolize::{Frame, symbolize_stack};

/// The most frames printed for one goroutine, as Go's `_TracebackMaxFrames`.
pub(crate) const MAX_FRAMES: usize = 100;

/// Function-name prefixes of the dump machinery. Innermost frames whose function starts
/// with one of these — the dumper itself when it lives in `trace/`, and whatever of the
/// machinery it inlined — say nothing about the goroutine and are left out (see
/// [`skip_machinery`]). A walk from [`current_start`](super::current_start) begins at its
/// caller, so the start adds no frame of its own.
const MACHINERY: &[&str] = &["gort_sched::trace::"];

/// Writes `goroutine <id> [<state>]:` and a newline.
pub(crate) fn write_header(out: &mut String, id: u64, state: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "goroutine {id} [{state}]:");
}

/// Writes two lines per frame, innermost first, at most [`MAX_FRAMES`] frames, then
/// `...additional frames elided...` if there were more.
pub(crate) fn write_frames(out: &mut String, frames: &[Frame]) {
    for f in frames.iter().take(MAX_FRAMES) {
        let _ = writeln!(out, "{}(...)", f.function);
        match (&f.file, f.line) {
            (Some(file), line) => {
                let _ = write!(out, "\t{file}:{}", line.unwrap_or(0));
            }
            (None, _) => out.push_str("\t?:0"),
        }
        if let Some(off) = f.offset {
            let _ = write!(out, " +{off:#x}");
        }
        out.push('\n');
    }
    if frames.len() > MAX_FRAMES {
        out.push_str("...additional frames elided...\n");
    }
}

/// `frames` without its innermost run of dump-machinery frames (function names starting
/// with a [`MACHINERY`] prefix). If every frame is machinery — a dump of the dumper's own
/// tests, say — nothing is skipped, so the trace never comes out empty by elision.
pub(crate) fn skip_machinery(frames: &[Frame]) -> &[Frame] {
    let is_machinery = |f: &Frame| MACHINERY.iter().any(|p| f.function.starts_with(p));
    match frames.iter().position(|f| !is_machinery(f)) {
        Some(i) => &frames[i..],
        None => frames,
    }
}

/// Appends the dump of one goroutine: its header and the symbolized frames of `pcs`, the
/// addresses a [`walk`](super::walk) collected (all return addresses, as the walk's starts
/// give them), minus the dump machinery at the top. If `out` already holds a dump, a blank
/// line is written first, so goroutines appended one after another are separated as in Go.
///
/// Symbolizes, so it allocates: never call it while the world is stopped (see
/// `symbolize.rs`).
pub(crate) fn write_goroutine(out: &mut String, id: u64, state: &str, pcs: &[usize]) {
    let frames = symbolize_stack(pcs, false);
    if !out.is_empty() {
        out.push('\n');
    }
    write_header(out, id, state);
    write_frames(out, skip_machinery(&frames));
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn frame(
        function: &str,
        file: Option<&str>,
        line: Option<u32>,
        offset: Option<usize>,
    ) -> Frame {
        Frame {
            function: function.to_string(),
            file: file.map(str::to_string),
            line,
            offset,
        }
    }

    #[test]
    fn formats_frames_exactly_as_go() {
        let frames = [
            frame("app::inlined", Some("/src/app/a.rs"), Some(5), None),
            frame("app::worker", Some("/src/app/a.rs"), Some(123), Some(0x1d)),
            frame(
                "app::main::{{closure}}",
                Some("/src/app/main.rs"),
                Some(9),
                Some(0x40),
            ),
            frame("?", None, None, None),
            frame("libc::start", Some("/usr/src/start.c"), None, Some(0)),
        ];
        let mut out = String::new();
        write_header(&mut out, 7, "chan receive");
        write_frames(&mut out, &frames);
        assert_eq!(
            out,
            "goroutine 7 [chan receive]:\n\
             app::inlined(...)\n\
             \t/src/app/a.rs:5\n\
             app::worker(...)\n\
             \t/src/app/a.rs:123 +0x1d\n\
             app::main::{{closure}}(...)\n\
             \t/src/app/main.rs:9 +0x40\n\
             ?(...)\n\
             \t?:0\n\
             libc::start(...)\n\
             \t/usr/src/start.c:0 +0x0\n"
        );
    }

    #[test]
    fn truncates_after_max_frames() {
        let frames: Vec<Frame> = (0..MAX_FRAMES + 1)
            .map(|i| frame(&format!("f{i}"), Some("/x.rs"), Some(1), Some(i)))
            .collect();
        let mut out = String::new();
        write_frames(&mut out, &frames);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2 * MAX_FRAMES + 1);
        assert_eq!(lines[2 * MAX_FRAMES - 2], "f99(...)");
        assert_eq!(lines[2 * MAX_FRAMES], "...additional frames elided...");

        // Exactly MAX_FRAMES frames: all printed, nothing elided.
        let mut out = String::new();
        write_frames(&mut out, &frames[..MAX_FRAMES]);
        assert_eq!(out.lines().count(), 2 * MAX_FRAMES);
        assert!(!out.contains("elided"));
    }

    #[test]
    fn skips_only_the_innermost_machinery() {
        let frames = [
            frame("gort_sched::trace::start::current_start", None, None, None),
            frame("gort_sched::trace::dump::dump_all", None, None, Some(1)),
            frame("app::worker", None, None, Some(2)),
            frame("gort_sched::trace::walk::walk", None, None, Some(3)),
        ];
        let rest = skip_machinery(&frames);
        assert_eq!(rest, &frames[2..]);
        // All machinery: kept whole.
        assert_eq!(skip_machinery(&frames[..2]), &frames[..2]);
        assert!(skip_machinery(&[]).is_empty());
    }

    #[test]
    #[cfg_attr(miri, ignore = "symbolization reads the binary's debug information")]
    fn goroutines_are_separated_by_a_blank_line() {
        let mut out = String::new();
        write_goroutine(&mut out, 1, "running", &[]);
        write_goroutine(&mut out, 7, "chan receive", &[0]);
        assert_eq!(
            out,
            "goroutine 1 [running]:\n\
             \n\
             goroutine 7 [chan receive]:\n\
             ?(...)\n\
             \t?:0\n"
        );
    }
}
