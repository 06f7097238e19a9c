//! Running commands: echo, status check, time-outs, and how durations print.

use std::env;
use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
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
                kill_tree(child);
                return Err(format!(
                    "killed after the {} time-out",
                    fmt_duration(timeout)
                ));
            }
            Err(e) => return Err(format!("waiting for the child: {e}")),
        }
    }
}

/// Kills `child` and every process it started (`cargo` runs the test binaries, which a
/// plain kill would leave running), then reaps `child`.
fn kill_tree(child: &mut Child) {
    // Listed first: once `child` dies, its children are re-parented and cannot be found.
    let tree = descendants(child.id());
    let _ = child.kill();
    if !tree.is_empty() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(tree.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.wait();
}

/// The ids of the processes descended from `pid`, read from `/proc` (none where it is absent).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((id, ppid));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(id, ppid) in &parents {
            if ppid == p && !found.contains(&id) {
                found.push(id);
                frontier.push(id);
            }
        }
    }
    found
}

/// Like `run`, but kills the command (and what it started) if it is still running after
/// `timeout`.
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
    fn time_out_kills_the_grandchildren_too() {
        let dir = std::env::temp_dir().join(format!("xtask-kill-tree-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let hung = run_with_timeout(
            Command::new("sh").args(["-c", &script]),
            Duration::from_millis(300),
        );
        assert!(hung.unwrap_err().contains("time-out"));
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        // Killed: gone, or a zombie until init reaps it.
        let stat = format!("/proc/{}/stat", pid.trim());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match std::fs::read_to_string(&stat) {
                Err(_) => break,
                Ok(s)
                    if s.rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z')) =>
                {
                    break;
                }
                Ok(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(s) => panic!("grandchild still running: {s}"),
            }
        }
    }

    #[test]
    fn durations_format_by_magnitude() {
        assert_eq!(fmt_duration(Duration::from_millis(1234)), "1.23s");
        assert_eq!(fmt_duration(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(fmt_duration(Duration::from_secs(125)), "2m05s");
    }
}
