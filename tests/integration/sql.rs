//! Small SQL helpers shared by the test modules.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};

/// Whether `table` exists in the current schema.
pub async fn table_exists(conn: &DatabaseConnection, table: &str) -> bool {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = $1"
        }
        _ => "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
    };
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [table.into()]))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap() == 1
}

/// Runs `sql` on the database at `url`.
pub async fn execute(url: &str, sql: &str) {
    let db = Database::connect(url).await.unwrap();
    db.execute_unprepared(sql).await.unwrap();
    db.close().await.unwrap();
}

/// The first column of the first row `sql` returns on the database at `url`, as text.
pub async fn query_text(url: &str, sql: &str) -> String {
    let db = Database::connect(url).await.unwrap();
    let value = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    db.close().await.unwrap();
    value
}
