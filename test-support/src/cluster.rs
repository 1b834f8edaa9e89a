//! [`TestCluster`]: a PostgreSQL cluster of a test's own, started from the local installation.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A throw-away PostgreSQL cluster: `initdb` into a temporary folder, a server on a free
/// loopback port. For tests that must stop and restart the server, or need password
/// authentication, without touching the shared test server. Also the last resort of
/// [`TestDatabase`](super::TestDatabase) on machines where no server runs.
///
/// The programs are found on `PATH` or under `/usr/lib/postgresql/<newest>/bin`. As root (which
/// `initdb` refuses) they run as the `postgres` user. Dropping the handle stops the server and
/// removes the folder. The calls block (a cluster starts in about a second): in async tests
/// that is fine, nothing else runs on a test's runtime meanwhile.
pub struct TestCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_root: bool,
    password: Option<String>,
    /// Set once a watchdog owns the cluster's removal.
    detached: bool,
}

impl TestCluster {
    /// Starts a cluster whose superuser `postgres` logs in without a password.
    ///
    /// # Panics
    ///
    /// When no PostgreSQL installation is found or the server does not start.
    #[must_use]
    pub fn start() -> Self {
        Self::try_start(None).unwrap_or_else(|err| panic!("cannot start a test cluster: {err}"))
    }

    /// Starts a cluster where TCP logins need a password (SCRAM): superuser `postgres` with
    /// `password`.
    ///
    /// # Panics
    ///
    /// When no PostgreSQL installation is found or the server does not start.
    #[must_use]
    pub fn start_with_password(password: &str) -> Self {
        Self::try_start(Some(password))
            .unwrap_or_else(|err| panic!("cannot start a test cluster: {err}"))
    }

    /// Starts a streaming replica of `primary` (a cluster without a password): a base backup
    /// taken with `pg_basebackup -R -X stream` into a folder of its own, then a hot standby on
    /// a free loopback port, following `primary` from then on.
    ///
    /// # Panics
    ///
    /// When `pg_basebackup` is missing (it ships with the PostgreSQL server package, next to
    /// `initdb`) or the standby does not start.
    #[must_use]
    pub fn start_standby_of(primary: &TestCluster) -> Self {
        Self::try_start_standby(primary)
            .unwrap_or_else(|err| panic!("cannot start a standby cluster: {err}"))
    }

    fn try_start_standby(primary: &TestCluster) -> Result<Self, String> {
        let cluster = Self::new_folder(None)?;
        if !cluster.bin.join("pg_basebackup").is_file() {
            return Err(format!(
                "pg_basebackup is not in {} (install the PostgreSQL server package)",
                cluster.bin.display()
            ));
        }
        run(
            cluster
                .tool("pg_basebackup")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-R", "-X", "stream"])
                // An immediate checkpoint: the default spreads it over minutes.
                .args(["--checkpoint=fast", "--no-sync"])
                .arg("-p")
                .arg(primary.port.to_string())
                .arg("-D")
                .arg(cluster.data()),
            "pg_basebackup",
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// Promotes a standby to a primary (`pg_ctl promote`, waiting until it accepts writes).
    ///
    /// # Panics
    ///
    /// When `pg_ctl promote` fails.
    pub fn promote(&self) {
        run(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-w", "promote"]),
            "pg_ctl promote",
        )
        .unwrap_or_else(|err| panic!("cannot promote the test cluster: {err}"));
    }

    pub(super) fn try_start(password: Option<&str>) -> Result<Self, String> {
        Self::try_start_configured(password, |_| Ok(()))
    }

    /// [`try_start`](Self::try_start), with `configure` run on the data folder between
    /// `initdb` and the start (files it writes there are handed to `postgres` when running as
    /// root).
    pub(super) fn try_start_configured(
        password: Option<&str>,
        configure: impl FnOnce(&std::path::Path) -> Result<(), String>,
    ) -> Result<Self, String> {
        let cluster = Self::new_folder(password)?;
        let mut initdb = cluster.tool("initdb");
        initdb
            .arg("-D")
            .arg(cluster.data())
            .args(["-U", "postgres", "-E", "UTF8", "--no-sync"]);
        if let Some(password) = password {
            let pwfile = cluster.dir.join("pwfile");
            std::fs::write(&pwfile, password).map_err(|e| format!("pwfile: {e}"))?;
            if cluster.as_root {
                run(
                    Command::new("chown").arg("postgres").arg(&pwfile),
                    "chown the password file",
                )?;
            }
            initdb
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", pwfile.display()));
        } else {
            initdb.args(["-A", "trust"]);
        }
        run(&mut initdb, "initdb")?;
        configure(&cluster.data())?;
        if cluster.as_root {
            run(
                Command::new("chown")
                    .args(["-R", "postgres"])
                    .arg(cluster.data()),
                "chown the data folder",
            )?;
        }
        cluster.start_server()?;
        Ok(cluster)
    }

    /// A handle on a new, empty cluster folder (owned by `postgres` when running as root) and
    /// a free port; nothing started yet.
    fn new_folder(password: Option<&str>) -> Result<Self, String> {
        let bin = find_postgres_bin()?;
        let dir = std::env::temp_dir().join(format!("db_test_cluster_{}", super::unique_suffix()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let cluster = Self {
            bin,
            port: free_port()?,
            as_root: is_root(),
            password: password.map(str::to_owned),
            dir,
            detached: false,
        };
        if cluster.as_root {
            run(
                Command::new("chown").arg("postgres").arg(&cluster.dir),
                "chown the cluster folder",
            )?;
        }
        Ok(cluster)
    }

    /// The loopback port the server listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres[:password]@127.0.0.1:<port>/postgres`.
    #[must_use]
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// The URL of database `name` on this cluster, as the superuser.
    #[must_use]
    pub fn url(&self, name: &str) -> String {
        let credentials = match &self.password {
            Some(password) => format!("postgres:{password}"),
            None => "postgres".to_owned(),
        };
        format!("postgres://{credentials}@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server (`pg_ctl stop -m fast`: sessions are disconnected) and waits until it
    /// is down. The data stays; [`restart`](Self::restart) brings it back.
    ///
    /// # Panics
    ///
    /// When `pg_ctl` fails.
    pub fn stop(&self) {
        self.pg_ctl_stop("fast")
            .unwrap_or_else(|err| panic!("cannot stop the test cluster: {err}"));
    }

    /// Starts the server again on the same port, after [`stop`](Self::stop).
    ///
    /// # Panics
    ///
    /// When the server does not start.
    pub fn restart(&self) {
        self.start_server()
            .unwrap_or_else(|err| panic!("cannot restart the test cluster: {err}"));
    }

    /// Hands the cluster to a watchdog process that stops it and removes its folder when this
    /// process exits, however it exits (for a cluster shared by a whole test binary).
    pub(super) fn remove_when_process_exits(mut self) -> Result<(), String> {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = self.stop_command("immediate"),
            dir = self.dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the cluster's watchdog: {e}"))?;
        self.detached = true;
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn start_server(&self) -> Result<(), String> {
        let log = self.dir.join("server.log");
        let started = run(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o"])
                .arg(format!(
                    "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off \
                     -c synchronous_commit=off -c full_page_writes=off",
                    self.port,
                    self.dir.display()
                ))
                .arg("start"),
            "pg_ctl start",
        );
        started.map_err(|err| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{err}\n{log}")
        })
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), String> {
        run(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", mode, "-w", "stop"]),
            "pg_ctl stop",
        )
    }

    fn stop_command(&self, mode: &str) -> String {
        format!(
            "{}'{}' -D '{}' -m {mode} stop >/dev/null 2>&1",
            if self.as_root {
                "runuser -u postgres -- "
            } else {
                ""
            },
            self.bin.join("pg_ctl").display(),
            self.data().display()
        )
    }

    fn tool(&self, program: &str) -> Command {
        let mut command = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
            c
        } else {
            Command::new(self.bin.join(program))
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        let _ = self.pg_ctl_stop("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

pub(super) fn find_postgres_bin() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    if let Some(dir) = on_path {
        // The folder of the real programs (PATH may hold links to them), where the other
        // server tools (`pg_basebackup`) are too.
        return Ok(std::fs::canonicalize(dir.join("initdb"))
            .ok()
            .and_then(|initdb| initdb.parent().map(PathBuf::from))
            .unwrap_or(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "initdb is not on PATH and /usr/lib/postgresql does not exist".to_owned())?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin".to_owned())
}

/// A TCP port on 127.0.0.1 that nothing listens on (at the time of asking).
///
/// # Errors
///
/// When no port can be bound.
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("no free port: {e}"))
}

pub(super) fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}
