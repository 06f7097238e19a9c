//! `cargo xtask loom [crate] [-- test-args]`: every crate's loom models at CI scale.
//!
//! A loom run is `cargo test -p <pkg> --release --tests` with `RUSTFLAGS="--cfg loom"`,
//! `LOOM_MAX_PREEMPTIONS=2` (unless the user set it) and its own target directory
//! (`target/loom`), since different RUSTFLAGS would otherwise rebuild the normal target
//! directory from scratch each time. `--tests` keeps doctests and examples out: a doctest
//! is compiled without `cfg(loom)` against the loom-built library and would touch loom
//! atomics outside a model, and examples only cost build time here.

use std::process::{Command, ExitCode};

use crate::summary::{Outcome, Summary};
use crate::util;
use crate::workspace::{Member, Workspace};

/// Bounded preemptions at CI scale (ARCHITECTURE.md); a user-set value wins.
const DEFAULT_MAX_PREEMPTIONS: &str = "2";

/// The loom test command for `member`, `extra` forwarded to the test binaries.
pub fn command(ws: &Workspace, member: &Member, extra: &[String]) -> Command {
    let mut cmd = util::cargo();
    cmd.args(["test", "--release", "--tests", "-p", &member.package]);
    let rustflags = match std::env::var("RUSTFLAGS") {
        Ok(flags) if flags.split_whitespace().any(|f| f == "loom") => flags,
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} --cfg loom"),
        _ => "--cfg loom".to_string(),
    };
    cmd.env("RUSTFLAGS", rustflags);
    if !util::env_set("LOOM_MAX_PREEMPTIONS") {
        cmd.env("LOOM_MAX_PREEMPTIONS", DEFAULT_MAX_PREEMPTIONS);
    }
    cmd.env("CARGO_TARGET_DIR", ws.target_dir.join("loom"));
    if !extra.is_empty() {
        cmd.arg("--").args(extra);
    }
    cmd
}

/// Runs the loom models of `member`; a crate without a loom dependency is skipped (it
/// cannot have models, and building it under `cfg(loom)` would only cost time).
pub fn run_one(ws: &Workspace, member: &Member, extra: &[String]) -> Result<Outcome, String> {
    if !member.uses_loom {
        return Ok(Outcome::Skipped(format!(
            "{} does not depend on loom",
            member.package
        )));
    }
    util::run(&mut command(ws, member, extra)).map(|()| Outcome::Ok)
}

/// The crates with loom models: those that depend on loom, minus xtask and the tests crate.
pub fn crates(ws: &Workspace) -> Vec<&Member> {
    ws.library_members().filter(|m| m.uses_loom).collect()
}

/// `cargo xtask loom [crate] [-- args]`.
pub fn main(ws: &Workspace, args: &[String]) -> ExitCode {
    let (ours, extra) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let members: Vec<&Member> = match ours {
        [] => crates(ws),
        [name] => match ws.member(name) {
            Some(m) => vec![m],
            None => {
                let known: Vec<_> = ws.library_members().map(|m| m.dir_name.as_str()).collect();
                eprintln!(
                    "xtask loom: no crate `{name}`; known crates: {}",
                    known.join(", ")
                );
                return ExitCode::FAILURE;
            }
        },
        _ => {
            eprintln!("xtask loom: expected at most one crate name, got {ours:?}");
            return ExitCode::FAILURE;
        }
    };
    let mut summary = Summary::new();
    for m in members {
        summary.step(&format!("loom {}", m.package), || run_one(ws, m, extra));
    }
    summary.finish("xtask loom")
}
