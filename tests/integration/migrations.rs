//! The migrations themselves: round trips, the lowercase data migration, the case-insensitive
//! unique index and the `updated_at` trigger, written in SQL as another client would.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};

use crate::on_both_backends;
use crate::sql::table_exists;
use test_support::scalar as count;
use test_support::{TestBackend, TestDatabase};

on_both_backends!(
    up_down_up_round_trip,
    down_without_a_count_undoes_exactly_one,
    lowercase_migration_lowers_existing_emails,
    lowercase_migration_refuses_collisions_and_changes_nothing,
    lower_email_index_rejects_a_case_variant,
    updated_at_trigger_moves_on_raw_update,
);

const MIGRATIONS: usize = 3;

async fn up_down_up_round_trip(backend: TestBackend) {
    let db = TestDatabase::empty(backend).await;
    let conn = db.connection();

    Migrator::up(conn, None).await.unwrap();
    let status = migrator::status::<Migrator, _>(conn).await.unwrap();
    assert_eq!(status.applied.len(), MIGRATIONS);
    assert!(status.is_up_to_date());
    assert!(table_exists(conn, "user").await);

    Migrator::down(conn, Some(100)).await.unwrap();
    let status = migrator::status::<Migrator, _>(conn).await.unwrap();
    assert!(status.applied.is_empty());
    assert_eq!(status.pending.len(), MIGRATIONS);
    assert!(!table_exists(conn, "user").await);
    if backend == TestBackend::Postgres {
        // The shared trigger function goes with the last table that used it.
        assert_eq!(
            count(
                conn,
                "SELECT count(*) FROM pg_proc WHERE proname = 'set_updated_at'"
            )
            .await,
            0
        );
    }

    Migrator::up(conn, None).await.unwrap();
    assert!(
        migrator::status::<Migrator, _>(conn)
            .await
            .unwrap()
            .is_up_to_date()
    );
    insert(conn, "Round@Trip.io", "again").await.unwrap();
}

async fn down_without_a_count_undoes_exactly_one(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let conn = db.connection();

    // What `migrate down` does without `-n`.
    Migrator::down(conn, Some(1)).await.unwrap();

    let status = migrator::status::<Migrator, _>(conn).await.unwrap();
    assert_eq!(status.applied.len(), MIGRATIONS - 1);
    assert_eq!(
        status.pending,
        vec!["m20261127_000003_create_user_email_lower_index".to_owned()]
    );
    // The index is gone: two emails differing only in case are accepted again.
    insert(conn, "Twice@x.io", "a").await.unwrap();
    insert(conn, "twice@x.io", "b").await.unwrap();
}

async fn lowercase_migration_lowers_existing_emails(backend: TestBackend) {
    let db = TestDatabase::empty(backend).await;
    let conn = db.connection();
    Migrator::up(conn, Some(1)).await.unwrap();
    insert(conn, "Ada@Example.COM", "Ada").await.unwrap();
    insert(conn, "bob@example.com", "Bob").await.unwrap();
    insert(conn, "ÉLODIE@Exemple.FR", "Élodie").await.unwrap();

    Migrator::up(conn, Some(1)).await.unwrap();

    // SQLite's lower() folds ASCII letters only (without the ICU extension).
    let elodie = match backend {
        TestBackend::Postgres => "élodie@exemple.fr",
        TestBackend::Sqlite => "Élodie@exemple.fr",
    };
    let mut expected = vec!["ada@example.com", "bob@example.com", elodie];
    expected.sort_unstable();
    assert_eq!(emails(conn).await, expected);
    // Idempotent: applying the same work again changes nothing.
    assert_eq!(migration::data::lowercase_emails(conn).await.unwrap(), 0);
    Migrator::up(conn, None).await.unwrap();
    assert!(
        migrator::status::<Migrator, _>(conn)
            .await
            .unwrap()
            .is_up_to_date()
    );
}

async fn lowercase_migration_refuses_collisions_and_changes_nothing(backend: TestBackend) {
    let db = TestDatabase::empty(backend).await;
    let conn = db.connection();
    Migrator::up(conn, Some(1)).await.unwrap();
    for (email, name) in [
        ("Ada@x.io", "a"),
        ("ada@X.io", "b"),
        ("Zed@x.io", "z"),
        ("ZED@x.io", "z2"),
        ("Unique@x.io", "u"),
    ] {
        insert(conn, email, name).await.unwrap();
    }
    let before = emails(conn).await;

    let err = Migrator::up(conn, None).await.unwrap_err().to_string();

    for address in ["Ada@x.io", "ada@X.io", "Zed@x.io", "ZED@x.io"] {
        assert!(err.contains(address), "the error names {address}: {err}");
    }
    assert!(!err.contains("Unique@x.io"), "{err}");
    assert_eq!(emails(conn).await, before, "no row was changed");
    let status = migrator::status::<Migrator, _>(conn).await.unwrap();
    assert_eq!(
        status.applied.len(),
        1,
        "the data migration is not recorded"
    );
    assert_eq!(status.pending.len(), MIGRATIONS - 1);
}

async fn lower_email_index_rejects_a_case_variant(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let conn = db.connection();
    insert(conn, "A@x.io", "a").await.unwrap();

    let err = insert(conn, "a@x.io", "b").await.unwrap_err();

    assert!(
        matches!(
            err.sql_err(),
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
        ),
        "{err}"
    );
}

async fn updated_at_trigger_moves_on_raw_update(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let conn = db.connection();
    insert(conn, "A@x.io", "a").await.unwrap();
    let (created_before, updated_before) = timestamps(conn).await;
    assert_eq!(created_before, updated_before);
    // SQLite's clock in the trigger has millisecond resolution.
    tokio::time::sleep(Duration::from_millis(20)).await;

    conn.execute_unprepared(r#"UPDATE "user" SET "name" = 'b'"#)
        .await
        .unwrap();

    let (created_after, updated_after) = timestamps(conn).await;
    assert_eq!(created_after, created_before);
    assert!(
        updated_after > updated_before,
        "{updated_after} > {updated_before}"
    );
}

async fn insert(conn: &DatabaseConnection, email: &str, name: &str) -> Result<(), sea_orm::DbErr> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => r#"INSERT INTO "user" ("email", "name") VALUES ($1, $2)"#,
        _ => r#"INSERT INTO "user" ("email", "name") VALUES (?, ?)"#,
    };
    conn.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [Value::from(email), Value::from(name)],
    ))
    .await
    .map(|_| ())
}

async fn emails(conn: &DatabaseConnection) -> Vec<String> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            r#"SELECT "email" FROM "user" ORDER BY "email""#,
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.try_get_by_index(0).unwrap())
        .collect()
}

async fn timestamps(conn: &DatabaseConnection) -> (String, String) {
    // As text, so the comparison is of what is stored, on both backends.
    let sql = match conn.get_database_backend() {
        DbBackend::Postgres => {
            r#"SELECT to_char("created_at", 'YYYY-MM-DD"T"HH24:MI:SS.US'), to_char("updated_at", 'YYYY-MM-DD"T"HH24:MI:SS.US') FROM "user""#
        }
        _ => r#"SELECT "created_at", "updated_at" FROM "user""#,
    };
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    (
        row.try_get_by_index(0).unwrap(),
        row.try_get_by_index(1).unwrap(),
    )
}
