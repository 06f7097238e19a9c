//! `cargo xtask bench [filter] [--json] [--quick] [--runs N] [--timeout S]`: benchmark programs.
//!
//! The filter selects programs by path (`sched`, `bench_chan`, `alloc.go`; several, comma-
//! separated: `gc/,alloc`); one that matches no program selects figures by name instead (`sched/sieve`, `parked-start`), running every
//! program and keeping only those figures.
//!
//! Finds every `<crate>/examples/bench_*.rs` and `<crate>/bench-go/*.go`, builds them
//! (cargo profile `release-lto`, see `BUILD_PROFILE`; Go only when `go` is on PATH), runs each program N times round-robin — so a
//! slow phase of a shared machine spreads over all programs instead of skewing one — and
//! reports the median of every figure with its ratio to gort's (see `figures`). A program
//! that fails to build or run is reported and dropped; the others go on, and the exit status
//! is non-zero at the end.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::figures::{self, Figures};
use crate::util;
use crate::workspace::Workspace;

const USAGE: &str =
    "usage: cargo xtask bench [FILTER] [--json] [--quick] [--runs N] [--timeout SECONDS]";
const DEFAULT_RUNS: usize = 5;
/// The cargo profile the Rust programs are built with: release with fat LTO and one codegen
/// unit (the workspace's Cargo.toml says why).
const BUILD_PROFILE: &str = "release-lto";
/// A run that takes longer than this is killed and counted as a failure.
const DEFAULT_TIMEOUT_SECS: u64 = 600;

#[derive(Debug, Default, PartialEq)]
struct Options {
    filter: Option<String>,
    json: bool,
    quick: bool,
    runs: Option<usize>,
    timeout_secs: Option<u64>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--json" => o.json = true,
                "--quick" => o.quick = true,
                "--runs" => {
                    let n = it.next().ok_or("--runs needs a number")?;
                    o.runs = Some(parse_runs(n)?);
                }
                s if s.starts_with("--runs=") => o.runs = Some(parse_runs(&s[7..])?),
                "--timeout" => {
                    let n = it.next().ok_or("--timeout needs a number of seconds")?;
                    o.timeout_secs = Some(parse_secs(n)?);
                }
                s if s.starts_with("--timeout=") => o.timeout_secs = Some(parse_secs(&s[10..])?),
                s if s.starts_with('-') => return Err(format!("unknown option `{s}`")),
                s if o.filter.is_none() => o.filter = Some(s.to_string()),
                s => return Err(format!("only one filter allowed, got a second: `{s}`")),
            }
        }
        Ok(o)
    }

    /// `--runs` wins; otherwise one run for `--quick` and five for a real measurement.
    fn runs(&self) -> usize {
        self.runs
            .unwrap_or(if self.quick { 1 } else { DEFAULT_RUNS })
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS))
    }
}

fn parse_secs(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "--timeout needs a positive number of seconds, got `{s}`"
        )),
    }
}

fn parse_runs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("--runs needs a positive whole number, got `{s}`")),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// An example target of a Rust package.
    Rust,
    /// A single-file Go `main` package.
    Go { source: PathBuf },
}

/// One benchmark program.
#[derive(Debug, Clone)]
struct Program {
    /// The crate directory name, e.g. `sched`.
    crate_dir: String,
    /// The package the program belongs to, e.g. `gort-sched`.
    package: String,
    /// Example name (`bench_spawn`) or Go file stem (`spawn`).
    name: String,
    kind: Kind,
    exe: PathBuf,
}

impl Program {
    /// Where the program lives, e.g. `sched/examples/bench_spawn` or `sched/bench-go/spawn.go`.
    fn label(&self) -> String {
        match &self.kind {
            Kind::Rust => format!("{}/examples/{}", self.crate_dir, self.name),
            Kind::Go { .. } => format!("{}/bench-go/{}.go", self.crate_dir, self.name),
        }
    }

    /// A filter matches a substring of the label (crate or program name) or the package.
    /// Whether `filter` selects this program: any of its comma-separated parts is part of
    /// the program's path or is its package.
    fn matches(&self, filter: &str) -> bool {
        filter
            .split(',')
            .filter(|f| !f.is_empty())
            .any(|f| self.label().contains(f) || self.package == f)
    }
}

/// Every benchmark program of the workspace, Rust ones first, each group in crate order.
fn discover(ws: &Workspace) -> Vec<Program> {
    let mut programs = Vec::new();
    for m in &ws.members {
        for ex in m.examples.iter().filter(|e| e.starts_with("bench_")) {
            programs.push(Program {
                crate_dir: m.dir_name.clone(),
                package: m.package.clone(),
                name: ex.clone(),
                kind: Kind::Rust,
                exe: ws.profile_exe(BUILD_PROFILE, true, ex),
            });
        }
    }
    for m in &ws.members {
        let Ok(entries) = std::fs::read_dir(m.dir.join("bench-go")) else {
            continue;
        };
        let mut sources: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "go") && p.is_file())
            .collect();
        sources.sort();
        for source in sources {
            let Some(stem) = source.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                continue;
            };
            programs.push(Program {
                crate_dir: m.dir_name.clone(),
                package: m.package.clone(),
                // Per-crate directories: two crates may both have a `spawn.go`.
                exe: ws.target_dir.join("bench-go").join(&m.dir_name).join(&stem),
                name: stem,
                kind: Kind::Go { source },
            });
        }
    }
    programs
}

/// Builds the Rust programs, one cargo invocation per package; returns the failures.
fn build_rust(programs: &[Program]) -> Vec<(String, String)> {
    let mut packages: Vec<&str> = Vec::new();
    for p in programs {
        if p.kind == Kind::Rust && !packages.contains(&p.package.as_str()) {
            packages.push(&p.package);
        }
    }
    let mut failed = Vec::new();
    for package in packages {
        let mut cmd = util::cargo();
        cmd.args(["build", "--profile", BUILD_PROFILE, "-p", package]);
        let ours = programs
            .iter()
            .filter(|p| p.kind == Kind::Rust && p.package == package);
        for p in ours.clone() {
            cmd.args(["--example", &p.name]);
        }
        if let Err(e) = util::run(&mut cmd) {
            failed.extend(ours.map(|p| (p.label(), format!("build failed: {e}"))));
        }
    }
    failed
}

/// Builds one Go program with `go build -o <exe> <file>`, from the file's directory.
fn build_go(p: &Program, source: &Path, ws: &Workspace) -> Result<(), String> {
    if let Some(dir) = p.exe.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let mut cmd = Command::new("go");
    cmd.arg("build").arg("-o").arg(&p.exe).arg(source);
    cmd.current_dir(source.parent().unwrap_or(&ws.root));
    // Go needs a build cache; without $HOME it cannot find its default one.
    if !util::env_set("GOCACHE") && !util::env_set("HOME") {
        cmd.env("GOCACHE", ws.target_dir.join("go-cache"));
    }
    util::run(&mut cmd)
}

/// Runs one program once; returns its figures, or why it failed.
fn run_once(
    p: &Program,
    quick: bool,
    timeout: Duration,
    ws: &Workspace,
) -> Result<Vec<figures::Figure>, String> {
    let mut cmd = Command::new(&p.exe);
    if quick {
        cmd.arg("--quick");
    }
    cmd.current_dir(&ws.root)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let (status, stdout) = util::output_with_timeout(&mut cmd, timeout)?;
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&stdout).lines() {
        match figures::parse_line(line) {
            Ok(Some(f)) => found.push(f),
            Ok(None) => {}
            Err(e) => eprintln!("warning: {}: ignoring line {line:?}: {e}", p.label()),
        }
    }
    if !status.success() {
        return Err(format!("exited with {status}"));
    }
    if found.is_empty() {
        return Err("printed no figures".to_string());
    }
    Ok(found)
}

/// `cargo xtask bench ...`.
pub fn main(ws: &Workspace, args: &[String]) -> ExitCode {
    let opts = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("xtask bench: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let all = discover(ws);
    let mut programs: Vec<Program> = all
        .iter()
        .filter(|p| opts.filter.as_deref().is_none_or(|f| p.matches(f)))
        .cloned()
        .collect();
    // A filter that names no program may name figures (`sched/sieve`, `parked-start`): run
    // every program and keep the figures whose name contains it.
    let mut figure_filter = None;
    if programs.is_empty() && opts.filter.is_some() {
        programs = all;
        figure_filter = opts.filter.clone();
    }
    if programs.is_empty() {
        eprintln!(
            "xtask bench: no benchmark programs{} (looked for <crate>/examples/bench_*.rs and \
             <crate>/bench-go/*.go)",
            opts.filter
                .as_deref()
                .map(|f| format!(" match `{f}`"))
                .unwrap_or_default()
        );
        return ExitCode::FAILURE;
    }

    // The HTTP benchmarks drive their servers with wrk: install it when missing.
    if programs.iter().any(|p| p.name.contains("http"))
        && let Err(e) = crate::setup::wrk()
    {
        eprintln!("note: {e}; the HTTP benchmarks will fail");
    }
    let mut failures: Vec<(String, String)> = build_rust(&programs);
    let go_available = util::on_path("go");
    if !go_available && programs.iter().any(|p| matches!(p.kind, Kind::Go { .. })) {
        eprintln!("note: `go` is not on PATH; skipping the Go programs");
    }
    programs.retain(|p| match &p.kind {
        Kind::Rust => true,
        Kind::Go { source } if go_available => match build_go(p, source, ws) {
            Ok(()) => true,
            Err(e) => {
                failures.push((p.label(), format!("build failed: {e}")));
                false
            }
        },
        Kind::Go { .. } => false,
    });
    programs.retain(|p| !failures.iter().any(|(label, _)| *label == p.label()));

    let runs = opts.runs();
    let mut figures = Figures::default();
    for round in 1..=runs {
        let mut failed_now = Vec::new();
        for p in &programs {
            eprintln!("run {round}/{runs}: {}", p.label());
            let start = Instant::now();
            let result = run_once(p, opts.quick, opts.timeout(), ws);
            let took = util::fmt_duration(start.elapsed());
            match result {
                Ok(found) => {
                    let found: Vec<_> = found
                        .into_iter()
                        .filter(|f| {
                            figure_filter.as_deref().is_none_or(|ff| {
                                ff.split(',').any(|x| !x.is_empty() && f.bench.contains(x))
                            })
                        })
                        .collect();
                    eprintln!("  {} figure(s) in {took}", found.len());
                    for f in found {
                        if let Err(e) = figures.add(f) {
                            eprintln!("warning: {}: {e}", p.label());
                        }
                    }
                }
                Err(e) => {
                    eprintln!("  FAILED after {took}: {e}");
                    failures.push((p.label(), format!("run {round}: {e}")));
                    failed_now.push(p.label());
                }
            }
        }
        // A program that failed once is not run again.
        programs.retain(|p| !failed_now.contains(&p.label()));
    }

    let rows = figures.rows();
    if opts.json {
        print!("{}", figures::render_json(&rows));
    } else if figures.is_empty() {
        println!("no figures");
    } else {
        let what = if opts.quick {
            " (--quick: scaled-down workloads)"
        } else {
            ""
        };
        println!(
            "\nmedians of {runs} run(s){what}; `vs gort` = value / gort's value \
             (for times and sizes, below 1 means the peer does better; for rates, above 1)\n"
        );
        print!("{}", figures::render_table(&rows));
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("\nxtask bench: {} program(s) failed:", failures.len());
        for (label, why) in &failures {
            eprintln!("  {label}: {why}");
        }
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn options_parse_filter_flags_and_runs() {
        let o = Options::parse(&args(&["sched", "--json", "--runs", "3", "--timeout=9"])).unwrap();
        assert_eq!(
            o,
            Options {
                filter: Some("sched".into()),
                json: true,
                quick: false,
                runs: Some(3),
                timeout_secs: Some(9),
            }
        );
        assert_eq!(o.timeout(), Duration::from_secs(9));
        assert_eq!(o.runs(), 3);
        let q = Options::parse(&args(&["--quick"])).unwrap();
        assert_eq!(q.runs(), 1);
        assert_eq!(
            Options::parse(&args(&["--quick", "--runs=2"]))
                .unwrap()
                .runs(),
            2
        );
        assert_eq!(Options::parse(&[]).unwrap().runs(), DEFAULT_RUNS);
        for bad in [
            &["--runs"][..],
            &["--runs", "0"],
            &["--runs", "x"],
            &["--timeout", "0"],
            &["--fast"],
            &["a", "b"],
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn filters_match_crate_program_or_package() {
        let rust = Program {
            crate_dir: "sched".into(),
            package: "gort-sched".into(),
            name: "bench_spawn".into(),
            kind: Kind::Rust,
            exe: "/t/release/examples/bench_spawn".into(),
        };
        let go = Program {
            crate_dir: "sched".into(),
            package: "gort-sched".into(),
            name: "spawn".into(),
            kind: Kind::Go {
                source: "/w/sched/bench-go/spawn.go".into(),
            },
            exe: "/t/bench-go/sched/spawn".into(),
        };
        assert_eq!(rust.label(), "sched/examples/bench_spawn");
        assert_eq!(go.label(), "sched/bench-go/spawn.go");
        for f in ["sched", "spawn", "gort-sched"] {
            assert!(rust.matches(f), "{f}");
        }
        assert!(go.matches("spawn") && go.matches("sched") && go.matches("gort-sched"));
        assert!(!rust.matches("alloc") && !go.matches("switch"));
        assert!(rust.matches("alloc,bench_spawn") && go.matches("netpoll,spawn.go"));
        assert!(!rust.matches("alloc,netpoll") && !rust.matches(","));
    }
}
