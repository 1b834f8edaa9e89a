//! The PostgreSQL side of test support: finding a server, the migrated template, creating and
//! dropping per-test databases, sweeping leftovers.

use std::sync::OnceLock;
use std::time::Duration;

use connection::database_url::redact;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use super::cluster::TestCluster;
use super::{LEFTOVER_MAX_AGE_SECS, block_on_own_runtime, unix_now};

/// Per-test databases are named `db_test_<unix seconds>_<pid>_<n>`.
pub(super) const TEST_DB_PREFIX: &str = "db_test_";
/// The template databases: `db_tmpl_<fingerprint of the migration sources>`.
const TEMPLATE_PREFIX: &str = "db_tmpl_";
/// Serialises template creation between concurrent test binaries (any constant works; this is
/// "db_tmpl" in ASCII).
const TEMPLATE_LOCK_KEY: i64 = 0x0064_625f_746d_706c;
/// Where a local server is looked for when `TEST_DATABASE_URL` is unset.
const LOCAL_ADMIN_URL: &str = "postgres://postgres@localhost:5432/postgres";

/// Creates database `name` (migrated: copied from the template) and returns its URL.
pub(super) async fn create_database(name: &str, migrated: bool) -> String {
    let admin = admin_url();
    let source = if migrated {
        template().to_owned()
    } else {
        "template0".to_owned()
    };
    let sql = format!(r#"CREATE DATABASE "{name}" TEMPLATE "{source}""#);
    let db = connect_admin(admin)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the test server: {err}"));
    db.execute_unprepared(&sql)
        .await
        .unwrap_or_else(|err| panic!("cannot create test database {name}: {err}"));
    if migrated {
        // Templates are swept when unused for an hour, not when old: another checkout (with
        // other migrations) may still be using its own.
        let _ = db.execute_unprepared(&last_used_comment(&source)).await;
    }
    let _ = db.close().await;
    database_url(admin, name)
}

/// Drops database `name`, disconnecting whoever is still connected. Called from `Drop`, so it
/// reports failures instead of panicking.
pub(super) fn drop_database(name: &str) {
    let Some(Ok(admin)) = ADMIN_URL.get() else {
        return;
    };
    let sql = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
    let outcome = block_on_own_runtime(async {
        let db = connect_admin(admin).await.map_err(|e| e.to_string())?;
        let result = db
            .execute_unprepared(&sql)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        let _ = db.close().await;
        result
    });
    if let Err(err) = outcome {
        eprintln!("could not drop test database {name}: {err}");
    }
}

static ADMIN_URL: OnceLock<Result<String, String>> = OnceLock::new();
static TEMPLATE: OnceLock<Result<String, String>> = OnceLock::new();

/// The admin URL of the test server, found once per test binary.
fn admin_url() -> &'static str {
    match ADMIN_URL.get_or_init(|| block_on_own_runtime(find_server())) {
        Ok(url) => url,
        Err(message) => panic!("{message}"),
    }
}

/// The migrated template's name, built once per version of the migrations (shared by test
/// binaries and runs; its creation is serialised with an advisory lock).
fn template() -> &'static str {
    let admin = admin_url();
    match TEMPLATE.get_or_init(|| block_on_own_runtime(prepare_template(admin))) {
        Ok(name) => name,
        Err(message) => panic!("{message}"),
    }
}

async fn find_server() -> Result<String, String> {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        return match connect_admin(&url).await {
            Ok(db) => {
                let _ = db.close().await;
                Ok(url)
            }
            Err(err) => Err(format!(
                "TEST_DATABASE_URL={} does not answer ({err}). Start that server, or unset \
                 TEST_DATABASE_URL to use a server on localhost:5432 or a private cluster.",
                redact(&url)
            )),
        };
    }
    let local_error = match connect_admin(LOCAL_ADMIN_URL).await {
        Ok(db) => {
            let _ = db.close().await;
            return Ok(LOCAL_ADMIN_URL.to_owned());
        }
        Err(err) => err.to_string(),
    };
    match TestCluster::try_start(None) {
        Ok(cluster) => {
            let url = cluster.admin_url();
            eprintln!("tests: started a private PostgreSQL cluster at {url}");
            // Shared by the whole test binary: a watchdog removes it when the binary exits.
            cluster.remove_when_process_exits()?;
            Ok(url)
        }
        Err(cluster_error) => Err(format!(
            "no PostgreSQL server for the tests. Provide one of:\n\
             \x20 1. TEST_DATABASE_URL=postgres://user:password@host:port/postgres (a user that may create databases);\n\
             \x20 2. a server on localhost:5432 accepting user postgres without a password \
                     (e.g. `docker compose up -d` / `podman compose up -d` is not enough: it needs a password, use 1.) — \
                     tried: {local_error};\n\
             \x20 3. a local PostgreSQL installation (initdb and pg_ctl on PATH or under /usr/lib/postgresql/*/bin), \
                     from which a private cluster is started — tried: {cluster_error}"
        )),
    }
}

async fn prepare_template(admin: &str) -> Result<String, String> {
    let name = format!("{TEMPLATE_PREFIX}{}", migration::SOURCE_FINGERPRINT);
    let db = connect_admin(admin)
        .await
        .map_err(|err| format!("cannot connect to the test server: {err}"))?;
    let outcome = build_template_locked(&db, admin, &name).await;
    let _ = db.close().await;
    outcome.map(|()| name)
}

async fn build_template_locked(
    db: &DatabaseConnection,
    admin: &str,
    name: &str,
) -> Result<(), String> {
    let fail = |what: &str| {
        let what = what.to_owned();
        move |err: sea_orm::DbErr| format!("test template {name}: cannot {what}: {err}")
    };
    // The admin pool has a single connection, so the session-level lock and everything after
    // it run on the same session.
    exec(db, &format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))
        .await
        .map_err(fail("take the template lock"))?;
    let result = async {
        sweep_leftovers(db, name)
            .await
            .map_err(fail("sweep old test databases"))?;
        let existing = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT datistemplate FROM pg_database WHERE datname = $1",
                [name.into()],
            ))
            .await
            .map_err(fail("look for the template"))?;
        match existing.map(|row| row.try_get_by_index::<bool>(0)) {
            Some(Ok(true)) => return Ok(()),
            // Half-built by a run that crashed: start over.
            Some(_) => exec(db, &format!(r#"DROP DATABASE "{name}" WITH (FORCE)"#))
                .await
                .map_err(fail("drop a half-built template"))?,
            None => {}
        }
        exec(
            db,
            &format!(r#"CREATE DATABASE "{name}" TEMPLATE template0"#),
        )
        .await
        .map_err(fail("create the template"))?;
        let template_db = connect_admin(&database_url(admin, name))
            .await
            .map_err(|err| format!("test template {name}: cannot connect: {err}"))?;
        let migrated = Migrator::up(&template_db, None).await;
        // Nothing may stay connected to a template, or copying it fails.
        let _ = template_db.close().await;
        migrated.map_err(fail("apply the migrations"))?;
        exec(
            db,
            &format!(r#"ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"#),
        )
        .await
        .map_err(fail("mark the template"))?;
        exec(db, &last_used_comment(name))
            .await
            .map_err(fail("date the template"))
    }
    .await;
    let _ = exec(
        db,
        &format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"),
    )
    .await;
    result
}

fn last_used_comment(template: &str) -> String {
    format!(
        r#"COMMENT ON DATABASE "{template}" IS 'last used {}'"#,
        unix_now()
    )
}

/// Drops per-test databases older than an hour, and templates (other than `current`) unused
/// for an hour.
async fn sweep_leftovers(db: &DatabaseConnection, current: &str) -> Result<(), sea_orm::DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT d.datname, d.datistemplate, shobj_description(d.oid, 'pg_database') \
                 FROM pg_database d \
                 WHERE d.datname LIKE '{TEST_DB_PREFIX}%' OR d.datname LIKE '{TEMPLATE_PREFIX}%'"
            ),
        ))
        .await?;
    let now = unix_now();
    for row in rows {
        let name: String = row.try_get_by_index(0)?;
        let is_template: bool = row.try_get_by_index(1)?;
        let comment: Option<String> = row.try_get_by_index(2)?;
        if name == current {
            continue;
        }
        let created = if let Some(rest) = name.strip_prefix(TEST_DB_PREFIX) {
            rest.split('_')
                .next()
                .and_then(|secs| secs.parse::<u64>().ok())
        } else {
            comment
                .as_deref()
                .and_then(|c| c.strip_prefix("last used "))
                .and_then(|secs| secs.parse::<u64>().ok())
        };
        if created.is_some_and(|created| now.saturating_sub(created) > LEFTOVER_MAX_AGE_SECS) {
            if is_template {
                exec(
                    db,
                    &format!(r#"ALTER DATABASE "{name}" WITH IS_TEMPLATE false"#),
                )
                .await?;
            }
            exec(
                db,
                &format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#),
            )
            .await?;
        }
    }
    Ok(())
}

async fn exec(db: &DatabaseConnection, sql: &str) -> Result<(), sea_orm::DbErr> {
    db.execute_unprepared(sql).await.map(|_| ())
}

async fn connect_admin(url: &str) -> Result<DatabaseConnection, connection::connect::ConnectError> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(1)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    connection::connect::connect(options).await
}

/// `admin` with its database replaced by `name`.
fn database_url(admin: &str, name: &str) -> String {
    match url::Url::parse(admin) {
        Ok(mut url) => {
            url.set_path(&format!("/{name}"));
            url.to_string()
        }
        Err(_) => panic!("TEST_DATABASE_URL is not a URL: {}", redact(admin)),
    }
}
