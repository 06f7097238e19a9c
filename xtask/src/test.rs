//! `cargo xtask test [step...]`: everything CI checks, as a list of timed steps.
//!
//! Steps run in order and the first failure stops the run with a non-zero exit; a summary
//! table of every step's outcome and time closes the output. To add a check, add a `Step`
//! in `steps` (or a row to one of the tables below); steps for crates that do not exist yet
//! skip themselves with a message.

use std::process::{Command, ExitCode};

use crate::summary::{Outcome, Summary};
use crate::util;
use crate::workspace::Workspace;
use crate::{loom, miri, setup};

/// Proptest cases at CI scale (ARCHITECTURE.md); a user-set `PROPTEST_CASES` wins.
const CI_PROPTEST_CASES: &str = "32";

/// The package whose `#[ignore]` tests are the heavy, release-mode, run-serially tests.
const HEAVY_TESTS_PACKAGE: &str = "gort-tests";

/// Test subsets run for real on aarch64 under qemu-user: (package, test-name filters
/// separated by spaces, proptest cases). sched's `smoke` tests cover the context switch,
/// unwinding, the guard probe and overflow, and the run queue; `suspend::` the signal
/// suspension (another architecture's registers); `trace::` the stack walks (its frame
/// layout).
const AARCH64_SMOKE: &[(&str, &str, &str)] = &[("gort-sched", "smoke suspend:: trace::", "4")];
const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// Crates type-checked for another target: (package, target). The kqueue backend compiles
/// only for the BSDs and macOS.
const CROSS_CHECKS: &[(&str, &str)] = &[("gort-netpoll", "x86_64-apple-darwin")];

type Action = Box<dyn Fn(&Workspace) -> Result<Outcome, String>>;

/// One named, timed step of `cargo xtask test`.
pub struct Step {
    pub name: String,
    action: Action,
}

impl Step {
    fn new(
        name: impl Into<String>,
        action: impl Fn(&Workspace) -> Result<Outcome, String> + 'static,
    ) -> Step {
        Step {
            name: name.into(),
            action: Box::new(action),
        }
    }

    /// A step that runs one command built from the workspace.
    fn command(name: impl Into<String>, build: impl Fn(&Workspace) -> Command + 'static) -> Step {
        Step::new(name, move |ws| {
            util::run(&mut build(ws)).map(|()| Outcome::Ok)
        })
    }
}

/// Sets `PROPTEST_CASES` to `cases` unless the user chose a value.
fn pin_proptest(cmd: &mut Command, cases: &str) {
    if !util::env_set("PROPTEST_CASES") {
        cmd.env("PROPTEST_CASES", cases);
    }
}

/// The steps, in the order they run.
pub fn steps(ws: &Workspace) -> Vec<Step> {
    let mut steps = vec![
        Step::new("setup", |_| setup::run()),
        Step::command("fmt", |_| {
            let mut c = util::cargo();
            c.args(["fmt", "--all", "--", "--check"]);
            c
        }),
        Step::command("clippy", |_| {
            let mut c = util::cargo();
            c.args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]);
            c
        }),
        Step::command("test", |_| {
            let mut c = util::cargo();
            c.args(["test", "--workspace"]);
            pin_proptest(&mut c, CI_PROPTEST_CASES);
            c
        }),
        Step::new("heavy tests", |ws| {
            if ws.member(HEAVY_TESTS_PACKAGE).is_none() {
                return Ok(Outcome::Skipped(format!(
                    "no package {HEAVY_TESTS_PACKAGE}"
                )));
            }
            let mut c = util::cargo();
            // `--tests`: with `--ignored`, doctests marked `ignore` would run too.
            c.args([
                "test",
                "--release",
                "--tests",
                "-p",
                HEAVY_TESTS_PACKAGE,
                "--",
            ]);
            c.args(["--ignored", "--test-threads=1"]);
            pin_proptest(&mut c, CI_PROPTEST_CASES);
            util::run(&mut c).map(|()| Outcome::Ok)
        }),
    ];
    for member in ws.library_members() {
        let package = member.package.clone();
        steps.push(Step::new(format!("loom {package}"), move |ws| {
            match ws.member(&package) {
                Some(m) => loom::run_one(ws, m, &[]),
                None => Ok(Outcome::Skipped(format!("no package {package}"))),
            }
        }));
    }
    for member in ws.library_members() {
        let package = member.package.clone();
        steps.push(Step::new(format!("miri {package}"), move |ws| {
            match ws.member(&package) {
                Some(m) => miri::run_one(ws, m, &[]),
                None => Ok(Outcome::Skipped(format!("no package {package}"))),
            }
        }));
    }
    for &(package, filter, cases) in AARCH64_SMOKE {
        steps.push(Step::new(format!("aarch64 {package}"), move |ws| {
            if ws.member(package).is_none() {
                return Ok(Outcome::Skipped(format!("no package {package}")));
            }
            let mut c = util::cargo();
            // `--tests`: doctests and examples would only add cross builds that the
            // filter then skips.
            c.args(["test", "-p", package, "--target", AARCH64, "--tests", "--"]);
            c.args(filter.split_whitespace());
            c.env("PROPTEST_CASES", cases);
            // The runner in .cargo/config.toml (qemu-user, with `-E GORT_QEMU=1` so tests
            // that re-run themselves start the child through the emulator) does the rest.
            util::run(&mut c).map(|()| Outcome::Ok)
        }));
    }
    for &(package, target) in CROSS_CHECKS {
        steps.push(Step::new(format!("check {package} {target}"), move |ws| {
            if ws.member(package).is_none() {
                return Ok(Outcome::Skipped(format!("no package {package}")));
            }
            let mut c = util::cargo();
            c.args(["check", "-p", package, "--target", target]);
            util::run(&mut c).map(|()| Outcome::Ok)
        }));
    }
    steps
}

/// `cargo xtask test [step...]`: with names, runs only the steps whose name starts with one
/// of them (`cargo xtask test loom clippy`); `--list` prints the step names.
pub fn main(ws: &Workspace, args: &[String]) -> ExitCode {
    let all = steps(ws);
    if args.iter().any(|a| a == "--list") {
        for s in &all {
            println!("{}", s.name);
        }
        return ExitCode::SUCCESS;
    }
    if let Some(flag) = args.iter().find(|a| a.starts_with('-')) {
        eprintln!("xtask test: unknown option `{flag}`");
        return ExitCode::FAILURE;
    }
    let selected: Vec<&Step> = all
        .iter()
        .filter(|s| args.is_empty() || args.iter().any(|a| s.name.starts_with(a.as_str())))
        .collect();
    if selected.is_empty() {
        let names: Vec<_> = all.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "xtask test: no step matches {args:?}; steps: {}",
            names.join(", ")
        );
        return ExitCode::FAILURE;
    }
    let mut summary = Summary::numbered(selected.len());
    for step in selected {
        if let Outcome::Failed(_) = summary.step(&step.name, || (step.action)(ws)) {
            break;
        }
    }
    summary.finish("xtask test")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::Member;

    fn member(package: &str, dir: &str, uses_loom: bool) -> Member {
        Member {
            package: package.into(),
            dir_name: dir.into(),
            dir: format!("/w/{dir}").into(),
            examples: vec![],
            bins: vec![],
            uses_loom,
        }
    }

    #[test]
    fn steps_follow_the_ci_order_and_cover_every_library_crate() {
        let ws = Workspace {
            root: "/w".into(),
            target_dir: "/w/target".into(),
            members: vec![
                member("gort-sched", "sched", true),
                member("gort-netpoll", "netpoll", false),
                member("gort-tests", "tests", false),
                member("xtask", "xtask", false),
            ],
        };
        let names: Vec<String> = steps(&ws).into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "setup",
                "fmt",
                "clippy",
                "test",
                "heavy tests",
                "loom gort-sched",
                "loom gort-netpoll",
                "miri gort-sched",
                "miri gort-netpoll",
                "aarch64 gort-sched",
                "check gort-netpoll x86_64-apple-darwin",
            ]
        );
    }

    #[test]
    fn loom_command_sets_cfg_bound_and_target_dir() {
        let ws = Workspace {
            root: "/w".into(),
            target_dir: "/w/target".into(),
            members: vec![],
        };
        let m = member("gort-sched", "sched", true);
        let line = util::describe(&loom::command(&ws, &m, &["queue".to_string()]));
        assert!(line.contains("CARGO_TARGET_DIR=/w/target/loom"), "{line}");
        assert!(line.contains("--cfg loom"), "{line}");
        assert!(
            line.contains("test --release --tests -p gort-sched -- queue"),
            "{line}"
        );
    }
}
