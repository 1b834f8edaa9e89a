//! A unique index on `lower(email)`, so the database itself refuses two emails that differ only
//! in case, whoever writes them. The column keeps its own (case-sensitive) unique constraint; a
//! client that stores mixed case is still accepted, the service normalises on write.
//!
//! On PostgreSQL it is built `CONCURRENTLY` (writes to `user` go on meanwhile), so the
//! migration is not a transaction (`use_transaction` is `Some(false)`); an index left
//! `INVALID` by an interrupted build is dropped and built again by the next `up` (see
//! [`crate::online`]). SeaQuery 1.0 panics on expression indexes for SQLite, so the SQLite
//! statement is written out; both spell the same index.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "user_email_lower_key";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::online::create_index(
            manager,
            Index::create()
                .name(INDEX)
                .table(User::Table)
                .col(Func::lower(Expr::col(User::Email)))
                .unique()
                .to_owned(),
            Some(&format!(
                r#"CREATE UNIQUE INDEX IF NOT EXISTS "{INDEX}" ON "user" (lower("email"))"#
            )),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::online::drop_index(manager, INDEX).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}

#[derive(DeriveIden)]
enum User {
    Table,
    Email,
}
