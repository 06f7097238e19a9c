//! `cargo xtask demo`: the scheduler showcase, then every crate's demonstration examples.
//!
//! Parts, in order: `tests/src/bin/demo.rs` (package gort-tests), every
//! `<crate>/examples/demo*.rs`, then the standalone examples listed in `EXTRA_EXAMPLES`. Each
//! is built in release first (one cargo invocation per package), then run with a header and
//! its elapsed time; a part that is absent is skipped with a message, one that fails (or
//! runs past `PART_TIMEOUT`) is reported and the others still run.

use std::process::{Command, ExitCode};
use std::time::Duration;

use crate::summary::{Outcome, Summary};
use crate::util;
use crate::workspace::Workspace;

/// The showcase binary: (package, bin).
const SHOWCASE: (&str, &str) = ("gort-tests", "demo");
/// Examples that demonstrate a crate standalone without a `demo` prefix: (crate dir, example).
const EXTRA_EXAMPLES: &[(&str, &str)] = &[("alloc", "heap"), ("netpoll", "echo")];
/// A part still running after this is killed and reported: a demo that hangs must not
/// hold up the others.
const PART_TIMEOUT: Duration = Duration::from_secs(300);

/// One program to build and run.
#[derive(Debug)]
struct Part {
    package: String,
    /// `true` for an example, `false` for a bin.
    example: bool,
    name: String,
    title: String,
}

fn parts(ws: &Workspace) -> Vec<Part> {
    let mut parts = Vec::new();
    let (package, bin) = SHOWCASE;
    match ws.member(package) {
        Some(m) if m.bins.iter().any(|b| b == bin) => parts.push(Part {
            package: package.to_string(),
            example: false,
            name: bin.to_string(),
            title: format!("{}/src/bin/{bin}.rs", m.dir_name),
        }),
        _ => eprintln!("note: no `{bin}` binary in {package} yet; skipping the showcase"),
    }
    for m in &ws.members {
        let extras = EXTRA_EXAMPLES
            .iter()
            .filter(|(d, _)| *d == m.dir_name)
            .map(|(_, e)| *e);
        let wanted: Vec<&str> = m
            .examples
            .iter()
            .map(String::as_str)
            .filter(|e| e.starts_with("demo"))
            .chain(extras.filter(|e| m.examples.iter().any(|x| x == e)))
            .collect();
        for name in wanted {
            parts.push(Part {
                package: m.package.clone(),
                example: true,
                name: name.to_string(),
                title: format!("{}/examples/{name}.rs", m.dir_name),
            });
        }
    }
    parts
}

/// `cargo xtask demo`.
pub fn main(ws: &Workspace, args: &[String]) -> ExitCode {
    if let Some(a) = args.first() {
        eprintln!("xtask demo: takes no arguments, got `{a}`");
        return ExitCode::FAILURE;
    }
    let parts = parts(ws);
    if parts.is_empty() {
        eprintln!("xtask demo: nothing to show yet (no showcase binary and no demo examples)");
        return ExitCode::SUCCESS;
    }
    let mut summary = Summary::new();
    // Build everything first so each part's time is its run alone.
    let mut packages: Vec<&str> = Vec::new();
    for p in &parts {
        if !packages.contains(&p.package.as_str()) {
            packages.push(&p.package);
        }
    }
    let mut unbuilt: Vec<&str> = Vec::new();
    for package in packages {
        let outcome = summary.step(&format!("build {package}"), || {
            let mut cmd = util::cargo();
            cmd.args(["build", "--release", "-p", package]);
            for p in parts.iter().filter(|p| p.package == package) {
                cmd.arg(if p.example { "--example" } else { "--bin" })
                    .arg(&p.name);
            }
            util::run(&mut cmd).map(|()| Outcome::Ok)
        });
        if let Outcome::Failed(_) = outcome {
            unbuilt.push(package);
        }
    }
    for p in &parts {
        summary.step(&p.title, || {
            if unbuilt.contains(&p.package.as_str()) {
                return Ok(Outcome::Skipped(format!("{} did not build", p.package)));
            }
            let exe = ws.release_exe(p.example, &p.name);
            util::run_with_timeout(Command::new(&exe).current_dir(&ws.root), PART_TIMEOUT)
                .map(|()| Outcome::Ok)
        });
    }
    summary.finish("xtask demo")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::Member;

    #[test]
    fn parts_are_the_showcase_then_demo_and_listed_examples() {
        let member = |package: &str, dir: &str, examples: &[&str], bins: &[&str]| Member {
            package: package.into(),
            dir_name: dir.into(),
            dir: format!("/w/{dir}").into(),
            examples: examples.iter().map(|s| s.to_string()).collect(),
            bins: bins.iter().map(|s| s.to_string()).collect(),
            uses_loom: false,
        };
        let ws = Workspace {
            root: "/w".into(),
            target_dir: "/w/target".into(),
            members: vec![
                member(
                    "gort-sched",
                    "sched",
                    &["bench_spawn", "demo_pingpong"],
                    &[],
                ),
                member("gort-alloc", "alloc", &["bench_small", "heap"], &[]),
                member("gort-netpoll", "netpoll", &[], &[]),
                member("gort-tests", "tests", &[], &["demo"]),
            ],
        };
        let titles: Vec<String> = parts(&ws).into_iter().map(|p| p.title).collect();
        assert_eq!(
            titles,
            [
                "tests/src/bin/demo.rs",
                "sched/examples/demo_pingpong.rs",
                "alloc/examples/heap.rs",
            ]
        );
    }
}
