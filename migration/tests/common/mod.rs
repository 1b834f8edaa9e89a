//! Helpers the migrator's test binaries share: one statement on a database by its URL.

use sea_orm::{ConnectionTrait, Database, Statement};

/// Runs `sql` on the database at `url`.
pub async fn execute(url: &str, sql: &str) {
    let db = Database::connect(url).await.unwrap();
    db.execute_unprepared(sql).await.unwrap();
    db.close().await.unwrap();
}

/// The first column of the first row `sql` returns, as text.
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
