//! Changes to an existing table that run on PostgreSQL and SQLite alike.
//!
//! PostgreSQL alters a table in place. SQLite's `ALTER TABLE` only renames, adds plain
//! columns and drops columns in easy cases, and SeaQuery panics on the rest; so on SQLite a
//! change it cannot make in place rebuilds the table ("move and copy", as Alembic's batch mode
//! does): the table is read back from the catalog, the change applied to that description, a
//! new table created, the rows copied, the old table dropped, the new one renamed, and the
//! table's indexes and triggers created again. Foreign key enforcement must be off while a
//! table that others reference is dropped (else `ON DELETE CASCADE` would empty its
//! children): the migrator turns it off for its run on SQLite and checks every foreign key
//! before each migration commits (see [`crate::runner`]).
//!
//! ```no_run
//! # use sea_orm_migration::{prelude::*, schema::*};
//! # #[derive(DeriveIden)] enum User { Table, Bio, Name }
//! # async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
//! migrator::alter::table(User::Table)
//!     .add_column(string_null(User::Bio))
//!     .alter_column(string_len(User::Name, 100))
//!     .apply(manager)
//!     .await
//! # }
//! ```

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

mod sqlite;

/// Starts a change to `table`; nothing runs until [`TableChange::apply`].
pub fn table(table: impl IntoIden) -> TableChange {
    TableChange {
        table: table.into_iden().to_string(),
        ops: Vec::new(),
    }
}

/// A list of changes to one table, applied in order by [`TableChange::apply`].
#[derive(Debug, Clone)]
#[must_use = "a table change does nothing until `apply` runs it"]
pub struct TableChange {
    table: String,
    ops: Vec<Op>,
}

#[derive(Debug, Clone)]
enum Op {
    AddColumn(ColumnDef),
    DropColumn(String),
    AlterColumn(ColumnDef),
    RenameColumn(String, String),
    AddUnique(Vec<String>),
    DropUnique(Vec<String>),
    AddForeignKey(ForeignKeyCreateStatement),
    DropForeignKey(Vec<String>),
}

impl TableChange {
    /// Adds a column.
    pub fn add_column(mut self, column: impl Into<ColumnDef>) -> Self {
        self.ops.push(Op::AddColumn(column.into()));
        self
    }

    /// Drops a column (and its data).
    pub fn drop_column(mut self, column: impl IntoIden) -> Self {
        self.ops
            .push(Op::DropColumn(column.into_iden().to_string()));
        self
    }

    /// Makes a column exactly `column`: its type, nullability and default (no default in
    /// `column` drops the existing one).
    pub fn alter_column(mut self, column: impl Into<ColumnDef>) -> Self {
        self.ops.push(Op::AlterColumn(column.into()));
        self
    }

    /// Renames a column, keeping its data.
    pub fn rename_column(mut self, from: impl IntoIden, to: impl IntoIden) -> Self {
        self.ops.push(Op::RenameColumn(
            from.into_iden().to_string(),
            to.into_iden().to_string(),
        ));
        self
    }

    /// Adds a unique constraint on `columns` (named `<table>_<columns>_key`, as PostgreSQL
    /// names a column's `UNIQUE`).
    pub fn add_unique<I: IntoIden>(mut self, columns: impl IntoIterator<Item = I>) -> Self {
        self.ops.push(Op::AddUnique(names(columns)));
        self
    }

    /// Drops the unique constraint on exactly `columns`.
    pub fn drop_unique<I: IntoIden>(mut self, columns: impl IntoIterator<Item = I>) -> Self {
        self.ops.push(Op::DropUnique(names(columns)));
        self
    }

    /// Adds a foreign key.
    pub fn add_foreign_key(mut self, foreign_key: &mut ForeignKeyCreateStatement) -> Self {
        self.ops.push(Op::AddForeignKey(foreign_key.take()));
        self
    }

    /// Drops the foreign key on exactly `columns`.
    pub fn drop_foreign_key<I: IntoIden>(mut self, columns: impl IntoIterator<Item = I>) -> Self {
        self.ops.push(Op::DropForeignKey(names(columns)));
        self
    }

    /// Runs the changes: in place on PostgreSQL; on SQLite in place where SQLite can, else by
    /// one rebuild of the table for all of them.
    ///
    /// # Errors
    ///
    /// Any database error; a missing constraint to drop; on SQLite a rebuild attempted while
    /// foreign key enforcement is on.
    pub async fn apply(self, manager: &SchemaManager<'_>) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => self.apply_postgres(manager).await,
            DbBackend::Sqlite => sqlite::apply(manager, &self.table, self.ops).await,
            other => Err(DbErr::BackendNotSupported {
                db: other.as_str(),
                ctx: "alter::TableChange",
            }),
        }
    }

    async fn apply_postgres(self, manager: &SchemaManager<'_>) -> Result<(), DbErr> {
        let table = Alias::new(self.table.clone());
        for op in self.ops {
            match op {
                Op::AddColumn(column) => {
                    manager
                        .alter_table(
                            Table::alter()
                                .table(table.clone())
                                .add_column(column)
                                .to_owned(),
                        )
                        .await?;
                }
                Op::DropColumn(column) => {
                    manager
                        .alter_table(
                            Table::alter()
                                .table(table.clone())
                                .drop_column(Alias::new(column))
                                .to_owned(),
                        )
                        .await?;
                }
                Op::AlterColumn(column) => {
                    let spec = column.get_column_spec();
                    let name = column.get_column_name();
                    let mut modify = ColumnDef::new(Alias::new(name.clone()));
                    if let Some(column_type) = column.get_column_type() {
                        modify =
                            ColumnDef::new_with_type(Alias::new(name.clone()), column_type.clone());
                    }
                    if spec.nullable == Some(false) {
                        modify.not_null();
                    } else {
                        modify.null();
                    }
                    if let Some(default) = &spec.default {
                        modify.default(default.clone());
                    }
                    manager
                        .alter_table(
                            Table::alter()
                                .table(table.clone())
                                .modify_column(modify)
                                .to_owned(),
                        )
                        .await?;
                    if spec.default.is_none() {
                        execute(
                            manager,
                            format!(
                                "ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT",
                                quote(&self.table),
                                quote(&name)
                            ),
                        )
                        .await?;
                    }
                }
                Op::RenameColumn(from, to) => {
                    manager
                        .alter_table(
                            Table::alter()
                                .table(table.clone())
                                .rename_column(Alias::new(from), Alias::new(to))
                                .to_owned(),
                        )
                        .await?;
                }
                Op::AddUnique(columns) => {
                    let name = format!("{}_{}_key", self.table, columns.join("_"));
                    execute(
                        manager,
                        format!(
                            "ALTER TABLE {} ADD CONSTRAINT {} UNIQUE ({})",
                            quote(&self.table),
                            quote(&name),
                            columns
                                .iter()
                                .map(|c| quote(c))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                    .await?;
                }
                Op::DropUnique(columns) => {
                    drop_pg_constraint_on(manager, &self.table, 'u', &columns).await?;
                }
                Op::AddForeignKey(mut foreign_key) => {
                    manager
                        .create_foreign_key(foreign_key.from_tbl(table.clone()).to_owned())
                        .await?;
                }
                Op::DropForeignKey(columns) => {
                    drop_pg_constraint_on(manager, &self.table, 'f', &columns).await?;
                }
            }
        }
        Ok(())
    }
}

fn names<I: IntoIden>(columns: impl IntoIterator<Item = I>) -> Vec<String> {
    columns
        .into_iter()
        .map(|c| c.into_iden().to_string())
        .collect()
}

/// Drops the constraint of kind `kind` (`u`nique, `f`oreign key) on exactly `columns`, found
/// by its columns since its name is the server's choice.
async fn drop_pg_constraint_on(
    manager: &SchemaManager<'_>,
    table: &str,
    kind: char,
    columns: &[String],
) -> Result<(), DbErr> {
    let name = pg_constraint_on(manager, table, kind, columns).await?;
    execute(
        manager,
        format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            quote(table),
            quote(&name)
        ),
    )
    .await
}

/// The name of the constraint of kind `kind` (`u`nique, `f`oreign key) on exactly `columns`.
async fn pg_constraint_on(
    manager: &SchemaManager<'_>,
    table: &str,
    kind: char,
    columns: &[String],
) -> Result<String, DbErr> {
    let sql = "SELECT c.conname::text FROM pg_constraint c \
               WHERE c.conrelid = to_regclass(quote_ident($1)) AND c.contype = $2 \
                 AND (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord) \
                      FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) \
                      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) = $3";
    let row = manager
        .get_connection()
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [
                table.into(),
                kind.to_string().into(),
                columns.join(",").into(),
            ],
        ))
        .await?;
    row.and_then(|row| row.try_get_by_index::<String>(0).ok())
        .ok_or_else(|| {
            DbErr::Migration(format!(
                "table {table} has no {} constraint on ({})",
                if kind == 'u' { "unique" } else { "foreign key" },
                columns.join(", ")
            ))
        })
}

/// Quotes an identifier for PostgreSQL and SQLite (both use `"`).
pub(crate) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Runs one statement through the statement path (not `execute_unprepared`), so offline mode
/// (`up --sql`) sees it.
pub(crate) async fn execute(manager: &SchemaManager<'_>, sql: String) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    manager
        .get_connection()
        .execute_raw(Statement::from_string(backend, sql))
        .await
        .map(|_| ())
}
