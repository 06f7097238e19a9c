//! The outcome of each step of a run, its time, and the table printed at the end.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::util::fmt_duration;

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
