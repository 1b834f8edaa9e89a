//! The migrator binary (`cargo migrate`), as users and deploy scripts run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::sql::{execute, query_text};
use test_support::{PoolMode, TestBackend, TestCluster, TestDatabase, TestPgBouncer};

/// The `migration` binary (what `cargo migrate` runs), built once per test run into this test
/// binary's own target folder and profile.
pub fn migrator_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // This test binary is `<target>/<profile>/deps/integration-…`.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap();
        let target = profile_dir.parent().unwrap();
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "-q", "-p", "migration", "--bin", "migration"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", target);
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            build.arg("--release");
        }
        let output = build.output().unwrap();
        assert!(
            output.status.success(),
            "cannot build the migration binary:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        profile_dir.join(format!("migration{}", std::env::consts::EXE_SUFFIX))
    })
}

fn migrator(args: &[&str]) -> Command {
    let mut command = Command::new(migrator_binary());
    for variable in migrator::options::environment() {
        command.env_remove(&variable.name);
    }
    command
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    command
}

#[tokio::test]
async fn durations_are_read_at_start_up_and_a_bad_one_stops_it_naming_the_variable() {
    let db = TestDatabase::empty(TestBackend::Sqlite).await;
    let url = db.config().url.expose_secret();
    let bad = migrator(&["-u", &url, "up"])
        .env("MIGRATION_LOCK_WAIT", "abc")
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a usage error: {}",
        stderr(&bad)
    );
    assert!(
        stderr(&bad).contains("MIGRATION_LOCK_WAIT") && stderr(&bad).contains("500ms, 5s, 2m"),
        "{}",
        stderr(&bad)
    );
    assert_eq!(
        query_text(
            &url,
            "SELECT CAST(count(*) AS TEXT) FROM sqlite_master WHERE name = 'user'"
        )
        .await,
        "0",
        "nothing ran"
    );
    let good = migrator(&["-u", &url, "up"])
        .env("MIGRATION_LOCK_WAIT", "2m")
        .env("MIGRATION_LOCK_TIMEOUT", "90")
        .output()
        .unwrap();
    assert!(good.status.success(), "{}", stderr(&good));
}

fn run(url: &str, args: &[&str]) -> Output {
    let mut full = vec!["-u", url];
    full.extend_from_slice(args);
    migrator(&full).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    db.connection()
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

#[tokio::test]
async fn four_migrators_started_at_once_apply_each_migration_exactly_once() {
    for round in 0..10 {
        let db = TestDatabase::empty(TestBackend::Postgres).await;
        let url = db.config().url.expose_secret();

        let children: Vec<_> = (0..4)
            .map(|_| {
                migrator(&["-u", &url, "up"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<Output> = children
            .into_iter()
            .map(|child| child.wait_with_output().unwrap())
            .collect();

        for output in &outputs {
            assert!(output.status.success(), "round {round}: {}", stderr(output));
        }
        assert_eq!(count(&db, "SELECT count(*) FROM seaql_migrations").await, 3);
        assert_eq!(
            count(&db, "SELECT count(DISTINCT version) FROM seaql_migrations").await,
            3
        );
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'user_email_lower_key'"
            )
            .await,
            1
        );
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM pg_trigger WHERE tgname = 'user_set_updated_at'"
            )
            .await,
            1
        );
    }
}

#[tokio::test]
async fn destructive_commands_refuse_without_force_and_say_what_they_would_drop() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let url = db.config().url.expose_secret();

    for args in [
        &["fresh"][..],
        &["reset"][..],
        &["refresh"][..],
        &["down", "--all"][..],
    ] {
        let output = run(&url, args);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {message}");
        assert!(message.contains("refusing to run"), "{message}");
        assert!(message.contains("--force"), "{message}");
        assert!(
            message.contains("user") || message.contains("m20261127_000001_create_user_table"),
            "names what it would drop: {message}"
        );
    }
    assert_eq!(count(&db, "SELECT count(*) FROM seaql_migrations").await, 3);

    let forced = run(&url, &["reset", "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .await,
        0
    );

    // What sea-orm-cli users do: it forwards only -n and -v, so the guard is lifted by env.
    let via_env = migrator(&["-u", &url, "fresh"])
        .env("MIGRATION_FORCE", "1")
        .output()
        .unwrap();
    assert!(via_env.status.success(), "{}", stderr(&via_env));
    assert_eq!(count(&db, "SELECT count(*) FROM seaql_migrations").await, 3);
}

#[tokio::test]
async fn status_json_reports_and_gates_with_its_exit_code() {
    let db = TestDatabase::empty(TestBackend::Postgres).await;
    let url = db.config().url.expose_secret();

    let pending = run(&url, &["status", "--json"]);
    let document: serde_json::Value = serde_json::from_slice(&pending.stdout).unwrap();
    assert_eq!(pending.status.code(), Some(3));
    assert_eq!(document["pending"].as_array().unwrap().len(), 3);
    assert_eq!(document["up_to_date"], false);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'seaql_migrations'"
        )
        .await,
        0,
        "status wrote nothing"
    );

    assert!(run(&url, &["up"]).status.success());
    let current = run(&url, &["status", "--json"]);
    let document: serde_json::Value = serde_json::from_slice(&current.stdout).unwrap();
    assert_eq!(current.status.code(), Some(0));
    assert_eq!(document["applied"].as_array().unwrap().len(), 3);
    assert!(
        document["applied"][0]["applied_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    db.connection()
        .execute_unprepared(
            "INSERT INTO seaql_migrations VALUES ('m20991231_000000_from_the_future', 0)",
        )
        .await
        .unwrap();
    let unknown = run(&url, &["status", "--json"]);
    let document: serde_json::Value = serde_json::from_slice(&unknown.stdout).unwrap();
    assert_eq!(unknown.status.code(), Some(4));
    assert_eq!(
        document["unknown"][0]["version"],
        "m20991231_000000_from_the_future"
    );
    let text = run(&url, &["status"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("unknown  m20991231_000000_from_the_future")
    );
    let up = run(&url, &["up"]);
    assert_eq!(up.status.code(), Some(1));
    assert!(stderr(&up).contains("m20991231_000000_from_the_future"));
}

#[tokio::test]
async fn up_and_down_take_a_target_version() {
    let db = TestDatabase::empty(TestBackend::Postgres).await;
    let url = db.config().url.expose_secret();

    let up = run(
        &url,
        &["up", "--to", "m20261127_000002_lowercase_user_emails"],
    );
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(count(&db, "SELECT count(*) FROM seaql_migrations").await, 2);

    let down = run(
        &url,
        &["down", "--to", "m20261127_000001_create_user_table"],
    );
    assert!(down.status.success(), "{}", stderr(&down));
    assert_eq!(count(&db, "SELECT count(*) FROM seaql_migrations").await, 1);

    let bad = run(&url, &["up", "--to", "m20000101_000000_nope"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("no migration named m20000101_000000_nope"));

    let one = run(&url, &["down"]);
    assert!(one.status.success());
    assert_eq!(count(&db, "SELECT count(*) FROM seaql_migrations").await, 0);
}

#[tokio::test]
async fn connection_failures_are_one_line_naming_the_cause_without_the_password() {
    let cluster = TestCluster::start_with_password("s3cret-pw");
    let port = cluster.port();
    let unused_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cases = [
        (
            format!("postgres://postgres:wrong-s3cret@127.0.0.1:{port}/postgres"),
            "authentication failed",
        ),
        (
            format!("postgres://postgres:s3cret-pw@127.0.0.1:{port}/no_such_db"),
            "database does not exist",
        ),
        (
            format!("postgres://postgres:s3cret-pw@127.0.0.1:{unused_port}/postgres"),
            "connection refused",
        ),
        (
            "postgres://postgres:s3cret-pw@no-such-host.invalid/postgres".to_owned(),
            "unknown host",
        ),
        (
            "postgres://postgres:s3cret-pw@[::1/postgres".to_owned(),
            "invalid database URL",
        ),
    ];
    for (url, expected) in cases {
        let output = run(&url, &["status"]);
        let message = stderr(&output);
        let errors: Vec<&str> = message
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(output.status.code(), Some(1), "{url}: {message}");
        assert_eq!(errors.len(), 1, "one line: {message}");
        assert!(errors[0].contains(expected), "{url}: {message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
    let good = run(&cluster.admin_url(), &["status"]);
    assert!(good.status.success(), "{}", stderr(&good));
}

#[test]
fn the_error_line_survives_a_quiet_log_filter_and_hides_a_query_string_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app@127.0.0.1:{port}/app?password=hunter2");

    let output = migrator(&["-u", &url, "status"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();

    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(message.starts_with("error: cannot connect to"), "{message}");
    assert!(message.contains("connection refused"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn a_malformed_env_file_is_an_error_that_does_not_repeat_the_line() {
    let dir = std::env::temp_dir().join(format!("db_test_dotenv_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".env"),
        "DATABASE_URL=postgres://app:hunter2 x@db/app\n",
    )
    .unwrap();

    let output = migrator(&["status"]).current_dir(&dir).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(message.contains("cannot parse .env"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(
        !message.contains("embedded SQLite"),
        "did not fall back: {message}"
    );
}

#[test]
fn without_database_url_the_migrator_uses_the_embedded_sqlite_file_and_is_idempotent() {
    let dir = std::env::temp_dir().join(format!("db_test_cli_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let first = migrator(&["up"]).current_dir(&dir).output().unwrap();
    let second = migrator(&["up"]).current_dir(&dir).output().unwrap();
    let status = migrator(&["status"]).current_dir(&dir).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("DATABASE_URL is not set: using the embedded SQLite database"),
        "{}",
        stderr(&first)
    );
    assert!(stderr(&first).contains("data/db.sqlite"));
    assert!(stderr(&first).contains("has been applied"));
    assert!(second.status.success());
    assert!(!stderr(&second).contains("has been applied"), "no-op");
    assert_eq!(
        String::from_utf8_lossy(&status.stdout)
            .lines()
            .filter(|l| l.starts_with("applied"))
            .count(),
        3
    );
}

#[tokio::test]
async fn schema_prints_the_catalog_in_a_stable_order() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let url = db.config().url.expose_secret();

    let first = run(&url, &["schema"]);
    let second = run(&url, &["schema"]);

    assert!(first.status.success(), "{}", stderr(&first));
    let text = String::from_utf8_lossy(&first.stdout);
    for expected in [
        "table user",
        "column user.email character varying(255) NOT NULL",
        "UNIQUE INDEX user_email_lower_key",
        "CREATE TRIGGER user_set_updated_at BEFORE UPDATE",
        "function set_updated_at()",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    assert_eq!(first.stdout, second.stdout);
}

#[tokio::test]
async fn check_agrees_on_both_backends_and_leaves_no_scratch_database() {
    let server = TestDatabase::empty(TestBackend::Postgres).await;
    let pg = server.config().url.expose_secret();
    for url in [pg.to_string(), "sqlite::memory:".to_owned()] {
        let mut command = migrator(&["-u", &url, "check"]);
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{url}: {stdout}{}",
            stderr(&output)
        );
        assert!(stdout.contains("agree"), "{stdout}");
        let left = count(
            &server,
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname LIKE 'migration_shadow_{pid}_%'"
            ),
        )
        .await;
        assert_eq!(left, 0, "the scratch databases of `check` are dropped");
    }
}

#[tokio::test]
async fn a_migration_whose_recorded_checksum_differs_is_named_by_status_and_stops_up() {
    let db = TestDatabase::empty(TestBackend::Postgres).await;
    let url = db.config().url.expose_secret();
    let first = run(&url, &["up", "-n", "2"]);
    assert!(first.status.success(), "{}", stderr(&first));
    // As if the source of the first migration had been edited after it was applied.
    db.connection()
        .execute_unprepared(
            "UPDATE seaql_migrations_checksum SET checksum = 'edited' \
             WHERE version = 'm20261127_000001_create_user_table'",
        )
        .await
        .unwrap();

    let status = run(&url, &["status"]);
    let listing = String::from_utf8_lossy(&status.stdout);
    assert!(
        listing.contains("changed  m20261127_000001_create_user_table"),
        "{listing}"
    );
    let json = run(&url, &["status", "--json"]);
    assert_eq!(json.status.code(), Some(6), "{}", stderr(&json));

    let refused = run(&url, &["up"]);
    let message = stderr(&refused);
    assert_eq!(refused.status.code(), Some(1), "{message}");
    assert!(
        message.contains("m20261127_000001_create_user_table")
            && message.contains("--allow-changed"),
        "{message}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM seaql_migrations").await,
        2,
        "nothing ran"
    );

    let allowed = migrator(&["-u", &url, "up"])
        .env("MIGRATION_ALLOW_CHANGED", "1")
        .output()
        .unwrap();
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert_eq!(count(&db, "SELECT count(*) FROM seaql_migrations").await, 3);
}

#[tokio::test]
async fn a_database_migrated_before_checksums_keeps_working_and_gets_them_on_the_next_up() {
    let db = TestDatabase::empty(TestBackend::Postgres).await;
    let url = db.config().url.expose_secret();
    assert!(run(&url, &["up", "-n", "1"]).status.success());
    db.connection()
        .execute_unprepared("DROP TABLE seaql_migrations_checksum")
        .await
        .unwrap();
    let status = run(&url, &["status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(!String::from_utf8_lossy(&status.stdout).contains("changed"));
    let up = run(&url, &["up"]);
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(
        count(&db, "SELECT count(*) FROM seaql_migrations_checksum").await,
        3,
        "the applied migration got its baseline and the new ones theirs"
    );
}

#[tokio::test]
async fn a_database_that_applied_the_single_transaction_bodies_is_not_changed_and_gets_the_new_checksums()
 {
    let db = TestDatabase::empty(TestBackend::Postgres).await;
    let url = db.config().url.expose_secret();
    assert!(run(&url, &["up"]).status.success());
    // As the releases before the online migrations recorded them.
    use migrator::MigrationSources as _;
    let checksums = migrator::checksum::Checksums::of::<migration::Migrator>();
    for migrator::Superseded {
        version,
        checksum: old,
        ..
    } in migration::Migrator::superseded()
    {
        db.connection()
            .execute_unprepared(&format!(
                "UPDATE seaql_migrations_checksum SET checksum = '{old}' WHERE version = '{version}'"
            ))
            .await
            .unwrap();
        let status = run(&url, &["status", "--json"]);
        assert_eq!(
            status.status.code(),
            Some(0),
            "{version} with its old body is up to date: {}",
            String::from_utf8_lossy(&status.stdout)
        );
        let up = run(&url, &["up"]);
        assert!(up.status.success(), "{}", stderr(&up));
        let recorded: String = db
            .connection()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT checksum FROM seaql_migrations_checksum WHERE version = '{version}'"
                ),
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        assert_eq!(
            Some(recorded.as_str()),
            checksums.current(version),
            "up records the current body of {version}"
        );
    }
    assert_eq!(count(&db, "SELECT count(*) FROM seaql_migrations").await, 3);
}

#[tokio::test]
async fn behind_a_transaction_pooler_the_migrator_uses_the_direct_url() {
    let cluster = cluster_with_app().await;
    let bouncer = TestPgBouncer::start(cluster.port(), PoolMode::Transaction, 2);

    let refused = migrator(&["up"])
        .env("DATABASE_URL", bouncer.url("app"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(message.contains("transaction mode"), "{message}");
    assert!(message.contains("DATABASE_DIRECT_URL"), "{message}");

    let applied = migrator(&["up"])
        .env("DATABASE_URL", bouncer.url("app"))
        .env("DATABASE_DIRECT_URL", cluster.url("app"))
        .output()
        .unwrap();
    assert!(applied.status.success(), "{}", stderr(&applied));
    assert_all_applied(&cluster.url("app")).await;
}

/// Applies `script` to the database at `url` as a DBA would: `psql -v ON_ERROR_STOP=1` on
/// PostgreSQL, `sqlite3 -bail` on a SQLite file; fails saying how to install the tool when it is
/// missing.
pub(crate) fn apply_script(url: &str, script: &[u8]) {
    let (tool, args): (&str, Vec<&str>) = match url.strip_prefix("sqlite://") {
        Some(rest) => ("sqlite3", vec!["-bail", rest.split('?').next().unwrap()]),
        None => (
            "psql",
            vec!["-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"],
        ),
    };
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {tool} ({e}): install it (Debian: apt-get install postgresql-client sqlite3)")
        });
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{tool}: {}", stderr(&output));
}

#[tokio::test]
async fn offline_sql_applied_by_psql_and_sqlite3_gives_the_schema_of_up_and_changes_nothing() {
    let offline = TestDatabase::empty(TestBackend::Postgres).await;
    let online = TestDatabase::empty(TestBackend::Postgres).await;
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("offline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = |name: &str| format!("sqlite://{}?mode=rwc", dir.join(name).display());
    let (sqlite_offline, sqlite_online) = (sqlite("offline.db"), sqlite("online.db"));
    let pg_offline = offline.config().url.expose_secret().to_string();
    let pg_online = online.config().url.expose_secret().to_string();

    for (offline_url, online_url) in [(&pg_offline, &pg_online), (&sqlite_offline, &sqlite_online)]
    {
        let script = run(offline_url, &["up", "--sql"]);
        assert!(script.status.success(), "{}", stderr(&script));
        let status = run(offline_url, &["status", "--json"]);
        assert_eq!(status.status.code(), Some(3), "up --sql applied nothing");
        apply_script(offline_url, &script.stdout);
        assert!(run(online_url, &["up"]).status.success());
        let schema = |url: &str| String::from_utf8(run(url, &["schema"]).stdout).unwrap();
        assert_eq!(schema(offline_url), schema(online_url), "{offline_url}");
        assert_eq!(
            run(offline_url, &["status", "--json"]).status.code(),
            Some(0)
        );

        // And back: `down --sql -n 1` undoes the last one like `down`.
        let script = run(offline_url, &["down", "--sql", "-n", "1"]);
        assert!(script.status.success(), "{}", stderr(&script));
        let text = String::from_utf8_lossy(&script.stdout);
        assert!(text.contains("user_email_lower_key"), "{text}");
        apply_script(offline_url, &script.stdout);
        assert!(run(online_url, &["down"]).status.success());
        assert_eq!(
            schema(offline_url),
            schema(online_url),
            "{offline_url} after down"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The script's data migration acts on the rows the database has, as `up` does, although
/// offline mode ran it on an empty scratch database.
#[tokio::test]
async fn offline_sql_lower_cases_the_rows_already_there() {
    let pg = TestDatabase::empty(TestBackend::Postgres).await;
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("offline-rows-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("offline.db");
    let sqlite = format!("sqlite://{}?mode=rwc", file.display());
    for url in [pg.config().url.expose_secret().to_string(), sqlite] {
        assert!(run(&url, &["up", "-n", "1"]).status.success());
        execute(
            &url,
            "INSERT INTO \"user\" (email, name) VALUES ('Ada@Example.COM', 'Ada')",
        )
        .await;
        let script = run(&url, &["up", "--sql"]);
        assert!(script.status.success(), "{}", stderr(&script));
        apply_script(&url, &script.stdout);
        assert_eq!(
            query_text(&url, "SELECT email FROM \"user\"").await,
            "ada@example.com",
            "{url}"
        );
        assert_eq!(run(&url, &["status", "--json"]).status.code(), Some(0));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `user` with `rows` upper-case emails `User<id>@Example.COM`, the first migration applied.
async fn seeded(rows: u32) -> TestDatabase {
    let db = TestDatabase::empty(TestBackend::Postgres).await;
    let url = db.config().url.expose_secret();
    let first = run(&url, &["up", "--to", "m20261127_000001_create_user_table"]);
    assert!(first.status.success(), "{}", stderr(&first));
    db.connection()
        .execute_unprepared(&format!(
            "INSERT INTO \"user\" (email, name) \
             SELECT 'User' || g || '@Example.COM', 'u' || g FROM generate_series(1, {rows}) g"
        ))
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn a_migrator_killed_mid_way_is_finished_by_the_next_up_changing_each_email_once() {
    let rows = 200_000;
    let db = seeded(rows).await;
    let url = db.config().url.expose_secret();
    // Small batches with a pause, so the walk is still running when it is killed.
    let mut child = migrator(&["-u", &url, "up"])
        .env("MIGRATION_BATCH_SIZE", "2000")
        .env("MIGRATION_BATCH_PAUSE", "20ms")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lowered = "SELECT count(*) FROM \"user\" WHERE email = lower(email)";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count(&db, lowered).await < 20_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the walk never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let part = count(&db, lowered).await;
    assert!(
        part < i64::from(rows),
        "killed mid-way ({part} of {rows} done)"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM seaql_migrations").await,
        1,
        "the interrupted migration is not recorded"
    );

    let again = run(&url, &["up"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(count(&db, "SELECT count(*) FROM seaql_migrations").await, 3);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM \"user\" WHERE email <> 'user' || id || '@example.com'"
        )
        .await,
        0,
        "every email lower-cased, each exactly its own"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM \"user\"").await,
        i64::from(rows)
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = 'user_email_lower_key' AND i.indisvalid"
        )
        .await,
        1,
        "a valid index"
    );
}

#[tokio::test]
async fn an_invalid_index_left_by_an_interrupted_build_is_built_again() {
    let db = seeded(100).await;
    let url = db.config().url.expose_secret();
    assert!(run(&url, &["up", "-n", "1"]).status.success());
    // A concurrent build that failed (here: a duplicate) leaves an INVALID index behind.
    let conn = db.connection();
    conn.execute_unprepared(
        "INSERT INTO \"user\" (email, name) VALUES ('user1@EXAMPLE.com', 'dup')",
    )
    .await
    .unwrap();
    let failed = conn
        .execute_unprepared(
            "CREATE UNIQUE INDEX CONCURRENTLY user_email_lower_key ON \"user\" (lower(email))",
        )
        .await;
    assert!(failed.is_err());
    let invalid = "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                   WHERE c.relname = 'user_email_lower_key' AND NOT i.indisvalid";
    assert_eq!(count(&db, invalid).await, 1);
    conn.execute_unprepared("DELETE FROM \"user\" WHERE name = 'dup'")
        .await
        .unwrap();

    let up = run(&url, &["up"]);
    assert!(up.status.success(), "{}", stderr(&up));
    assert!(
        stderr(&up).contains("INVALID"),
        "says what it found: {}",
        stderr(&up)
    );
    assert_eq!(count(&db, invalid).await, 0);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'user_email_lower_key'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_ddl_migration_blocked_by_a_long_transaction_gives_up_naming_it_while_the_application_goes_on()
 {
    let db = seeded(1000).await;
    let url = db.config().url.expose_secret();
    assert!(run(&url, &["up", "-n", "1"]).status.success());
    // A long transaction that wrote to `user` and sits idle, holding its lock.
    let holder = sea_orm::Database::connect(url.as_str()).await.unwrap();
    let holder_tx = sea_orm::TransactionTrait::begin(&holder).await.unwrap();
    holder_tx
        .execute_unprepared("UPDATE \"user\" SET name = 'held' WHERE id = 1")
        .await
        .unwrap();
    let holder_pid: i32 = holder_tx
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_backend_pid()",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();

    let child = migrator(&["-u", &url, "up"])
        .env("MIGRATION_LOCK_WAIT", "300ms")
        .env("MIGRATION_LOCK_RETRIES", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Meanwhile the application reads and writes other rows, each promptly.
    let app = db.connection();
    let started = std::time::Instant::now();
    let mut slowest = std::time::Duration::ZERO;
    let mut writes = 0;
    while started.elapsed() < std::time::Duration::from_secs(2) {
        let t = std::time::Instant::now();
        let id = 2 + writes % 900;
        service::user::update(
            app,
            id,
            service::user::UserChanges {
                name: Some(format!("w{writes}")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        service::user::get(app, id).await.unwrap();
        slowest = slowest.max(t.elapsed());
        writes += 1;
    }
    let output = child.wait_with_output().unwrap();
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(
        message.contains(&format!("pid {holder_pid}")) && message.contains("3 times"),
        "names the blocking session: {message}"
    );
    assert!(!message.contains("UPDATE"), "no query text: {message}");
    assert!(writes > 10, "the application kept writing ({writes})");
    assert!(
        slowest < std::time::Duration::from_secs(1),
        "no application query waited behind the migration ({slowest:?})"
    );
    holder_tx.rollback().await.unwrap();
    let after = run(&url, &["up"]);
    assert!(
        after.status.success(),
        "runs once the transaction is gone: {}",
        stderr(&after)
    );
}

#[tokio::test]
async fn through_a_session_pooler_the_migrator_works_under_its_lock() {
    let cluster = cluster_with_app().await;
    let bouncer = TestPgBouncer::start(cluster.port(), PoolMode::Session, 4);

    for args in [&["up"][..], &["status"], &["down"], &["up"]] {
        let output = migrator(args)
            .env("DATABASE_URL", bouncer.url("app"))
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    }
    assert_all_applied(&cluster.url("app")).await;
}

/// A private cluster with an empty database `app`.
async fn cluster_with_app() -> TestCluster {
    let cluster = TestCluster::start();
    let admin = sea_orm::Database::connect(cluster.admin_url())
        .await
        .unwrap();
    admin
        .execute_unprepared("CREATE DATABASE app")
        .await
        .unwrap();
    admin.close().await.unwrap();
    cluster
}

/// Asserts that every migration of this build is recorded in the database at `url`.
async fn assert_all_applied(url: &str) {
    let direct = sea_orm::Database::connect(url).await.unwrap();
    let applied: i64 = direct
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    let known = <migration::Migrator as migration::MigratorTrait>::migrations().len();
    assert_eq!(applied, i64::try_from(known).unwrap());
}
