//! A unique index on `lower(email)`, so the database itself refuses two emails that differ only
//! in case, whoever writes them. The column keeps its own (case-sensitive) unique constraint; a
//! client that stores mixed case is still accepted, the service normalises on write.
//!
//! SeaQuery 1.0 builds expression indexes for PostgreSQL but panics for SQLite, so the SQLite
//! statement is written out; both spell the same index.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "user_email_lower_key";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                crate::alter::execute(
                    manager,
                    format!(r#"CREATE UNIQUE INDEX "{INDEX}" ON "user" (lower("email"))"#),
                )
                .await
            }
            _ => {
                manager
                    .create_index(
                        Index::create()
                            .name(INDEX)
                            .table(User::Table)
                            .col(Func::lower(Expr::col(User::Email)))
                            .unique()
                            .to_owned(),
                    )
                    .await
            }
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(User::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden)]
enum User {
    Table,
    Email,
}
