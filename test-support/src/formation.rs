//! [`TestFormation`]: a pg_auto_failover formation of a test's own — a monitor and two data
//! nodes on loopback, with the timeouts tuned so that a failover takes seconds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::{find_postgres_bin, free_port, is_root, run};

/// The database the formation's nodes serve (`pg_autoctl create postgres --dbname`).
pub const FORMATION_DATABASE: &str = "appdb";

/// How long the formation may take to reach a state (a node started, a switchover, a
/// failover) before the test fails with the logs.
const STATE_TIMEOUT: Duration = Duration::from_secs(90);

/// A pg_auto_failover formation: a monitor and two PostgreSQL nodes (`pg_autoctl`, from the
/// `postgresql-<version>-auto-failover` package), each on a free loopback port, in a temporary
/// folder. Started with the monitor's health checks every second, a node unhealthy after 5 s
/// and the nodes' network partition timeout at 5 s, so a killed primary is replaced in about
/// 15 s rather than about a minute. Synchronous replication is on (pg_auto_failover's default
/// with two nodes).
///
/// The calls block (starting takes a few seconds, a switchover about 4 s): call them from
/// `tokio::task::spawn_blocking` while other tasks of the test must keep running. Dropping the
/// handle kills every process of the formation and removes its folder. As root (which
/// `initdb` refuses) the programs run as the `postgres` user.
pub struct TestFormation {
    bin: PathBuf,
    dir: PathBuf,
    as_root: bool,
    monitor_port: u16,
    monitor: Option<Child>,
    nodes: Vec<Node>,
}

/// One process tree of the formation (`pg_autoctl … --run` and the PostgreSQL it runs), in a
/// process group of its own so that it can be killed whole.
struct Node {
    name: String,
    port: u16,
    child: Option<Child>,
}

impl TestFormation {
    /// Starts the monitor, tunes its timeouts, then starts two nodes one after the other and
    /// waits until one is the primary and the other its secondary.
    ///
    /// # Panics
    ///
    /// When `pg_autoctl` is not installed (the message says which package provides it) or the
    /// formation does not come up within 90 s (the message holds the logs).
    #[must_use]
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|err| panic!("cannot start a test formation: {err}"))
    }

    fn try_start() -> Result<Self, String> {
        let bin = find_postgres_bin()?;
        if !bin.join("pg_autoctl").is_file() && !Path::new("/usr/bin/pg_autoctl").is_file() {
            return Err(format!(
                "pg_autoctl is not installed (apt-get install postgresql-{}-auto-failover)",
                bin.parent()
                    .and_then(Path::file_name)
                    .map(|v| v.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "<version>".into())
            ));
        }
        let dir =
            std::env::temp_dir().join(format!("db_test_formation_{}", super::unique_suffix()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let as_root = is_root();
        if as_root {
            run(
                Command::new("chown").arg("postgres").arg(&dir),
                "chown the formation folder",
            )?;
        }
        let monitor_port = free_port()?;
        let mut formation = Self {
            monitor: None,
            bin,
            dir,
            as_root,
            monitor_port,
            nodes: Vec::new(),
        };
        formation.monitor = Some(formation.spawn(
            "monitor",
            &[
                "create",
                "monitor",
                "--pgport",
                &monitor_port.to_string(),
                "--hostname",
                "127.0.0.1",
                "--auth",
                "trust",
                "--no-ssl",
                "--run",
            ],
        )?);
        formation.wait_for("the monitor to accept connections", || {
            formation.monitor_query("SELECT 1").is_ok()
        })?;
        for setting in [
            "pgautofailover.node_considered_unhealthy_timeout = 5000",
            "pgautofailover.health_check_period = 1000",
            "pgautofailover.primary_demote_timeout = 10000",
        ] {
            formation.monitor_query(&format!("ALTER SYSTEM SET {setting}"))?;
        }
        formation.monitor_query("SELECT pg_reload_conf()")?;
        for (index, name) in ["node1", "node2"].into_iter().enumerate() {
            let port = free_port()?;
            let monitor = formation.monitor_url();
            let child = formation.spawn(
                name,
                &[
                    "create",
                    "postgres",
                    "--pgport",
                    &port.to_string(),
                    "--hostname",
                    "127.0.0.1",
                    "--listen",
                    "127.0.0.1",
                    "--monitor",
                    &monitor,
                    "--auth",
                    "trust",
                    "--no-ssl",
                    "--dbname",
                    FORMATION_DATABASE,
                    "--name",
                    name,
                    "--run",
                ],
            )?;
            formation.nodes.push(Node {
                name: name.to_owned(),
                port,
                child: Some(child),
            });
            if index == 0 {
                formation.wait_for("the first node to run as a single primary", || {
                    formation.states().is_ok_and(|s| s == "node1:single:single")
                })?;
            }
        }
        // The standby's base backup waits for a checkpoint, which the primary spreads over
        // minutes unless asked for one at once.
        let first = formation.nodes[0].port;
        formation.wait_for("a primary and a secondary", || {
            let _ = formation.psql(first, "postgres", "CHECKPOINT");
            formation.is_stable()
        })?;
        for node in &formation.nodes {
            formation.pg_autoctl(
                &node.name,
                &["config", "set", "timeout.network_partition_timeout", "5"],
            )?;
        }
        Ok(formation)
    }

    /// The formation's URL as `pg_autoctl show uri --formation default` prints it:
    /// `postgres://127.0.0.1:<p1>,127.0.0.1:<p2>/appdb?target_session_attrs=read-write&sslmode=prefer`.
    ///
    /// # Panics
    ///
    /// When `pg_autoctl show uri` fails.
    #[must_use]
    pub fn uri(&self) -> String {
        let output = self
            .command("monitor", &["show", "uri", "--formation", "default"])
            .stdout(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("pg_autoctl show uri: {e}"));
        assert!(
            output.status.success(),
            "pg_autoctl show uri failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The URL of the formation's database on one node (`port`), as the superuser.
    #[must_use]
    pub fn node_url(&self, port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{FORMATION_DATABASE}")
    }

    /// The ports of the two data nodes, in the order of the URL.
    #[must_use]
    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// The port of the node the monitor has as primary (reported and assigned), if any.
    ///
    /// # Panics
    ///
    /// When the monitor cannot be asked.
    #[must_use]
    pub fn primary_port(&self) -> Option<u16> {
        let answer = self
            .monitor_query(
                "SELECT nodeport FROM pgautofailover.node \
                 WHERE reportedstate = 'primary' AND goalstate = 'primary'",
            )
            .unwrap_or_else(|err| panic!("cannot ask the monitor: {err}"));
        answer.trim().parse().ok()
    }

    /// `pg_autoctl perform switchover`: the primary becomes the secondary and the other way
    /// round. Returns when the monitor reports a primary and a secondary again.
    ///
    /// # Panics
    ///
    /// When the switchover does not complete within 90 s.
    pub fn switchover(&self) {
        let node = &self.nodes[0].name;
        // It may print a spurious "invalid input syntax for type integer" while succeeding,
        // so the outcome is read from the monitor.
        let _ = self.pg_autoctl(node, &["perform", "switchover"]);
        self.wait_for("the switchover to complete", || self.is_stable())
            .unwrap_or_else(|err| panic!("{err}"));
    }

    /// Kills the primary node with SIGKILL (its `pg_autoctl` and PostgreSQL processes alike,
    /// as a crashed host would vanish) and returns its port. The monitor promotes the secondary
    /// once it has found the primary unhealthy (about 15 s with the tuned timeouts); see
    /// [`wait_for_primary_other_than`](Self::wait_for_primary_other_than).
    ///
    /// # Panics
    ///
    /// When there is no primary.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().expect("the formation has a primary");
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("the primary is one of the nodes");
        if let Some(child) = node.child.take() {
            kill_group(child);
        }
        port
    }

    /// Waits until a node other than `port` is the primary and returns its port.
    ///
    /// # Panics
    ///
    /// When none is within 90 s.
    #[must_use]
    pub fn wait_for_primary_other_than(&self, port: u16) -> u16 {
        let mut found = None;
        self.wait_for("a new primary", || {
            found = self
                .monitor_query(
                    "SELECT nodeport FROM pgautofailover.node \
                     WHERE reportedstate IN ('primary', 'wait_primary') \
                       AND goalstate IN ('primary', 'wait_primary')",
                )
                .ok()
                .and_then(|answer| answer.trim().parse::<u16>().ok())
                .filter(|&new| new != port);
            found.is_some()
        })
        .unwrap_or_else(|err| panic!("{err}"));
        found.unwrap_or_default()
    }

    /// The monitor's connection string for the nodes.
    fn monitor_url(&self) -> String {
        format!(
            "postgres://autoctl_node@127.0.0.1:{}/pg_auto_failover?sslmode=disable",
            self.monitor_port
        )
    }

    /// Whether the monitor reports one primary and one secondary, each in its assigned state.
    fn is_stable(&self) -> bool {
        self.states().is_ok_and(|states| {
            let mut states: Vec<&str> = states
                .lines()
                .map(|line| line.split_once(':').map_or("", |(_, state)| state))
                .collect();
            states.sort_unstable();
            states == ["primary:primary", "secondary:secondary"]
        })
    }

    /// `name:reported:assigned` of every node, a line each.
    fn states(&self) -> Result<String, String> {
        self.monitor_query(
            "SELECT nodename || ':' || reportedstate || ':' || goalstate \
             FROM pgautofailover.node ORDER BY nodeid",
        )
        .map(|answer| answer.trim().to_owned())
    }

    fn monitor_query(&self, sql: &str) -> Result<String, String> {
        self.psql(self.monitor_port, "pg_auto_failover", sql)
    }

    /// Runs `sql` with `psql` on a node's `database`; its output (unaligned, tuples only).
    fn psql(&self, port: u16, database: &str, sql: &str) -> Result<String, String> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-X", "-q", "-A", "-t"])
            .arg("-p")
            .arg(port.to_string())
            .arg("-d")
            .arg(database)
            .arg("-c")
            .arg(sql)
            .env("PGCONNECT_TIMEOUT", "2")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }

    /// Polls `condition` every 100 ms; after [`STATE_TIMEOUT`], the error holds the states and
    /// the tail of every log.
    fn wait_for(&self, what: &str, mut condition: impl FnMut() -> bool) -> Result<(), String> {
        let started = Instant::now();
        while !condition() {
            if started.elapsed() > STATE_TIMEOUT {
                return Err(format!(
                    "timed out after {STATE_TIMEOUT:?} waiting for {what}; states: {:?}\n{}",
                    self.states(),
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn logs(&self) -> String {
        ["monitor", "node1", "node2"]
            .iter()
            .map(|name| {
                let log = std::fs::read_to_string(self.dir.join(format!("{name}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {name}.log\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `pg_autoctl ARGS --pgdata <dir>/<name>` with the formation's environment.
    fn command(&self, name: &str, args: &[&str]) -> Command {
        let mut command = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "env"]);
            c
        } else {
            Command::new("env")
        };
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        command
            .arg(format!("PATH={path}"))
            // Configuration and state files in the formation's folder, not the user's home.
            .arg(format!(
                "XDG_CONFIG_HOME={}",
                self.dir.join("config").display()
            ))
            .arg(format!(
                "XDG_DATA_HOME={}",
                self.dir.join("share").display()
            ))
            .arg(format!(
                "XDG_RUNTIME_DIR={}",
                self.dir.join("run").display()
            ))
            // The servers' sockets, and where pg_autoctl looks for them.
            .arg(format!("PG_REGRESS_SOCK_DIR={}", self.dir.display()))
            .arg(format!("PGHOST={}", self.dir.display()))
            .arg("pg_autoctl")
            .args(args)
            .arg("--pgdata")
            .arg(self.dir.join(name))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    fn pg_autoctl(&self, name: &str, args: &[&str]) -> Result<(), String> {
        run(&mut self.command(name, args), "pg_autoctl")
    }

    /// Starts `pg_autoctl ARGS` for `name` in a process group of its own, logging to
    /// `<dir>/<name>.log`.
    fn spawn(&self, name: &str, args: &[&str]) -> Result<Child, String> {
        use std::os::unix::process::CommandExt as _;
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))
            .map_err(|e| format!("cannot create the log of {name}: {e}"))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot share the log of {name}: {e}"))?;
        self.command(name, args)
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start pg_autoctl for {name}: {e}"))
    }
}

/// Kills a process group with SIGKILL and reaps its leader.
fn kill_group(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}

impl std::fmt::Debug for TestFormation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestFormation")
            .field("dir", &self.dir)
            .field("monitor_port", &self.monitor_port)
            .field("node_ports", &self.node_ports())
            .finish_non_exhaustive()
    }
}

impl Drop for TestFormation {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.take() {
                kill_group(child);
            }
        }
        if let Some(monitor) = self.monitor.take() {
            kill_group(monitor);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // pg_autoctl keeps its pid files under /tmp/pg_autoctl/<data folder>.
        let _ = std::fs::remove_dir_all(
            Path::new("/tmp/pg_autoctl").join(self.dir.strip_prefix("/").unwrap_or(&self.dir)),
        );
    }
}
