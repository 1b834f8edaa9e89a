//! Data migration: lower-cases every stored email, so that the case-insensitive unique index of
//! the next migration can be built. The work lives in [`crate::data::lowercase_emails`]: keyset
//! batches, each its own short transaction, so writers to `user` never wait for more than one
//! batch. On PostgreSQL the migration is therefore not one transaction (`use_transaction` is
//! `Some(false)`): a run that dies part-way is finished by the next `up`, which changes only
//! what is left. On SQLite the migrator runs it in one transaction as every migration.
//!
//! `down` is a deliberate no-op: the original casing is gone and cannot be restored, and the
//! lower-cased data is valid under the previous schema.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::data::lowercase_emails(manager.get_connection())
            .await
            .map(|_| ())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}
