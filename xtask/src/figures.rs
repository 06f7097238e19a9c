//! Benchmark figures: reading the JSON lines programs print, medians, and the report.
//!
//! The protocol (ARCHITECTURE.md): a benchmark program prints one flat JSON object per line
//! and figure, `{"bench":"sched/spawn","implementation":"gort","value":123.4,"unit":"ns/op"}`;
//! every other line is ignored. Repeated runs give a series of values per
//! (bench, implementation); the report shows each series' median, its range, and the ratio
//! of its median to gort's median for the same bench.

use std::fmt::Write as _;

use crate::json::{self, Value};

/// One measured figure, as printed by a benchmark program.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub bench: String,
    pub implementation: String,
    pub value: f64,
    pub unit: String,
}

/// Reads one line of a program's stdout: `Ok(None)` for a line that is not a JSON object,
/// `Ok(Some)` for a figure, and `Err` for an object that is malformed or is not a figure
/// (the caller warns: it is most likely a typo in a benchmark program).
pub fn parse_line(line: &str) -> Result<Option<Figure>, String> {
    let line = line.trim();
    if !line.starts_with('{') {
        return Ok(None);
    }
    let v = json::parse(line)?;
    let text = |key: &str| -> Result<String, String> {
        match v.get(key) {
            Some(Value::Str(s)) if !s.is_empty() => Ok(s.clone()),
            Some(_) => Err(format!("`{key}` must be a non-empty string")),
            None => Err(format!("missing `{key}`")),
        }
    };
    let value = v
        .get("value")
        .ok_or("missing `value`")?
        .as_f64()
        .ok_or("`value` must be a number")?;
    Ok(Some(Figure {
        bench: text("bench")?,
        implementation: text("implementation")?,
        value,
        unit: text("unit")?,
    }))
}

/// The median: the middle value, or the mean of the two middle values. `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// All values seen for one (bench, implementation).
#[derive(Debug, Clone)]
struct Series {
    bench: String,
    implementation: String,
    unit: String,
    values: Vec<f64>,
}

/// The figures collected over all runs, in order of first appearance.
#[derive(Debug, Default)]
pub struct Figures {
    series: Vec<Series>,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub bench: String,
    pub implementation: String,
    pub unit: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
    /// `median / gort's median` for the same bench and unit; `None` without a gort figure.
    pub ratio: Option<f64>,
}

/// The implementation the ratios are relative to.
pub const BASELINE: &str = "gort";

impl Figures {
    /// Records a figure. A unit that differs from earlier runs of the same series is an
    /// error (the value is dropped): a median over mixed units would mean nothing.
    pub fn add(&mut self, f: Figure) -> Result<(), String> {
        match self
            .series
            .iter_mut()
            .find(|s| s.bench == f.bench && s.implementation == f.implementation)
        {
            Some(s) if s.unit != f.unit => Err(format!(
                "{} / {}: unit `{}` differs from earlier `{}`; value dropped",
                f.bench, f.implementation, f.unit, s.unit
            )),
            Some(s) => {
                s.values.push(f.value);
                Ok(())
            }
            None => {
                self.series.push(Series {
                    bench: f.bench,
                    implementation: f.implementation,
                    unit: f.unit,
                    values: vec![f.value],
                });
                Ok(())
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// One row per series: benches in order of first appearance, gort first within a bench,
    /// then the other implementations in order of first appearance.
    pub fn rows(&self) -> Vec<Row> {
        let mut benches: Vec<&str> = Vec::new();
        for s in &self.series {
            if !benches.contains(&s.bench.as_str()) {
                benches.push(&s.bench);
            }
        }
        let mut rows = Vec::new();
        for bench in benches {
            let mut of_bench: Vec<&Series> =
                self.series.iter().filter(|s| s.bench == bench).collect();
            // A stable sort keeps the appearance order among the others.
            of_bench.sort_by_key(|s| s.implementation != BASELINE);
            let baseline = of_bench
                .iter()
                .find(|s| s.implementation == BASELINE)
                .and_then(|s| median(&s.values).map(|m| (m, s.unit.as_str())));
            for s in of_bench {
                let Some(m) = median(&s.values) else { continue };
                let ratio = match baseline {
                    Some((b, unit)) if unit == s.unit && b != 0.0 => Some(m / b),
                    _ => None,
                };
                rows.push(Row {
                    bench: s.bench.clone(),
                    implementation: s.implementation.clone(),
                    unit: s.unit.clone(),
                    median: m,
                    min: s.values.iter().copied().fold(f64::INFINITY, f64::min),
                    max: s.values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    runs: s.values.len(),
                    ratio,
                });
            }
        }
        rows
    }
}

/// A value with about four significant digits and no exponent.
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 1.0 {
        format!("{v:.3}")
    } else {
        let decimals = (3 - a.log10().floor() as i32).clamp(4, 12) as usize;
        format!("{v:.decimals$}")
    }
}

/// A ratio with two decimals, or two significant digits when it is below 0.1 (so a
/// hundredfold difference does not print as `0.00x`).
pub fn fmt_ratio(r: f64) -> String {
    let a = r.abs();
    if a >= 0.1 || a == 0.0 {
        format!("{r:.2}x")
    } else {
        let decimals = (1 - a.log10().floor() as i32).clamp(2, 12) as usize;
        format!("{r:.decimals$}x")
    }
}

/// The human-readable report: one row per (bench, implementation).
pub fn render_table(rows: &[Row]) -> String {
    let header = [
        "bench",
        "implementation",
        "median",
        "unit",
        "min–max",
        "runs",
        "vs gort",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.bench.clone(),
                r.implementation.clone(),
                fmt_value(r.median),
                r.unit.clone(),
                format!("{}–{}", fmt_value(r.min), fmt_value(r.max)),
                r.runs.to_string(),
                r.ratio.map_or_else(|| "-".to_string(), fmt_ratio),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    // Text columns align left, numbers right.
    let right = [false, false, true, false, true, true, true];
    let mut out = String::new();
    let mut line = |row: &[String]| {
        let mut l = String::new();
        for (i, c) in row.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            if i > 0 {
                l.push_str("  ");
            }
            if right[i] {
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header.map(str::to_string));
    let mut previous_bench: Option<&str> = None;
    for (r, row) in rows.iter().zip(&cells) {
        if previous_bench.is_some_and(|b| b != r.bench) {
            line(&[]);
        }
        previous_bench = Some(&r.bench);
        line(row);
    }
    out
}

/// The machine-readable report: one JSON object per line and row.
pub fn render_json(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        let _ = writeln!(
            out,
            "{{\"bench\":{},\"implementation\":{},\"value\":{},\"unit\":{},\"runs\":{},\"min\":{},\"max\":{}}}",
            json::quote(&r.bench),
            json::quote(&r.implementation),
            r.median,
            json::quote(&r.unit),
            r.runs,
            r.min,
            r.max
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(bench: &str, implementation: &str, value: f64, unit: &str) -> Figure {
        Figure {
            bench: bench.into(),
            implementation: implementation.into(),
            value,
            unit: unit.into(),
        }
    }

    #[test]
    fn figure_lines_parse_and_other_lines_are_ignored() {
        let line =
            r#"  {"bench":"sched/spawn","implementation":"gort","value":123.4,"unit":"ns/op"} "#;
        assert_eq!(
            parse_line(line),
            Ok(Some(fig("sched/spawn", "gort", 123.4, "ns/op")))
        );
        let reordered =
            r#"{"unit":"B","value":4.5e3,"extra":[1],"implementation":"go","bench":"b"}"#;
        assert_eq!(parse_line(reordered), Ok(Some(fig("b", "go", 4500.0, "B"))));
        for other in [
            "",
            "spawning 1000000 goroutines...",
            "[1,2]",
            "# {\"bench\":1}",
        ] {
            assert_eq!(parse_line(other), Ok(None), "{other:?}");
        }
    }

    #[test]
    fn malformed_figures_are_errors() {
        for bad in [
            r#"{"bench":"b","implementation":"gort","value":"12","unit":"ns"}"#,
            r#"{"bench":"b","implementation":"gort","unit":"ns"}"#,
            r#"{"bench":"","implementation":"gort","value":1,"unit":"ns"}"#,
            r#"{"bench":"b","value":1,"unit":"ns"}"#,
            r#"{"bench":"b","implementation":"gort","value":1,"unit":"ns""#,
            r#"{"bench":"b","implementation":7,"value":1,"unit":"ns"}"#,
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn median_of_odd_even_and_unsorted_series() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[9.0, 1.0, 100.0, 2.0, 3.0]), Some(3.0));
    }

    #[test]
    fn rows_take_medians_order_gort_first_and_compute_ratios() {
        let mut f = Figures::default();
        for (i, gort) in [12.0, 10.0, 11.0].into_iter().enumerate() {
            f.add(fig("sched/spawn", "tokio", 30.0 + i as f64, "ns/op"))
                .unwrap();
            f.add(fig("sched/spawn", "gort", gort, "ns/op")).unwrap();
            f.add(fig("sched/spawn", "go", 22.0, "ns/op")).unwrap();
            f.add(fig("sched/parked", "gort", 4096.0, "B/goroutine"))
                .unwrap();
        }
        f.add(fig("alloc/small", "mimalloc", 8.0, "ns/op")).unwrap();
        assert!(f.add(fig("sched/spawn", "go", 1.0, "us/op")).is_err());
        let rows = f.rows();
        let key: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.bench.as_str(), r.implementation.as_str()))
            .collect();
        assert_eq!(
            key,
            [
                ("sched/spawn", "gort"),
                ("sched/spawn", "tokio"),
                ("sched/spawn", "go"),
                ("sched/parked", "gort"),
                ("alloc/small", "mimalloc"),
            ]
        );
        assert_eq!(
            (rows[0].median, rows[0].min, rows[0].max, rows[0].runs),
            (11.0, 10.0, 12.0, 3)
        );
        assert_eq!(rows[0].ratio, Some(1.0));
        assert_eq!(rows[1].median, 31.0);
        assert_eq!(rows[1].ratio, Some(31.0 / 11.0));
        assert_eq!(rows[2].ratio, Some(2.0));
        assert_eq!(rows[2].runs, 3, "the value in other units was dropped");
        assert_eq!(rows[4].ratio, None, "no gort figure for alloc/small");
    }

    #[test]
    fn json_report_round_trips_through_the_parser() {
        let mut f = Figures::default();
        f.add(fig("sched/\"x\"", "gort", 1.5, "ns/op")).unwrap();
        f.add(fig("sched/\"x\"", "gort", 2.5, "ns/op")).unwrap();
        let out = render_json(&f.rows());
        let v = json::parse(out.trim()).unwrap();
        assert_eq!(v.get("bench").and_then(Value::as_str), Some("sched/\"x\""));
        assert_eq!(v.get("value").and_then(Value::as_f64), Some(2.0));
        assert_eq!(v.get("runs").and_then(Value::as_f64), Some(2.0));
        assert_eq!(v.get("min").and_then(Value::as_f64), Some(1.5));
        assert_eq!(v.get("max").and_then(Value::as_f64), Some(2.5));
        assert_eq!(parse_line(out.trim()).unwrap().unwrap().value, 2.0);
    }

    #[test]
    fn table_aligns_columns_and_formats_values() {
        assert_eq!(fmt_value(123456.7), "123457");
        assert_eq!(fmt_value(123.45), "123.5");
        assert_eq!(fmt_value(12.345), "12.35");
        assert_eq!(fmt_value(1.5), "1.500");
        assert_eq!(fmt_value(0.012345), "0.01235");
        assert_eq!(fmt_value(0.0), "0");
        assert_eq!(fmt_ratio(2.0), "2.00x");
        assert_eq!(fmt_ratio(0.125), "0.12x");
        assert_eq!(fmt_ratio(0.0097), "0.0097x");
        assert_eq!(fmt_ratio(0.00007), "0.000070x");
        let mut f = Figures::default();
        f.add(fig("sched/switch", "gort", 50.0, "ns/op")).unwrap();
        f.add(fig("sched/switch", "go", 150.0, "ns/op")).unwrap();
        f.add(fig("sched/parked", "gort", 4500.0, "B")).unwrap();
        let table = render_table(&f.rows());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(
            lines[0].starts_with("bench ") && lines[0].ends_with("vs gort"),
            "{table}"
        );
        assert!(
            lines[1].ends_with("1.00x") && lines[2].ends_with("3.00x"),
            "{table}"
        );
        assert_eq!(lines[3], "", "a blank line separates benches");
        let col = |l: &str| l.find("ns/op");
        assert_eq!(col(lines[1]), col(lines[2]), "{table}");
    }
}
