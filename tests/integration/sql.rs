//! Small SQL helpers shared by the test modules.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

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
