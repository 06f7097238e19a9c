//! `cargo xtask miri [crate] [-- test-args]`: the library crates' unit tests under Miri.
//!
//! Loom checks orderings; Miri checks what the `unsafe` code does with pointers (aliasing,
//! provenance, use after free, data races on plain memory). A Miri run is
//! `cargo +nightly miri test -p <pkg> --lib`, which builds in a target directory of its own
//! (cargo-miri puts everything under `<target>/miri` by itself). Only the unit tests run:
//! integration tests and doctests start runtimes whose context switch and mmap'd stacks Miri
//! cannot interpret. Miri is the only thing in the project that uses the nightly toolchain;
//! the set-up installs it (`setup::miri`).
//!
//! `MIRIFLAGS`: a user-set value wins. Otherwise crates whose `unsafe` code moves only real
//! pointers run with `-Zmiri-strict-provenance`, so an integer-to-pointer cast there is an
//! error; the others get Miri's default (permissive provenance, which warns about such
//! casts). Either way xtask adds two flags the test harness needs: `PROPTEST_CASES` is
//! forwarded (Miri's isolation hides the environment otherwise), and proptest's look-up of its
//! failure-persistence file (`getcwd`) gets an error instead of stopping the run. A crate's
//! run that exceeds `TIMEOUT` is stopped and fails, naming the way to find the slow test.

use std::process::{Command, ExitCode};
use std::time::Duration;

use crate::summary::{Outcome, Summary};
use crate::util;
use crate::workspace::{Member, Workspace};

/// The toolchain Miri runs on; nothing else in the project uses nightly.
pub const TOOLCHAIN: &str = "nightly";

/// Crates held to strict provenance by default. sched moves only real pointers (run queues,
/// closure storage); alloc computes heap addresses as integers and netpoll passes waiters
/// through a `usize` (`Waiter::into_raw`), so they keep Miri's permissive default.
const STRICT_PROVENANCE: &[&str] = &["gort-sched"];

/// Crates whose unit tests cannot run under Miri at all, with the reason (none today).
const SKIPPED: &[(&str, &str)] = &[];

/// Flags every Miri run gets, ahead of the user's or the default ones (so those win).
const HARNESS_FLAGS: &[&str] = &[
    "-Zmiri-env-forward=PROPTEST_CASES",
    "-Zmiri-isolation-error=warn-nobacktrace",
];

/// Proptest cases under Miri, which runs about a thousand times slower than native code; a
/// user-set `PROPTEST_CASES` wins.
const MIRI_PROPTEST_CASES: &str = "4";

/// A crate's Miri run, build included, that takes longer than this has a test that needs
/// shrinking under `cfg(miri)`: it is stopped rather than left to eat CI's time.
const TIMEOUT: Duration = Duration::from_secs(8 * 60);

/// The `MIRIFLAGS` for `package`, given the user's value if any.
pub fn miriflags(package: &str, user: Option<&str>) -> String {
    let mut flags: Vec<&str> = HARNESS_FLAGS.to_vec();
    match user {
        Some(user) => flags.extend(user.split_whitespace()),
        None if STRICT_PROVENANCE.contains(&package) => flags.push("-Zmiri-strict-provenance"),
        None => {}
    }
    flags.join(" ")
}

/// `cargo +nightly ...` through the rustup proxy (`$CARGO` names the stable cargo itself,
/// which does not understand `+toolchain`).
pub fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{TOOLCHAIN}"));
    cmd
}

/// The Miri test command for `member`, `extra` forwarded to the test binary.
pub fn command(member: &Member, extra: &[String]) -> Command {
    let mut cmd = nightly_cargo();
    cmd.args(["miri", "test", "-p", &member.package, "--lib"]);
    let user = std::env::var("MIRIFLAGS").ok();
    cmd.env("MIRIFLAGS", miriflags(&member.package, user.as_deref()));
    if !util::env_set("PROPTEST_CASES") {
        cmd.env("PROPTEST_CASES", MIRI_PROPTEST_CASES);
    }
    if !extra.is_empty() {
        cmd.arg("--").args(extra);
    }
    cmd
}

/// Fails with what to do when `cargo +nightly miri` is not available.
pub fn check_installed() -> Result<(), String> {
    let ok = nightly_cargo()
        .args(["miri", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`cargo +{TOOLCHAIN} miri` is not available: run `cargo xtask test setup` (or \
             `rustup toolchain install {TOOLCHAIN} --profile minimal --component miri,rust-src`)"
        ))
    }
}

/// Why `package`'s unit tests do not run under Miri, if they do not.
fn skip_reason(package: &str) -> Option<&'static str> {
    SKIPPED
        .iter()
        .find(|(p, _)| *p == package)
        .map(|&(_, why)| why)
}

/// Runs the unit tests of `member` under Miri, or skips them with the reason.
/// (`_ws` keeps the shape of `loom::run_one`.)
pub fn run_one(_ws: &Workspace, member: &Member, extra: &[String]) -> Result<Outcome, String> {
    if let Some(why) = skip_reason(&member.package) {
        return Ok(Outcome::Skipped(why.to_string()));
    }
    check_installed()?;
    util::run_with_timeout(&mut command(member, extra), TIMEOUT)
        .map(|()| Outcome::Ok)
        .map_err(|e| {
            if e.contains("time-out") {
                format!(
                    "{e}: a test is too slow under Miri; find it with `cargo xtask miri {} -- \
                     -Zunstable-options --report-time`, then shrink it under `cfg!(miri)` or \
                     mark it `#[cfg_attr(miri, ignore = \"why\")]`",
                    member.dir_name
                )
            } else {
                e
            }
        })
}

/// `cargo xtask miri [crate] [-- args]`.
pub fn main(ws: &Workspace, args: &[String]) -> ExitCode {
    let (ours, extra) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let members: Vec<&Member> = match ours {
        [] => ws.library_members().collect(),
        [name] => match ws.member(name) {
            Some(m) if ws.library_members().any(|l| l.package == m.package) => vec![m],
            _ => {
                let known: Vec<_> = ws.library_members().map(|m| m.dir_name.as_str()).collect();
                eprintln!(
                    "xtask miri: no library crate `{name}`; known crates: {}",
                    known.join(", ")
                );
                return ExitCode::FAILURE;
            }
        },
        _ => {
            eprintln!("xtask miri: expected at most one crate name, got {ours:?}");
            return ExitCode::FAILURE;
        }
    };
    let mut summary = Summary::new();
    // The sysroot build (once per nightly) gets its own row, apart from the test time.
    let ready = summary.step("miri setup", crate::setup::miri);
    if let Outcome::Failed(_) = ready {
        return summary.finish("xtask miri");
    }
    for m in members {
        summary.step(&format!("miri {}", m.package), || run_one(ws, m, extra));
    }
    summary.finish("xtask miri")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_flags_replace_the_default_but_not_the_harness_flags() {
        let harness = HARNESS_FLAGS.join(" ");
        assert_eq!(
            miriflags("gort-sched", None),
            format!("{harness} -Zmiri-strict-provenance")
        );
        assert_eq!(miriflags("gort-alloc", None), harness);
        assert_eq!(
            miriflags("gort-sched", Some(" -Zmiri-seed=3  -Zmiri-tree-borrows ")),
            format!("{harness} -Zmiri-seed=3 -Zmiri-tree-borrows")
        );
        assert_eq!(miriflags("gort-sched", Some("")), harness);
    }

    #[test]
    fn command_runs_the_lib_tests_on_nightly() {
        let m = Member {
            package: "gort-sched".into(),
            dir_name: "sched".into(),
            dir: "/w/sched".into(),
            examples: vec![],
            bins: vec![],
            uses_loom: true,
        };
        let line = util::describe(&command(&m, &["runq".to_string()]));
        // cargo-miri picks `<target>/miri` itself; a second `miri` would only nest it.
        assert!(!line.contains("CARGO_TARGET_DIR"), "{line}");
        assert!(line.contains("MIRIFLAGS="), "{line}");
        assert!(
            line.ends_with("cargo +nightly miri test -p gort-sched --lib -- runq"),
            "{line}"
        );
    }
}
