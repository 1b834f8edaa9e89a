//! `bench/plot [RESULTS.jsonl…] [--out DIR]`: the charts of `docs/PERFORMANCE.md` from the JSON
//! lines `bench/run` writes (default: the newest file in `bench/results/`; default `--out`:
//! `docs/img`). Medians over rounds; SVG, text as `<text>` elements (no fonts needed).
//!
//! * `core.svg` — operations per second per workload and implementation (log scale);
//! * `http.svg` — requests per second per endpoint and server (log scale);
//! * `sizes.svg` — point select, a page of 50, bulk insert and the lowercase migration against
//!   table size;
//! * `writers.svg` — the slowest write per 50 ms while the lowercase migration runs, as one
//!   transaction and in batches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::Value;

type BoxErr = Box<dyn std::error::Error>;

const PALETTE: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

fn color(order: &[String], name: &str) -> RGBColor {
    let i = order.iter().position(|n| n == name).unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    })
}

fn s<'a>(row: &'a Value, key: &str) -> &'a str {
    row.get(key).and_then(Value::as_str).unwrap_or("")
}

fn f(row: &Value, key: &str) -> Option<f64> {
    row.get(key).and_then(Value::as_f64)
}

struct Results {
    rows: Vec<Value>,
    /// Implementations in first-seen order (stable colours).
    impls: Vec<String>,
}

impl Results {
    fn load(files: &[PathBuf]) -> Result<Self, BoxErr> {
        let mut rows = Vec::new();
        let mut impls: Vec<String> = Vec::new();
        for file in files {
            for line in std::fs::read_to_string(file)?.lines() {
                if line.trim().is_empty() {
                    continue;
                }
                let row: Value = serde_json::from_str(line)?;
                if row.get("meta").is_some() {
                    continue;
                }
                let name = s(&row, "impl").to_owned();
                if !impls.contains(&name) {
                    impls.push(name);
                }
                rows.push(row);
            }
        }
        Ok(Self { rows, impls })
    }

    fn phase<'a>(&'a self, phase: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.rows.iter().filter(move |r| s(r, "phase") == phase)
    }

    /// Median of `key` per (group, impl) over the rows of `phase` passing `keep`.
    fn medians(
        &self,
        phase: &str,
        key: &str,
        group: impl Fn(&Value) -> String,
    ) -> BTreeMap<(String, String), f64> {
        let mut acc: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        for r in self.phase(phase) {
            if let Some(v) = f(r, key) {
                acc.entry((group(r), s(r, "impl").to_owned()))
                    .or_default()
                    .push(v);
            }
        }
        acc.into_iter()
            .filter_map(|(k, v)| median(v).map(|m| (k, m)))
            .collect()
    }
}

/// Grouped bars on a log axis: one group per `groups` entry, one bar per implementation.
fn bars(
    path: &Path,
    title: &str,
    y_label: &str,
    groups: &[String],
    values: &BTreeMap<(String, String), f64>,
    order: &[String],
) -> Result<(), BoxErr> {
    let impls: Vec<&String> = order
        .iter()
        .filter(|i| {
            values
                .iter()
                .any(|((g, n), _)| n == *i && groups.contains(g))
        })
        .collect();
    if groups.is_empty() || impls.is_empty() {
        return Ok(());
    }
    let shown = || {
        values
            .iter()
            .filter(|((g, _), _)| groups.contains(g))
            .map(|(_, v)| *v)
    };
    let max = shown().fold(1.0, f64::max);
    let min = shown().fold(max, f64::min);
    let lo = 10f64.powf(min.log10().floor());
    let hi = 10f64.powf(max.log10().ceil() + 0.3);
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = groups.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(84)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_label)
        .x_labels(n)
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                groups.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| format_si(*v))
        .light_line_style(RGBColor(242, 242, 242))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    let width = 0.8 / impls.len() as f64;
    for (k, name) in impls.iter().enumerate() {
        let c = color(order, name);
        let rects: Vec<_> = groups
            .iter()
            .enumerate()
            .filter_map(|(g, group)| {
                values.get(&(group.clone(), (*name).clone())).map(|v| {
                    let x0 = g as f64 - 0.4 + width * k as f64;
                    Rectangle::new([(x0, lo), (x0 + width * 0.92, *v)], c.filled())
                })
            })
            .collect();
        chart
            .draw_series(rects)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

/// One panel of lines: x and y per implementation.
struct Panel<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    log_x: bool,
    log_y: bool,
    /// Break a line where consecutive x differ by more than this (no data in between).
    gap: Option<f64>,
    lines: Vec<(String, Vec<(f64, f64)>)>,
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel<'_>,
    order: &[String],
) -> Result<(), BoxErr>
where
    DB::ErrorType: 'static,
{
    let points = || panel.lines.iter().flat_map(|(_, l)| l.iter().copied());
    if points().next().is_none() {
        return Ok(());
    }
    let (x0, x1) = bounds(points().map(|p| p.0), panel.log_x, 1.6);
    let (y0, y1) = bounds(points().map(|p| p.1), panel.log_y, 4.0);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(panel.title, ("sans-serif", 17))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(64);
    macro_rules! finish {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(panel.x_label)
                .y_desc(panel.y_label)
                .x_label_formatter(&|v| format_si(*v))
                .y_label_formatter(&|v| format_si(*v))
                .light_line_style(RGBColor(242, 242, 242))
                .label_style(("sans-serif", 12))
                .axis_desc_style(("sans-serif", 13))
                .draw()?;
            for (name, line) in &panel.lines {
                let c = color(order, name);
                let mut pieces: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
                for &p in line {
                    let broken = match (panel.gap, pieces.last().and_then(|l| l.last())) {
                        (Some(gap), Some(prev)) => p.0 - prev.0 > gap,
                        _ => false,
                    };
                    if broken {
                        pieces.push(Vec::new());
                    }
                    if let Some(piece) = pieces.last_mut() {
                        piece.push(p);
                    }
                }
                for (k, piece) in pieces.into_iter().enumerate() {
                    let series = chart.draw_series(LineSeries::new(piece, c.stroke_width(2)))?;
                    if k == 0 {
                        series.label(name.as_str()).legend(move |(x, y)| {
                            PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2))
                        });
                    }
                }
                chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw()?;
        }};
    }
    let log_axis = |lo: f64, hi: f64| {
        let (labelled, grid) = log_ticks(lo, hi);
        (lo..hi)
            .log_scale()
            .with_key_points(labelled)
            .with_light_points(grid)
    };
    match (panel.log_x, panel.log_y) {
        (true, true) => finish!(builder.build_cartesian_2d(log_axis(x0, x1), log_axis(y0, y1))?),
        (true, false) => finish!(builder.build_cartesian_2d(log_axis(x0, x1), y0..y1)?),
        (false, true) => finish!(builder.build_cartesian_2d(x0..x1, log_axis(y0, y1))?),
        (false, false) => finish!(builder.build_cartesian_2d(x0..x1, y0..y1)?),
    }
    Ok(())
}

/// The labelled ticks of a log axis from `lo` to `hi` (1, 2, 3, 5 times a power of ten over
/// up to one and a half decades, 1, 2, 5 up to three, powers of ten beyond: labels never
/// crowd) and the unlabelled grid lines between them (every other integer multiple).
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let decades = (hi / lo).log10();
    let labelled: &[f64] = if decades <= 1.5 {
        &[1.0, 2.0, 3.0, 5.0]
    } else if decades <= 3.0 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let (mut bold, mut light) = (Vec::new(), Vec::new());
    let mut power = 10f64.powf(lo.log10().floor());
    while power <= hi {
        for m in 1..10 {
            let v = power * f64::from(m);
            if v < lo || v > hi {
                continue;
            }
            if labelled.contains(&f64::from(m)) {
                bold.push(v);
            } else {
                light.push(v);
            }
        }
        power *= 10.0;
    }
    (bold, light)
}

fn bounds(values: impl Iterator<Item = f64>, log: bool, top: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if log {
        // A little room beyond the data; `top` leaves room for the legend above it.
        (lo.max(1e-9) / 1.6, hi.max(1e-9) * top)
    } else {
        let pad = (hi - lo).abs().max(1.0) * 0.05;
        (lo.min(0.0), hi + pad)
    }
}

fn format_si(v: f64) -> String {
    let v = if v.abs() < 1e-9 { 0.0 } else { v };
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn main() -> Result<(), BoxErr> {
    let mut files = Vec::new();
    let mut out = PathBuf::from("docs/img");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--out" {
            out = args.next().ok_or("--out wants a directory")?.into();
        } else {
            files.push(PathBuf::from(arg));
        }
    }
    if files.is_empty() {
        let mut all: Vec<PathBuf> = std::fs::read_dir("bench/results")?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        all.sort();
        files.push(
            all.pop()
                .ok_or("no results in bench/results; give a file")?,
        );
    }
    std::fs::create_dir_all(&out)?;
    let results = Results::load(&files)?;
    let order = results.impls.clone();

    let core = results.medians("core", "ops_per_s", |r| s(r, "workload").to_owned());
    let workloads: Vec<String> = [
        "point-select",
        "page",
        "insert-one",
        "bulk-insert",
        "lowercase",
        "health",
    ]
    .iter()
    .map(|w| (*w).to_owned())
    .filter(|w| core.keys().any(|(g, _)| g == w))
    .collect();
    bars(
        &out.join("core.svg"),
        "Core workloads: operations per second (rows/s for bulk-insert and lowercase)",
        "operations per second (log scale)",
        &workloads,
        &core,
        &order,
    )?;

    let http = results.medians("http", "ops_per_s", |r| s(r, "workload").to_owned());
    let endpoints: Vec<String> = ["GET /users/{id}", "POST /users", "GET /users?after"]
        .iter()
        .map(|w| (*w).to_owned())
        .filter(|w| http.keys().any(|(g, _)| g == w))
        .collect();
    bars(
        &out.join("http.svg"),
        "HTTP service end to end: requests per second (wrk, 32 connections)",
        "requests per second (log scale)",
        &endpoints,
        &http,
        &order,
    )?;

    sizes(&results, &order, &out.join("sizes.svg"))?;
    writers(&results, &out.join("writers.svg"))?;
    Ok(())
}

/// Lines of `key` against the table size for one sizes-phase workload.
fn size_lines(
    results: &Results,
    workload: &str,
    key: &str,
    order: &[String],
) -> Vec<(String, Vec<(f64, f64)>)> {
    let med = results.medians("sizes", key, |r| {
        if s(r, "workload") == workload {
            format!("{:020}", f(r, "size").unwrap_or(0.0) as u64)
        } else {
            String::new()
        }
    });
    order
        .iter()
        .filter_map(|name| {
            let line: Vec<(f64, f64)> = med
                .iter()
                .filter(|((g, n), _)| n == name && !g.is_empty())
                .map(|((g, _), v)| (g.parse::<f64>().unwrap_or(0.0), *v))
                .collect();
            (!line.is_empty()).then(|| (name.clone(), line))
        })
        .collect()
}

fn sizes(results: &Results, order: &[String], path: &Path) -> Result<(), BoxErr> {
    if results.phase("sizes").next().is_none() {
        return Ok(());
    }
    let root = SVGBackend::new(path, (1100, 820)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled("Cost against table size (medians)", ("sans-serif", 22))?;
    let panels = [
        Panel {
            title: "point select by id",
            x_label: "rows in the table",
            y_label: "selects per second",
            log_x: true,
            log_y: true,
            gap: None,
            lines: size_lines(results, "point-select", "ops_per_s", order),
        },
        Panel {
            title: "a page of 50 after a random id",
            x_label: "rows in the table",
            y_label: "pages per second",
            log_x: true,
            log_y: true,
            gap: None,
            lines: size_lines(results, "page", "ops_per_s", order),
        },
        Panel {
            title: "bulk insert",
            x_label: "rows inserted",
            y_label: "rows per second",
            log_x: true,
            log_y: true,
            gap: None,
            lines: size_lines(results, "bulk-insert", "ops_per_s", order),
        },
        Panel {
            title: "lowercase migration (every row mixed case)",
            x_label: "rows in the table",
            y_label: "seconds",
            log_x: true,
            log_y: true,
            gap: None,
            lines: size_lines(results, "lowercase", "secs", order),
        },
    ];
    for (area, panel) in root.split_evenly((2, 2)).iter().zip(&panels) {
        draw_panel(area, panel, order)?;
    }
    root.present()?;
    Ok(())
}

fn writers(results: &Results, path: &Path) -> Result<(), BoxErr> {
    // The first round of each (size, migration).
    let mut runs: BTreeMap<(u64, String), &Value> = BTreeMap::new();
    for r in results.phase("writers") {
        let key = (
            f(r, "size").unwrap_or(0.0) as u64,
            s(r, "migration").to_owned(),
        );
        runs.entry(key).or_insert(r);
    }
    if runs.is_empty() {
        return Ok(());
    }
    let mut sizes: Vec<u64> = runs.keys().map(|(n, _)| *n).collect();
    sizes.dedup();
    sizes.sort_unstable();
    let sizes: Vec<u64> = sizes.into_iter().rev().take(2).rev().collect();
    let order: Vec<String> = vec!["one transaction".into(), "batched (the migration)".into()];
    let root = SVGBackend::new(path, (1100, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Slowest write started per 50 ms during the lowercase migration (gap: every writer waiting)",
        ("sans-serif", 20),
    )?;
    let titles: Vec<String> = sizes
        .iter()
        .map(|n| format!("{} rows", format_si(*n as f64)))
        .collect();
    let areas = root.split_evenly((1, sizes.len()));
    for ((area, n), title) in areas.iter().zip(&sizes).zip(&titles) {
        let mut lines = Vec::new();
        for (migration, label) in [("single", &order[0]), ("batched", &order[1])] {
            if let Some(r) = runs.get(&(*n, migration.to_owned())) {
                let line: Vec<(f64, f64)> = r
                    .get("timeline")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        let p = p.as_array()?;
                        Some((p.first()?.as_f64()? / 1000.0, p.get(2)?.as_f64()?.max(0.1)))
                    })
                    .collect();
                lines.push((label.clone(), line));
            }
        }
        draw_panel(
            area,
            &Panel {
                title,
                x_label: "seconds since the migration started",
                y_label: "slowest write (ms, log scale)",
                log_x: false,
                log_y: true,
                gap: Some(0.075),
                lines,
            },
            &order,
        )?;
    }
    root.present()?;
    Ok(())
}
