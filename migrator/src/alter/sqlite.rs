//! SQLite: in place where `ALTER TABLE` can, else one rebuild of the table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, QueryResult, Statement};

use super::{Op, execute, quote};

pub(super) async fn apply(
    manager: &SchemaManager<'_>,
    table: &str,
    ops: Vec<Op>,
) -> Result<(), DbErr> {
    if ops.iter().all(in_place) {
        for op in ops {
            in_place_statement(manager, table, op).await?;
        }
        return Ok(());
    }
    let mut description = Described::read(manager, table).await?;
    for op in ops {
        description.apply(op)?;
    }
    rebuild(manager, table, description).await
}

/// What SQLite's own `ALTER TABLE` does: renames, and added columns that need no constraint
/// SQLite cannot add (a nullable column, or one with a default, neither unique nor key) and
/// have no default SQLite refuses to add to a table with rows (`CURRENT_TIMESTAMP`,
/// `CURRENT_DATE`, any expression: "Cannot add a column with non-constant default"); the
/// rebuild fills such a column by its default, row by row.
fn in_place(op: &Op) -> bool {
    match op {
        Op::RenameColumn(..) => true,
        Op::AddColumn(column) => {
            let spec = column.get_column_spec();
            !spec.unique
                && !spec.primary_key
                && spec
                    .default
                    .as_ref()
                    .map_or(spec.nullable != Some(false), constant)
        }
        _ => false,
    }
}

/// Whether SQLite's `ALTER TABLE … ADD COLUMN` takes `default` on a table with rows: a
/// literal value.
fn constant(default: &Expr) -> bool {
    matches!(default, Expr::Value(_) | Expr::Constant(_))
}

async fn in_place_statement(manager: &SchemaManager<'_>, table: &str, op: Op) -> Result<(), DbErr> {
    let alter = match op {
        Op::RenameColumn(from, to) => Table::alter()
            .table(Alias::new(table))
            .rename_column(Alias::new(from), Alias::new(to))
            .to_owned(),
        Op::AddColumn(column) => Table::alter()
            .table(Alias::new(table))
            .add_column(column)
            .to_owned(),
        _ => return Err(DbErr::Migration("not an in-place change on SQLite".into())),
    };
    manager.alter_table(alter).await
}

/// A table as SQLite's catalog describes it, with the columns as SeaQuery definitions (their
/// declared types kept verbatim), so the rebuilt table is written by the same builder.
#[derive(Debug)]
struct Described {
    /// Each column with the old column it is copied from (`None`: new, filled by its default).
    columns: Vec<(ColumnDef, Option<String>)>,
    uniques: Vec<Vec<String>>,
    foreign_keys: Vec<ForeignKeyCreateStatement>,
    /// `CREATE INDEX` and `CREATE TRIGGER` statements, run again after the rebuild.
    recreate: Vec<String>,
    /// The columns of a primary key of more than one column, in key order.
    composite_key: Vec<String>,
}

impl Described {
    async fn read(manager: &SchemaManager<'_>, table: &str) -> Result<Self, DbErr> {
        let db = manager.get_connection();
        let sql: String = one(&query(
            db,
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
            &[table],
        )
        .await?)
        .ok_or_else(|| DbErr::Migration(format!("no table {table} to change")))?;
        let autoincrement = sql.to_uppercase().contains("AUTOINCREMENT");
        let info = query(
            db,
            "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid",
            &[table],
        )
        .await?;
        let key_columns = info
            .iter()
            .filter(|row| row.try_get_by_index::<i32>(4).unwrap_or(0) > 0)
            .count();
        let mut columns = Vec::new();
        let mut key: Vec<(i32, String)> = Vec::new();
        for row in &info {
            let name: String = row.try_get_by_index(0)?;
            let declared: String = row.try_get_by_index(1)?;
            let not_null: i32 = row.try_get_by_index(2)?;
            let default: Option<String> = row.try_get_by_index(3)?;
            let pk: i32 = row.try_get_by_index(4)?;
            let mut column = ColumnDef::new(Alias::new(name.clone()));
            column.custom(Alias::new(declared));
            if not_null != 0 {
                column.not_null();
            }
            if let Some(default) = default {
                column.default(Expr::cust(default));
            }
            if pk > 0 {
                key.push((pk, name.clone()));
            }
            if pk > 0 && key_columns == 1 {
                column.primary_key();
                if autoincrement {
                    column.auto_increment();
                }
            }
            columns.push((column, Some(name)));
        }
        key.sort();
        let composite_key = if key_columns > 1 {
            key.into_iter().map(|(_, c)| c).collect()
        } else {
            Vec::new()
        };
        let mut uniques = Vec::new();
        let mut recreate = Vec::new();
        for index in query(
            db,
            "SELECT l.name, l.origin, m.sql FROM pragma_index_list(?) l \
             LEFT JOIN sqlite_master m ON m.type = 'index' AND m.name = l.name ORDER BY l.name",
            &[table],
        )
        .await?
        {
            let name: String = index.try_get_by_index(0)?;
            let origin: String = index.try_get_by_index(1)?;
            match origin.as_str() {
                "u" => {
                    let cols = query(
                        db,
                        "SELECT name FROM pragma_index_info(?) ORDER BY seqno",
                        &[&name],
                    )
                    .await?
                    .iter()
                    .map(|r| r.try_get_by_index::<String>(0))
                    .collect::<Result<Vec<_>, _>>()?;
                    uniques.push(cols);
                }
                "c" => {
                    if let Some(sql) = index.try_get_by_index::<Option<String>>(2)? {
                        recreate.push(sql);
                    }
                }
                _ => {}
            }
        }
        let mut foreign_keys: Vec<ForeignKeyCreateStatement> = Vec::new();
        let mut last_id = None;
        for row in query(
            db,
            "SELECT id, \"table\", \"from\", \"to\", on_update, on_delete \
             FROM pragma_foreign_key_list(?) ORDER BY id, seq",
            &[table],
        )
        .await?
        {
            let id: i32 = row.try_get_by_index(0)?;
            let parent: String = row.try_get_by_index(1)?;
            let from: String = row.try_get_by_index(2)?;
            let to: String = row.try_get_by_index(3)?;
            if last_id != Some(id) {
                let on_update: String = row.try_get_by_index(4)?;
                let on_delete: String = row.try_get_by_index(5)?;
                let mut fk = ForeignKey::create();
                fk.from_tbl(Alias::new(table)).to_tbl(Alias::new(parent));
                if let Some(action) = action(&on_update) {
                    fk.on_update(action);
                }
                if let Some(action) = action(&on_delete) {
                    fk.on_delete(action);
                }
                foreign_keys.push(fk);
                last_id = Some(id);
            }
            if let Some(fk) = foreign_keys.last_mut() {
                fk.from_col(Alias::new(from)).to_col(Alias::new(to));
            }
        }
        for row in query(
            db,
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? ORDER BY name",
            &[table],
        )
        .await?
        {
            recreate.push(row.try_get_by_index(0)?);
        }
        Ok(Self {
            columns,
            uniques,
            foreign_keys,
            recreate,
            composite_key,
        })
    }

    fn position(&self, column: &str) -> Result<usize, DbErr> {
        self.columns
            .iter()
            .position(|(c, _)| c.get_column_name() == column)
            .ok_or_else(|| DbErr::Migration(format!("no column {column} to change")))
    }

    fn apply(&mut self, op: Op) -> Result<(), DbErr> {
        match op {
            Op::AddColumn(column) => self.columns.push((column, None)),
            Op::DropColumn(column) => {
                let i = self.position(&column)?;
                self.columns.remove(i);
                self.uniques.retain(|u| !u.contains(&column));
                if self.composite_key.contains(&column) {
                    return Err(DbErr::Migration(format!(
                        "column {column} is part of the primary key; change the key by hand"
                    )));
                }
            }
            Op::AlterColumn(column) => {
                let i = self.position(&column.get_column_name())?;
                let old = self.columns[i].1.clone();
                let keeps_key = self.columns[i].0.get_column_spec().primary_key;
                let mut new = column;
                if keeps_key && !new.get_column_spec().primary_key {
                    new.primary_key();
                }
                self.columns[i] = (new, old);
            }
            Op::RenameColumn(from, to) => {
                let i = self.position(&from)?;
                let (column, old) = &self.columns[i];
                let mut renamed = match column.get_column_type() {
                    Some(t) => ColumnDef::new_with_type(Alias::new(to.clone()), t.clone()),
                    None => ColumnDef::new(Alias::new(to.clone())),
                };
                copy_spec(column, &mut renamed);
                self.columns[i] = (renamed, old.clone());
                for c in self.composite_key.iter_mut().filter(|c| **c == from) {
                    c.clone_from(&to);
                }
                for unique in &mut self.uniques {
                    for c in unique.iter_mut().filter(|c| **c == from) {
                        c.clone_from(&to);
                    }
                }
                for fk in &mut self.foreign_keys {
                    let spec = fk.get_foreign_key();
                    if spec.get_columns().contains(&from) {
                        let mut changed = ForeignKey::create();
                        if let Some(t) = spec.get_table() {
                            changed.from_tbl(t.clone());
                        }
                        if let Some(t) = spec.get_ref_table() {
                            changed.to_tbl(t.clone());
                        }
                        for c in spec.get_columns() {
                            changed.from_col(Alias::new(if c == from { to.clone() } else { c }));
                        }
                        for c in spec.get_ref_columns() {
                            changed.to_col(Alias::new(c));
                        }
                        if let Some(a) = spec.get_on_delete() {
                            changed.on_delete(a);
                        }
                        if let Some(a) = spec.get_on_update() {
                            changed.on_update(a);
                        }
                        *fk = changed;
                    }
                }
            }
            Op::AddUnique(columns) => self.uniques.push(columns),
            Op::DropUnique(columns) => {
                let before = self.uniques.len();
                self.uniques.retain(|u| *u != columns);
                if self.uniques.len() == before {
                    return Err(DbErr::Migration(format!(
                        "no unique constraint on ({}) to drop",
                        columns.join(", ")
                    )));
                }
            }
            Op::AddForeignKey(fk) => self.foreign_keys.push(fk),
            Op::DropForeignKey(columns) => {
                let before = self.foreign_keys.len();
                self.foreign_keys
                    .retain(|fk| fk.get_foreign_key().get_columns() != columns);
                if self.foreign_keys.len() == before {
                    return Err(DbErr::Migration(format!(
                        "no foreign key on ({}) to drop",
                        columns.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }
}

fn copy_spec(from: &ColumnDef, to: &mut ColumnDef) {
    let spec = from.get_column_spec();
    match spec.nullable {
        Some(false) => {
            to.not_null();
        }
        Some(true) => {
            to.null();
        }
        None => {}
    }
    if let Some(default) = &spec.default {
        to.default(default.clone());
    }
    if spec.primary_key {
        to.primary_key();
    }
    if spec.auto_increment {
        to.auto_increment();
    }
    if spec.unique {
        to.unique_key();
    }
}

fn action(text: &str) -> Option<ForeignKeyAction> {
    match text {
        "CASCADE" => Some(ForeignKeyAction::Cascade),
        "SET NULL" => Some(ForeignKeyAction::SetNull),
        "SET DEFAULT" => Some(ForeignKeyAction::SetDefault),
        "RESTRICT" => Some(ForeignKeyAction::Restrict),
        _ => None,
    }
}

async fn rebuild(manager: &SchemaManager<'_>, table: &str, d: Described) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let enforced: Option<i32> = one(&query(db, "PRAGMA foreign_keys", &[]).await?);
    if enforced == Some(1) {
        return Err(DbErr::Migration(format!(
            "rebuilding SQLite table {table} needs foreign key enforcement off (dropping it \
             would otherwise cascade to the tables that reference it); run migrations through \
             the migrator (`cargo migrate up`, `runner::up`, `apply_migrations`), which turns \
             it off for the run and checks every foreign key before each migration commits"
        )));
    }
    let scratch = format!("_rebuild_{table}");
    let mut create = Table::create();
    create.table(Alias::new(scratch.clone()));
    for (column, _) in &d.columns {
        create.col(column.clone());
    }
    if !d.composite_key.is_empty() {
        let mut key = Index::create();
        for c in &d.composite_key {
            key.col(Alias::new(c.clone()));
        }
        create.primary_key(&mut key);
    }
    let autoincrement = d
        .columns
        .iter()
        .any(|(c, _)| c.get_column_spec().auto_increment);
    for unique in &d.uniques {
        let mut index = Index::create();
        index.unique();
        for c in unique {
            index.col(Alias::new(c.clone()));
        }
        create.index(&mut index);
    }
    for fk in &d.foreign_keys {
        let mut fk = fk.clone();
        create.foreign_key(&mut fk);
    }
    manager.create_table(create).await?;
    let (targets, sources): (Vec<String>, Vec<String>) = d
        .columns
        .iter()
        .filter_map(|(c, old)| {
            old.as_ref()
                .map(|o| (quote(&c.get_column_name()), quote(o)))
        })
        .unzip();
    execute(
        manager,
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM {}",
            quote(&scratch),
            targets.join(", "),
            sources.join(", "),
            quote(table)
        ),
    )
    .await?;
    if autoincrement {
        // The AUTOINCREMENT counter (`sqlite_sequence`) goes with the old table, and the new
        // one's counts only the copied rows: ids of deleted rows would come back. The old
        // table's row becomes the new table's (the rename below carries it over).
        execute(
            manager,
            format!(
                "DELETE FROM sqlite_sequence WHERE name = {scratch_name} \
                   AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = {table_name})",
                scratch_name = literal(&scratch),
                table_name = literal(table)
            ),
        )
        .await?;
        execute(
            manager,
            format!(
                "UPDATE sqlite_sequence SET name = {} WHERE name = {}",
                literal(&scratch),
                literal(table)
            ),
        )
        .await?;
    }
    execute(manager, format!("DROP TABLE {}", quote(table))).await?;
    execute(
        manager,
        format!("ALTER TABLE {} RENAME TO {}", quote(&scratch), quote(table)),
    )
    .await?;
    for sql in d.recreate {
        execute(manager, sql).await?;
    }
    Ok(())
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn query(
    db: &SchemaManagerConnection<'_>,
    sql: &str,
    values: &[&str],
) -> Result<Vec<QueryResult>, DbErr> {
    db.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        sql,
        values.iter().map(|v| (*v).into()),
    ))
    .await
}

fn one<T: sea_orm_migration::sea_orm::TryGetable>(rows: &[QueryResult]) -> Option<T> {
    rows.first().and_then(|row| row.try_get_by_index(0).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite adds a column in place only with a constant default ("Cannot add a column with
    /// non-constant default" on a table with rows); any other default means a rebuild.
    #[test]
    fn only_constant_defaults_are_added_in_place() {
        let add = |column: &mut ColumnDef| Op::AddColumn(column.take());
        let name = || Alias::new("c");
        assert!(in_place(&add(ColumnDef::new(name()).integer().null())));
        assert!(in_place(&add(ColumnDef::new(name())
            .integer()
            .not_null()
            .default(0))));
        assert!(!in_place(&add(ColumnDef::new(name()).integer().not_null())));
        for default in [
            Expr::current_date(),
            Expr::current_timestamp(),
            Expr::cust("(1 + 1)"),
        ] {
            assert!(!in_place(&add(ColumnDef::new(name())
                .date()
                .not_null()
                .default(default.clone()))));
            assert!(!in_place(&add(ColumnDef::new(name())
                .date()
                .null()
                .default(default))));
        }
    }
}
