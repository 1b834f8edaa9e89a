//! Creates the `user` table (singular, as the project's naming rule says; SeaQuery quotes it,
//! so the reserved word is fine on PostgreSQL), with `created_at`/`updated_at` and the trigger
//! that keeps `updated_at` current.

use sea_orm_migration::{prelude::*, schema::*};

use crate::timestamps;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        timestamps::create_table(
            manager,
            Table::create()
                .table(User::Table)
                .col(pk_auto(User::Id))
                .col(string_len_uniq(User::Email, 255))
                .col(string_len(User::Name, 255))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        timestamps::drop_table(manager, User::Table).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden)]
enum User {
    Table,
    Id,
    Email,
    Name,
}
