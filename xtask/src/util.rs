//! Running commands and timing them: echo, status check, durations, the summary table.

use std::env;
use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A `cargo` command using the same cargo that runs xtask (cargo sets `$CARGO` for
/// `cargo run`), so a rustup override or toolchain file applies to the inner builds too.
pub fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The command line as a shell user would type it, environment overrides first.
pub fn describe(cmd: &Command) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            parts.push(format!("{}={}", k.to_string_lossy(), shell_word(v)));
        }
    }
    let program = Path::new(cmd.get_program());
    // `$CARGO` is an absolute path into the toolchain; the short name reads better.
    let shown = match program.file_name() {
        Some(name) if program.is_absolute() && name == "cargo" => name,
        _ => program.as_os_str(),
    };
    parts.push(shell_word(shown));
    parts.extend(cmd.get_args().map(shell_word));
    parts.join(" ")
}

fn shell_word(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Echoes `cmd` to stderr, runs it with inherited stdio and fails unless it exits with 0.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let line = describe(cmd);
    eprintln!("$ {line}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not start `{line}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{line}` failed ({status})"))
    }
}

/// Waits for `child` until `deadline`; past it, kills the child and says so.
fn wait_until(
    child: &mut Child,
    deadline: Instant,
    timeout: Duration,
) -> Result<ExitStatus, String> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "killed after the {} time-out",
                    fmt_duration(timeout)
                ));
            }
            Err(e) => return Err(format!("waiting for the child: {e}")),
        }
    }
}

/// Like `run`, but kills the command if it is still running after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<(), String> {
    let line = describe(cmd);
    eprintln!("$ {line}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start `{line}`: {e}"))?;
    let status = wait_until(&mut child, Instant::now() + timeout, timeout)?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{line}` failed ({status})"))
    }
}

/// Runs `cmd` with stdout captured (stdin and stderr as the caller set them) and kills it
/// if it is still running after `timeout`. Returns the exit status and everything it wrote
/// to stdout.
pub fn output_with_timeout(
    cmd: &mut Command,
    timeout: Duration,
) -> Result<(ExitStatus, Vec<u8>), String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start `{}`: {e}", describe(cmd)))?;
    let mut stdout = child.stdout.take().expect("stdout was piped");
    // A pipe can fill up: drain it while the child runs.
    let reader = thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let status = wait_until(&mut child, Instant::now() + timeout, timeout);
    // After a kill the pipe reaches end-of-file, so the reader always finishes.
    let out = reader
        .join()
        .map_err(|_| "stdout reader panicked".to_string())?;
    let status = status?;
    let out = out.map_err(|e| format!("reading stdout: {e}"))?;
    Ok((status, out))
}

/// Whether an executable called `name` is on `$PATH`.
pub fn on_path(name: &str) -> bool {
    env::var_os("PATH").is_some_and(|path| {
        env::split_paths(&path).any(|dir| {
            let p = dir.join(name);
            p.is_file()
                && std::fs::metadata(&p).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                })
        })
    })
}

/// Whether the user set `name` (to anything, even empty).
pub fn env_set(name: &str) -> bool {
    env::var_os(name).is_some()
}

/// `1.23s`, `12.3s`, `2m05s`: short and fixed-precision, for step timings.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.2}s")
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// How a step or part ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok,
    Skipped(String),
    Failed(String),
}

/// Rows of (name, outcome, elapsed) printed as a table at the end of `test` and `demo`.
#[derive(Debug, Default)]
pub struct Summary {
    rows: Vec<(String, Outcome, Duration)>,
    started: Option<Instant>,
    /// When known, banners number the steps: `[3/9] clippy`.
    planned: Option<usize>,
}

impl Summary {
    pub fn new() -> Self {
        Summary {
            rows: Vec::new(),
            started: Some(Instant::now()),
            planned: None,
        }
    }

    /// A summary whose banners count up to `planned` steps.
    pub fn numbered(planned: usize) -> Self {
        Summary {
            planned: Some(planned),
            ..Summary::new()
        }
    }

    /// Prints a banner, runs `f`, prints how it ended and records the row.
    pub fn step(&mut self, name: &str, f: impl FnOnce() -> Result<Outcome, String>) -> Outcome {
        match self.planned {
            Some(n) => eprintln!("\n==> [{}/{n}] {name}", self.rows.len() + 1),
            None => eprintln!("\n==> {name}"),
        }
        let start = Instant::now();
        let outcome = f().unwrap_or_else(Outcome::Failed);
        let elapsed = start.elapsed();
        let took = fmt_duration(elapsed);
        match &outcome {
            Outcome::Ok => eprintln!("<== {name}: ok in {took}"),
            Outcome::Skipped(why) => eprintln!("<== {name}: skipped ({why})"),
            Outcome::Failed(why) => eprintln!("<== {name}: FAILED after {took}: {why}"),
        }
        self.rows.push((name.to_string(), outcome.clone(), elapsed));
        outcome
    }

    /// The failed rows: (name, why).
    pub fn failures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rows.iter().filter_map(|(name, o, _)| match o {
            Outcome::Failed(why) => Some((name.as_str(), why.as_str())),
            _ => None,
        })
    }

    /// Prints the table, then each failure with its cause; returns the exit code.
    pub fn finish(&self, what: &str) -> ExitCode {
        println!("\n{}", self.render());
        if self.any_failed() {
            for (name, why) in self.failures() {
                println!("{what}: FAILED at {name}: {why}");
            }
            ExitCode::FAILURE
        } else {
            println!("{what}: ok");
            ExitCode::SUCCESS
        }
    }

    pub fn any_failed(&self) -> bool {
        self.rows
            .iter()
            .any(|(_, o, _)| matches!(o, Outcome::Failed(_)))
    }

    /// The table: one row per step, then the total wall time.
    pub fn render(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|(n, _, _)| n.len())
            .max()
            .unwrap_or(0)
            .max(5);
        let mut out = String::new();
        out.push_str(&format!("{:<width$}  {:>8}  result\n", "step", "time"));
        for (name, outcome, elapsed) in &self.rows {
            let result = match outcome {
                Outcome::Ok => "ok".to_string(),
                Outcome::Skipped(why) => format!("skipped: {why}"),
                Outcome::Failed(_) => "FAILED".to_string(),
            };
            out.push_str(&format!(
                "{name:<width$}  {:>8}  {result}\n",
                fmt_duration(*elapsed)
            ));
        }
        if let Some(start) = self.started {
            out.push_str(&format!(
                "{:<width$}  {:>8}\n",
                "total",
                fmt_duration(start.elapsed())
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_quotes_what_a_shell_would_split() {
        let mut c = Command::new("cargo");
        c.args(["test", "--", "--test-threads=1", "two words", "it's"]);
        c.env("RUSTFLAGS", "--cfg loom");
        assert_eq!(
            describe(&c),
            r"RUSTFLAGS='--cfg loom' cargo test -- --test-threads=1 'two words' 'it'\''s'"
        );
    }

    #[test]
    fn output_with_timeout_captures_stdout_and_kills_hangs() {
        let (status, out) = output_with_timeout(
            Command::new("sh").args(["-c", "echo hi; exit 3"]),
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(out, b"hi\n");
        let err = output_with_timeout(Command::new("sleep").arg("30"), Duration::from_millis(100))
            .unwrap_err();
        assert!(err.contains("time-out"), "{err}");
    }

    #[test]
    fn run_with_timeout_reports_status_and_kills_hangs() {
        let ok = run_with_timeout(&mut Command::new("true"), Duration::from_secs(60));
        assert_eq!(ok, Ok(()));
        let failed = run_with_timeout(&mut Command::new("false"), Duration::from_secs(60));
        assert!(failed.unwrap_err().contains("failed"));
        let hung = run_with_timeout(Command::new("sleep").arg("30"), Duration::from_millis(100));
        assert!(hung.unwrap_err().contains("time-out"));
    }

    #[test]
    fn durations_format_by_magnitude() {
        assert_eq!(fmt_duration(Duration::from_millis(1234)), "1.23s");
        assert_eq!(fmt_duration(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(fmt_duration(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn summary_records_outcomes_in_order() {
        let mut s = Summary::new();
        assert_eq!(s.step("a", || Ok(Outcome::Ok)), Outcome::Ok);
        assert_eq!(
            s.step("b", || Ok(Outcome::Skipped("absent".into()))),
            Outcome::Skipped("absent".into())
        );
        assert!(!s.any_failed());
        assert_eq!(
            s.step("c", || Err("boom".into())),
            Outcome::Failed("boom".into())
        );
        assert!(s.any_failed());
        assert_eq!(s.failures().collect::<Vec<_>>(), [("c", "boom")]);
        let table = s.render();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[1].starts_with("a ") && lines[1].ends_with("ok"));
        assert!(lines[2].ends_with("skipped: absent"));
        assert!(lines[3].ends_with("FAILED"));
        assert!(lines[4].starts_with("total"));
    }
}
