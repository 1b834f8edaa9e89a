//! [`TestPgBouncer`]: a PgBouncer of a test's own, in front of a test cluster.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::{free_port, is_root, run};

/// How PgBouncer hands out server connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client connection, for as long as the client stays
    /// (`pool_mode = session`).
    Session,
    /// A server connection per transaction: clients share server sessions
    /// (`pool_mode = transaction`).
    Transaction,
}

/// A PgBouncer on a free loopback port in front of the PostgreSQL server at `127.0.0.1:<port>`
/// (a [`TestCluster`](super::TestCluster)), every database passed through, user `postgres`
/// without a password, and `default_pool_size` server connections per database. The
/// configuration is the one the README documents, with nothing in `ignore_startup_parameters`.
/// Dropping the handle stops it and removes its folder.
pub struct TestPgBouncer {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl TestPgBouncer {
    /// Starts PgBouncer in `mode` with `pool_size` server connections per database.
    ///
    /// # Panics
    ///
    /// When `pgbouncer` is not installed (Debian: `apt-get install pgbouncer`) or does not
    /// start.
    #[must_use]
    pub fn start(server_port: u16, mode: PoolMode, pool_size: u32) -> Self {
        Self::try_start(server_port, mode, pool_size)
            .unwrap_or_else(|err| panic!("cannot start a test PgBouncer: {err}"))
    }

    fn try_start(server_port: u16, mode: PoolMode, pool_size: u32) -> Result<Self, String> {
        let program = find_pgbouncer().ok_or(
            "pgbouncer is not installed (on PATH or in /usr/sbin); install it, e.g. \
             `apt-get install pgbouncer`",
        )?;
        let dir =
            std::env::temp_dir().join(format!("db_test_pgbouncer_{}", super::unique_suffix()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let port = free_port()?;
        let as_root = is_root();
        let mode = match mode {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        };
        // PgBouncer refuses to run as root; `user` makes it switch after start-up.
        let user = if as_root { "user = postgres\n" } else { "" };
        let ini = format!(
            "[databases]\n\
             * = host=127.0.0.1 port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             admin_users = postgres\n\
             pool_mode = {mode}\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 200\n\
             logfile = {dir}/pgbouncer.log\n\
             {user}",
            dir = dir.display()
        );
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).map_err(|e| format!("cannot write {name}: {e}"))
        };
        write("pgbouncer.ini", &ini)?;
        write("userlist.txt", "\"postgres\" \"\"\n")?;
        if as_root {
            run(
                Command::new("chown").args(["-R", "postgres"]).arg(&dir),
                "chown the PgBouncer folder",
            )?;
        }
        let child = Command::new(program)
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run pgbouncer: {e}"))?;
        let mut bouncer = Self { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                return Err(format!("pgbouncer exited ({status}): {}", bouncer.log()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pgbouncer did not listen within 10 s: {}",
                    bouncer.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(bouncer)
    }

    /// The port PgBouncer listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` through PgBouncer.
    #[must_use]
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// PgBouncer's log so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl std::fmt::Debug for TestPgBouncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPgBouncer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Drop for TestPgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find_pgbouncer() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|path| path.is_file())
}
