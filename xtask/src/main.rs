//! `cargo xtask`: the project's task runner — test (what CI runs), loom, miri, bench, demo.
//!
//! A plain binary with no dependencies, so it compiles in seconds on a cold machine. Each
//! subcommand lives in its own module; the workspace layout comes from `cargo metadata`, so
//! new crates are picked up without editing xtask.

mod bench;
mod demo;
mod figures;
mod json;
mod loom;
mod miri;
mod setup;
mod summary;
mod test;
mod util;
mod workspace;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  test [STEP...] [--list]    everything CI checks: set-up, fmt, clippy, tests, heavy tests,
                             loom models, Miri, aarch64 smoke under qemu-user, cross checks;
                             STEP runs only the steps whose name starts with it
  loom [CRATE] [-- ARGS]     loom models of one crate (`sched` or `gort-sched`) or of all,
                             release, --cfg loom, LOOM_MAX_PREEMPTIONS=2 unless set;
                             ARGS go to the test binaries
  miri [CRATE] [-- ARGS]     unit tests of one library crate or of all under Miri
                             (`cargo +nightly miri test --lib`, target/miri); MIRIFLAGS
                             replaces the default (strict provenance for sched);
                             ARGS go to the test binary
  bench [FILTER] [--json] [--quick] [--runs N] [--timeout SECONDS]
                             build and run the benchmark programs (Rust examples bench_*,
                             Go programs in bench-go/), N runs interleaved (default 5,
                             1 with --quick), medians and ratios to gort; a run over the
                             time-out (default 600 s) is killed and counts as failed
  demo                       the scheduler showcase, then every crate's demo examples
  help                       this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let run: fn(&workspace::Workspace, &[String]) -> ExitCode = match command.as_str() {
        "test" => test::main,
        "loom" => loom::main,
        "miri" => miri::main,
        "bench" => bench::main,
        "demo" => demo::main,
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => {
            eprint!("xtask: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match workspace::Workspace::load() {
        Ok(ws) => run(&ws, rest),
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
