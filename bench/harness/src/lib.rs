//! The benchmark's contract (see `bench/README.md`), shared by `db-bench` and the Rust peers:
//! every implementation is run as `CMD <workload>`, reads the `BENCH_*` environment, times
//! only the workload (pool connected and warmed first) and prints exactly one JSON line.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Map, Value, json};

/// Errors of a benchmark run: reported on stderr, exit status 1.
pub type BoxErr = Box<dyn std::error::Error + Send + Sync>;

/// Exit status of an implementation that does not support a workload.
pub const UNSUPPORTED: i32 = 2;

/// Rows per page of the `page` workload.
pub const PAGE_SIZE: u64 = 50;

/// The shared settings, from the `BENCH_*` environment (defaults in brackets in the README).
#[derive(Debug, Clone)]
pub struct Cfg {
    /// Server URL (with a password only when the operator put one there; never printed).
    pub url: String,
    /// libpq-style sslmode every implementation applies.
    pub sslmode: String,
    /// Rows in the table for point-select and page (ids 1..=n).
    pub n: u64,
    /// Concurrent workers.
    pub c: usize,
    /// Pool size.
    pub p: u32,
    /// point-select and page operations in total.
    pub point_ops: u64,
    /// insert-one operations in total.
    pub insert_ops: u64,
    /// Rows of the one bulk insert.
    pub bulk_rows: u64,
    /// Mixed-case rows the lowercase migration (and the writers workload) changes.
    pub lower_rows: u64,
    /// Sequential health checks.
    pub health_ops: u64,
    /// The `impl` field.
    pub impl_name: String,
}

/// `key` parsed from the environment, or `default` when unset or empty.
///
/// # Errors
///
/// When the value does not parse, naming the variable.
pub fn env_or<T: FromStr>(key: &str, default: T) -> Result<T, BoxErr> {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{key}={v:?} is not a valid value").into()),
        _ => Ok(default),
    }
}

impl Cfg {
    /// Reads the settings; `default_name` is the `impl` field without `BENCH_IMPL_NAME`.
    ///
    /// # Errors
    ///
    /// A variable that does not parse.
    pub fn from_env(default_name: &str) -> Result<Self, BoxErr> {
        Ok(Self {
            url: env_or(
                "BENCH_DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/bench".to_owned(),
            )?,
            sslmode: env_or("BENCH_SSLMODE", "disable".to_owned())?,
            n: env_or("BENCH_N", 10_000)?,
            c: env_or("BENCH_C", 8)?,
            p: env_or("BENCH_P", 8)?,
            point_ops: env_or("BENCH_POINT_OPS", 50_000)?,
            insert_ops: env_or("BENCH_INSERT_OPS", 20_000)?,
            bulk_rows: env_or("BENCH_BULK_ROWS", 100_000)?,
            lower_rows: env_or("BENCH_LOWER_ROWS", 200_000)?,
            health_ops: env_or("BENCH_HEALTH_OPS", 10_000)?,
            impl_name: env_or("BENCH_IMPL_NAME", default_name.to_owned())?,
        })
    }

    /// The URL with `sslmode=BENCH_SSLMODE` appended.
    #[must_use]
    pub fn url_with_sslmode(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}sslmode={}", self.url, self.sslmode)
    }

    /// A random keyset position for the page workload: 0 ..= n − PAGE_SIZE, so every page
    /// is full.
    #[must_use]
    pub fn random_after(&self) -> i64 {
        let last = self.n.saturating_sub(PAGE_SIZE);
        i64::try_from(fastrand::u64(0..=last)).unwrap_or(0)
    }
}

/// A random id in 1 ..= n.
#[must_use]
pub fn random_id(n: u64) -> i64 {
    i64::try_from(fastrand::u64(1..=n.max(1))).unwrap_or(1)
}

/// user+sys CPU seconds of this whole process (all threads).
///
/// # Errors
///
/// When `getrusage` fails.
pub fn cpu_seconds() -> Result<f64, BoxErr> {
    use nix::sys::resource::{UsageWho, getrusage};
    use nix::sys::time::TimeValLike;
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let micros = usage.user_time().num_microseconds() + usage.system_time().num_microseconds();
    Ok(micros as f64 / 1e6)
}

/// Nearest-rank percentile in microseconds (the same definition in every implementation).
#[must_use]
pub fn percentile_us(sorted_ns: &[u64], p: f64) -> Option<f64> {
    if sorted_ns.is_empty() {
        return None;
    }
    let rank = ((p * sorted_ns.len() as f64).ceil() as usize).max(1);
    Some(sorted_ns[rank.min(sorted_ns.len()) - 1] as f64 / 1000.0)
}

/// One measured workload.
#[derive(Debug, Default)]
pub struct Measured {
    /// Operations (rows for bulk-insert and lowercase).
    pub ops: u64,
    /// Wall time of the timed region.
    pub secs: f64,
    /// Client CPU in the timed region.
    pub cpu_s: f64,
    /// Per-operation latencies (empty for single-call workloads).
    pub lat_ns: Vec<u64>,
    /// Extra keys for the line.
    pub extra: Map<String, Value>,
}

/// Prints the workload's one JSON line on stdout: this line is the program's output.
#[allow(clippy::print_stdout)]
pub fn emit(cfg: &Cfg, workload: &str, m: Measured) {
    let mut lat = m.lat_ns;
    lat.sort_unstable();
    let round1 = |x: f64| (x * 10.0).round() / 10.0;
    let mut line = json!({
        "impl": cfg.impl_name,
        "workload": workload,
        "ops": m.ops,
        "secs": m.secs,
        "ops_per_s": round1(m.ops as f64 / m.secs),
        "p50_us": percentile_us(&lat, 0.50).map(round1),
        "p99_us": percentile_us(&lat, 0.99).map(round1),
        "cpu_s": m.cpu_s,
        "cpu_us_per_op": (m.cpu_s * 1e8 / m.ops as f64).round() / 100.0,
    });
    if let Value::Object(map) = &mut line {
        map.extend(m.extra);
    }
    println!("{line}");
}

/// Runs `total` operations over `cfg.c` tokio tasks; each operation gets a global index.
///
/// # Errors
///
/// The first failed operation.
pub async fn run_concurrent<F, Fut, E>(cfg: &Cfg, total: u64, op: F) -> Result<Measured, BoxErr>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Into<BoxErr> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_seconds()?;
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(cfg.c);
    for _ in 0..cfg.c {
        let op = op.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity((total as usize / 8).max(16));
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let s = Instant::now();
                op(i).await.map_err(Into::into)?;
                lat.push(s.elapsed().as_nanos() as u64);
            }
            Ok::<_, BoxErr>(lat)
        }));
    }
    let mut lat_ns = Vec::with_capacity(total as usize);
    for t in tasks {
        lat_ns.extend(t.await??);
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds()? - cpu0;
    Ok(Measured {
        ops: total,
        secs,
        cpu_s,
        lat_ns,
        extra: Map::new(),
    })
}

/// Times one call (bulk-insert, lowercase): its result is the number of rows.
///
/// # Errors
///
/// The call's error.
pub async fn time_one<Fut, E>(call: Fut) -> Result<Measured, BoxErr>
where
    Fut: Future<Output = Result<u64, E>>,
    E: Into<BoxErr>,
{
    let cpu0 = cpu_seconds()?;
    let t0 = Instant::now();
    let rows = call.await.map_err(Into::into)?;
    Ok(Measured {
        ops: rows,
        secs: t0.elapsed().as_secs_f64(),
        cpu_s: cpu_seconds()? - cpu0,
        ..Measured::default()
    })
}

/// Runs `ops` sequential calls (health).
///
/// # Errors
///
/// The first failed call.
pub async fn run_sequential<F, Fut, E>(ops: u64, mut call: F) -> Result<Measured, BoxErr>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<BoxErr>,
{
    let mut lat_ns = Vec::with_capacity(ops as usize);
    let cpu0 = cpu_seconds()?;
    let t0 = Instant::now();
    for _ in 0..ops {
        let s = Instant::now();
        call().await.map_err(Into::into)?;
        lat_ns.push(s.elapsed().as_nanos() as u64);
    }
    Ok(Measured {
        ops,
        secs: t0.elapsed().as_secs_f64(),
        cpu_s: cpu_seconds()? - cpu0,
        lat_ns,
        extra: Map::new(),
    })
}

/// The workload named on the command line, or exit status 2 (unsupported) with a message.
#[allow(clippy::print_stderr)]
#[must_use]
pub fn workload_arg(program: &str, supported: &[&str]) -> String {
    let workload = std::env::args().nth(1).unwrap_or_default();
    if !supported.contains(&workload.as_str()) {
        eprintln!(
            "{program}: workload {workload:?} not supported (one of: {})",
            supported.join(", ")
        );
        std::process::exit(UNSUPPORTED);
    }
    workload
}

/// Reports a failed run on stderr and exits with status 1.
#[allow(clippy::print_stderr)]
pub fn fail(program: &str, workload: &str, err: &BoxErr) -> ! {
    eprintln!("{program} {workload}: error: {err}");
    std::process::exit(1);
}
