//! [`AdminSession`]: a superuser session on a test server, to do to a test's own database or
//! role what a DBA does during maintenance or a failover.

use std::time::{Duration, Instant};

use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use super::TestDatabase;

/// Databases of the shared server that no test may refuse, rename or make read-only.
const SHARED: &[&str] = &["postgres", "test", "template0", "template1"];

/// A session on the test server's `postgres` database, as the test user (a superuser), for
/// tests of how a running service copes with what the server refuses: connections disallowed,
/// sessions terminated, a database renamed or made read-only, a role's connection limit.
///
/// Use it on a [`TestDatabase`] (a database of the test's own) or on a
/// [`TestCluster`](super::TestCluster) (for roles and anything server-wide). It refuses to touch
/// the shared server's own databases. Every method panics when the statement fails: these are
/// test steps.
///
/// ```no_run
/// # async fn example() {
/// use test_support::{AdminSession, TestBackend, TestDatabase};
///
/// let db = TestDatabase::new(TestBackend::Postgres).await;
/// let admin = AdminSession::for_database(&db).await;
/// admin.allow_connections(&db.name(), false).await;
/// admin.terminate_sessions(&db.name()).await;
/// // … the service answers Unavailable …
/// admin.allow_connections(&db.name(), true).await;
/// # }
/// ```
#[derive(Debug)]
pub struct AdminSession {
    conn: DatabaseConnection,
}

impl AdminSession {
    /// A session on the server of `db`.
    ///
    /// # Panics
    ///
    /// When `db` is not on PostgreSQL or the server does not answer.
    pub async fn for_database(db: &TestDatabase) -> Self {
        let mut url =
            url::Url::parse(&db.config().url.expose_secret()).expect("a PostgreSQL test database");
        assert!(
            url.scheme().starts_with("postgres"),
            "an admin session needs PostgreSQL"
        );
        url.set_path("/postgres");
        Self::connect(url.as_str()).await
    }

    /// A session at `url` (a superuser; e.g. [`TestCluster::admin_url`](super::TestCluster::admin_url)).
    ///
    /// # Panics
    ///
    /// When the server does not answer.
    pub async fn connect(url: &str) -> Self {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(1)
            .connect_timeout(Duration::from_secs(5))
            .sqlx_logging(false);
        let conn = connection::connect::connect(options)
            .await
            .unwrap_or_else(|err| panic!("admin session: {err}"));
        Self { conn }
    }

    /// Runs `sql` (one or more statements, no parameters).
    ///
    /// # Panics
    ///
    /// When it fails.
    pub async fn execute(&self, sql: &str) {
        self.conn
            .execute_unprepared(sql)
            .await
            .unwrap_or_else(|err| panic!("admin session: {sql}: {err}"));
    }

    /// The single integer `sql` returns.
    ///
    /// # Panics
    ///
    /// When the query fails or returns no integer.
    pub async fn count(&self, sql: &str) -> i64 {
        self.conn
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await
            .unwrap_or_else(|err| panic!("admin session: {sql}: {err}"))
            .and_then(|row| row.try_get_by_index(0).ok())
            .unwrap_or_else(|| panic!("admin session: {sql}: no integer"))
    }

    /// Terminates every session connected to `database` (`pg_terminate_backend`) and waits
    /// until they are gone; returns how many there were.
    ///
    /// # Panics
    ///
    /// For a shared database, or when the statement fails.
    pub async fn terminate_sessions(&self, database: &str) -> i64 {
        self.count(&format!(
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity \
             WHERE datname = {} AND pid <> pg_backend_pid()",
            literal(own(database))
        ))
        .await
    }

    /// `ALTER DATABASE … ALLOW_CONNECTIONS true|false`: whether new sessions are accepted
    /// (sessions already open stay; [`terminate_sessions`](Self::terminate_sessions) ends them).
    ///
    /// # Panics
    ///
    /// For a shared database, or when the statement fails.
    pub async fn allow_connections(&self, database: &str, allow: bool) {
        self.execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
            identifier(own(database))
        ))
        .await;
    }

    /// Sets or resets `default_transaction_read_only` on `database`: sessions opened from now
    /// on refuse writes with `25006` (sessions already open keep what they started with).
    ///
    /// # Panics
    ///
    /// For a shared database, or when the statement fails.
    pub async fn set_read_only(&self, database: &str, read_only: bool) {
        let database = identifier(own(database));
        self.execute(&if read_only {
            format!("ALTER DATABASE {database} SET default_transaction_read_only = on")
        } else {
            format!("ALTER DATABASE {database} RESET default_transaction_read_only")
        })
        .await;
    }

    /// Renames database `from` to `to`, terminating its sessions first (a database in use
    /// cannot be renamed; a pool that reconnects in between is terminated again, for up to
    /// 10 s).
    ///
    /// # Panics
    ///
    /// For a shared database, or when the rename still fails after 10 s.
    pub async fn rename_database(&self, from: &str, to: &str) {
        let sql = format!(
            "ALTER DATABASE {} RENAME TO {}",
            identifier(own(from)),
            identifier(own(to))
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.terminate_sessions(from).await;
            match self.conn.execute_unprepared(&sql).await {
                Ok(_) => return,
                // "database … is being accessed by other users": a session came back.
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => panic!("admin session: {sql}: {err}"),
            }
        }
    }

    /// `ALTER ROLE … CONNECTION LIMIT n` (`None`: no limit). New sessions of the role beyond
    /// the limit are refused with `53300`.
    ///
    /// # Panics
    ///
    /// When the statement fails.
    pub async fn set_connection_limit(&self, role: &str, limit: Option<u32>) {
        let limit = limit.map_or(-1, i64::from);
        self.execute(&format!(
            "ALTER ROLE {} CONNECTION LIMIT {limit}",
            identifier(role)
        ))
        .await;
    }

    /// Waits (at most 10 s) until role `role` has at most `at_most` sessions: closed sessions
    /// count against a `CONNECTION LIMIT` until their server process has exited.
    ///
    /// # Panics
    ///
    /// When there are still more after 10 s.
    pub async fn wait_for_sessions_of(&self, role: &str, at_most: i64) {
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = {}",
            literal(role)
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sessions = self.count(&sql).await;
            if sessions <= at_most {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "role {role} still has {sessions} sessions"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The session, for statements of the test's own.
    #[must_use]
    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }
}

/// `database`, after checking it is not one of the shared server's own.
fn own(database: &str) -> &str {
    assert!(
        !SHARED.contains(&database),
        "refusing to change the shared database {database:?}: use a TestDatabase or a TestCluster"
    );
    database
}

/// `name` as a quoted SQL identifier.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a quoted SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "refusing to change the shared database \"test\"")]
    fn the_shared_databases_are_refused() {
        own("test");
    }

    #[test]
    fn names_are_quoted() {
        assert_eq!(own("db_test_1"), "db_test_1");
        assert_eq!(identifier(r#"a"b"#), r#""a""b""#);
        assert_eq!(literal("it's"), "'it''s'");
    }
}
