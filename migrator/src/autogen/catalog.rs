//! What a database's catalog says about its tables, in one shape for both backends.
//!
//! Both sides of a comparison are read from a real database of the same backend (the
//! migrations applied to one scratch database, the entities created in another), so types
//! and defaults are compared as that database renders them, never as two libraries would.
//! sea-schema is not used: on PostgreSQL it reads only unique indexes and drops expression
//! indexes, on SQLite it rewrites defaults and reads `integer` as bigint.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, QueryResult, Statement};

/// Every table of a database (PostgreSQL: of the current schema).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// By name.
    pub tables: BTreeMap<String, TableFacts>,
    /// PostgreSQL's enum types of the current schema, by name, with their values in order
    /// (SQLite has none: an enum column is text there).
    pub enums: BTreeMap<String, Vec<String>>,
}

/// One table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableFacts {
    /// In the table's order.
    pub columns: Vec<ColumnFacts>,
    /// The primary key's columns.
    pub primary_key: Vec<String>,
    /// Unique constraints, as column lists.
    pub uniques: BTreeSet<Vec<String>>,
    /// Indexes that back no constraint, by name.
    pub indexes: BTreeMap<String, IndexFacts>,
    /// Foreign keys, sorted.
    pub foreign_keys: Vec<ForeignKeyFacts>,
    /// PostgreSQL: the name of each foreign key, by its columns (not compared: what a
    /// migration that drops a key puts back in `down`).
    pub foreign_key_names: BTreeMap<Vec<String>, String>,
    /// Trigger names.
    pub triggers: BTreeSet<String>,
}

impl TableFacts {
    /// The column named `name`.
    #[must_use]
    pub fn column(&self, name: &str) -> Option<&ColumnFacts> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// One column, as the database renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnFacts {
    /// Its name.
    pub name: String,
    /// PostgreSQL: `format_type`; SQLite: the declared type.
    pub sql_type: String,
    /// Whether it accepts NULL.
    pub nullable: bool,
    /// The default expression as the catalog prints it.
    pub default: Option<String>,
    /// An identity (PostgreSQL) or `AUTOINCREMENT` key (SQLite).
    pub auto_increment: bool,
}

/// One index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFacts {
    /// Its columns; an expression index has its definition here instead.
    pub columns: Vec<String>,
    /// A unique index.
    pub unique: bool,
    /// On an expression rather than columns (entities cannot declare these).
    pub expression: bool,
}

/// One foreign key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignKeyFacts {
    /// The referencing columns.
    pub columns: Vec<String>,
    /// The referenced table.
    pub foreign_table: String,
    /// The referenced columns.
    pub foreign_columns: Vec<String>,
    /// `NO ACTION`, `RESTRICT`, `CASCADE`, `SET NULL` or `SET DEFAULT`.
    pub on_delete: String,
    /// As `on_delete`.
    pub on_update: String,
}

/// Reads the catalog of `db`, leaving out the tables named in `skip_tables`.
///
/// # Errors
///
/// Any database error.
pub async fn read<C: ConnectionTrait>(db: &C, skip_tables: &[&str]) -> Result<Catalog, DbErr> {
    let mut catalog = match db.get_database_backend() {
        DbBackend::Postgres => read_postgres(db).await?,
        DbBackend::Sqlite => read_sqlite(db).await?,
        other => {
            return Err(DbErr::BackendNotSupported {
                db: other.as_str(),
                ctx: "catalog",
            });
        }
    };
    catalog
        .tables
        .retain(|name, _| !skip_tables.contains(&name.as_str()));
    for table in catalog.tables.values_mut() {
        table.foreign_keys.sort();
    }
    Ok(catalog)
}

async fn rows<C: ConnectionTrait>(
    db: &C,
    sql: &str,
    values: &[&str],
) -> Result<Vec<QueryResult>, DbErr> {
    let backend = db.get_database_backend();
    db.query_all_raw(Statement::from_sql_and_values(
        backend,
        sql,
        values.iter().map(|v| (*v).into()),
    ))
    .await
}

fn text(row: &QueryResult, i: usize) -> Result<String, DbErr> {
    row.try_get_by_index(i)
}

fn list(joined: &str) -> Vec<String> {
    if joined.is_empty() {
        Vec::new()
    } else {
        joined.split('\u{1f}').map(str::to_owned).collect()
    }
}

/// Column names of `conkey`/`indkey`-style arrays, joined with the unit separator.
const PG_COLUMNS: &str = "(SELECT string_agg(a.attname::text, chr(31) ORDER BY u.ord) \
     FROM unnest({keys}) WITH ORDINALITY AS u(attnum, ord) \
     JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = u.attnum)";

fn pg_columns(keys: &str, rel: &str) -> String {
    PG_COLUMNS.replace("{keys}", keys).replace("{rel}", rel)
}

fn pg_action(code: &str) -> String {
    match code {
        "r" => "RESTRICT",
        "c" => "CASCADE",
        "n" => "SET NULL",
        "d" => "SET DEFAULT",
        _ => "NO ACTION",
    }
    .to_owned()
}

async fn read_postgres<C: ConnectionTrait>(db: &C) -> Result<Catalog, DbErr> {
    let mut catalog = Catalog::default();
    let in_schema = "c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')";
    for row in rows(
        db,
        &format!("SELECT c.relname::text FROM pg_class c WHERE {in_schema}"),
        &[],
    )
    .await?
    {
        catalog.tables.insert(text(&row, 0)?, TableFacts::default());
    }
    for row in rows(
        db,
        &format!(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), \
                    a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '' \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE {in_schema} AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY c.relname, a.attnum"
        ),
        &[],
    )
    .await?
    {
        let table = text(&row, 0)?;
        let column = ColumnFacts {
            name: text(&row, 1)?,
            sql_type: text(&row, 2)?,
            nullable: !row.try_get_by_index::<bool>(3)?,
            default: row.try_get_by_index(4)?,
            auto_increment: row.try_get_by_index(5)?,
        };
        if let Some(t) = catalog.tables.get_mut(&table) {
            t.columns.push(column);
        }
    }
    for row in rows(
        db,
        &format!(
            "SELECT c.relname::text, k.contype::text, {cols}, \
                    COALESCE(f.relname::text, ''), COALESCE({fcols}, ''), \
                    k.confdeltype::text, k.confupdtype::text, k.conname::text \
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
             LEFT JOIN pg_class f ON f.oid = k.confrelid \
             WHERE {in_schema} AND k.contype IN ('p', 'u', 'f')",
            cols = pg_columns("k.conkey", "k.conrelid"),
            fcols = pg_columns("k.confkey", "k.confrelid"),
        ),
        &[],
    )
    .await?
    {
        let Some(table) = catalog.tables.get_mut(&text(&row, 0)?) else {
            continue;
        };
        let columns = list(&text(&row, 2)?);
        match text(&row, 1)?.as_str() {
            "p" => table.primary_key = columns,
            "u" => {
                table.uniques.insert(columns);
            }
            _ => {
                table
                    .foreign_key_names
                    .insert(columns.clone(), text(&row, 7)?);
                table.foreign_keys.push(ForeignKeyFacts {
                    columns,
                    foreign_table: text(&row, 3)?,
                    foreign_columns: list(&text(&row, 4)?),
                    on_delete: pg_action(&text(&row, 5)?),
                    on_update: pg_action(&text(&row, 6)?),
                });
            }
        }
    }
    for row in rows(
        db,
        &format!(
            "SELECT c.relname::text, i.relname::text, x.indisunique, \
                    0 = ANY(x.indkey::int2[]) OR x.indexprs IS NOT NULL, \
                    COALESCE({cols}, ''), pg_get_indexdef(x.indexrelid) \
             FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid \
             JOIN pg_class i ON i.oid = x.indexrelid \
             WHERE {in_schema} \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid \
                               AND k.contype IN ('p', 'u'))",
            cols = pg_columns("x.indkey::int2[]", "x.indrelid"),
        ),
        &[],
    )
    .await?
    {
        let Some(table) = catalog.tables.get_mut(&text(&row, 0)?) else {
            continue;
        };
        let expression: bool = row.try_get_by_index(3)?;
        table.indexes.insert(
            text(&row, 1)?,
            IndexFacts {
                columns: if expression {
                    vec![text(&row, 5)?]
                } else {
                    list(&text(&row, 4)?)
                },
                unique: row.try_get_by_index(2)?,
                expression,
            },
        );
    }
    for row in rows(
        db,
        "SELECT t.typname::text, string_agg(e.enumlabel::text, chr(31) ORDER BY e.enumsortorder) \
         FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid \
         WHERE t.typnamespace = current_schema()::regnamespace GROUP BY t.typname",
        &[],
    )
    .await?
    {
        catalog.enums.insert(text(&row, 0)?, list(&text(&row, 1)?));
    }
    for row in rows(
        db,
        &format!(
            "SELECT c.relname::text, t.tgname::text FROM pg_trigger t \
             JOIN pg_class c ON c.oid = t.tgrelid WHERE {in_schema} AND NOT t.tgisinternal"
        ),
        &[],
    )
    .await?
    {
        if let Some(table) = catalog.tables.get_mut(&text(&row, 0)?) {
            table.triggers.insert(text(&row, 1)?);
        }
    }
    Ok(catalog)
}

async fn read_sqlite<C: ConnectionTrait>(db: &C) -> Result<Catalog, DbErr> {
    let mut catalog = Catalog::default();
    let tables = rows(
        db,
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
        &[],
    )
    .await?;
    for table_row in tables {
        let name = text(&table_row, 0)?;
        let sql: String = table_row.try_get_by_index(1)?;
        let autoincrement = sql.to_uppercase().contains("AUTOINCREMENT");
        let mut table = TableFacts::default();
        let mut key: Vec<(i32, String)> = Vec::new();
        for row in rows(
            db,
            "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid",
            &[&name],
        )
        .await?
        {
            let pk: i32 = row.try_get_by_index(4)?;
            let column = text(&row, 0)?;
            if pk > 0 {
                key.push((pk, column.clone()));
            }
            table.columns.push(ColumnFacts {
                name: column,
                sql_type: text(&row, 1)?,
                nullable: row.try_get_by_index::<i32>(2)? == 0 && pk == 0,
                default: row.try_get_by_index(3)?,
                auto_increment: pk > 0 && autoincrement,
            });
        }
        key.sort();
        table.primary_key = key.into_iter().map(|(_, c)| c).collect();
        for index in rows(
            db,
            "SELECT l.name, l.\"unique\", l.origin FROM pragma_index_list(?) l",
            &[&name],
        )
        .await?
        {
            let index_name = text(&index, 0)?;
            let unique: i32 = index.try_get_by_index(1)?;
            let origin = text(&index, 2)?;
            let mut columns = Vec::new();
            let mut expression = false;
            for c in rows(
                db,
                "SELECT name FROM pragma_index_info(?) ORDER BY seqno",
                &[&index_name],
            )
            .await?
            {
                match c.try_get_by_index::<Option<String>>(0)? {
                    Some(column) => columns.push(column),
                    None => expression = true,
                }
            }
            match origin.as_str() {
                "u" => {
                    table.uniques.insert(columns);
                }
                "pk" => {}
                _ => {
                    if expression {
                        let sql = rows(
                            db,
                            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?",
                            &[&index_name],
                        )
                        .await?;
                        columns = vec![match sql.first() {
                            Some(row) => text(row, 0)?,
                            None => String::new(),
                        }];
                    }
                    table.indexes.insert(
                        index_name,
                        IndexFacts {
                            columns,
                            unique: unique != 0,
                            expression,
                        },
                    );
                }
            }
        }
        let mut by_id: BTreeMap<i32, ForeignKeyFacts> = BTreeMap::new();
        for row in rows(
            db,
            "SELECT id, \"table\", \"from\", \"to\", on_update, on_delete \
             FROM pragma_foreign_key_list(?) ORDER BY id, seq",
            &[&name],
        )
        .await?
        {
            let id: i32 = row.try_get_by_index(0)?;
            let fk = by_id.entry(id).or_insert_with(|| ForeignKeyFacts {
                columns: Vec::new(),
                foreign_table: String::new(),
                foreign_columns: Vec::new(),
                on_delete: String::new(),
                on_update: String::new(),
            });
            fk.foreign_table = text(&row, 1)?;
            fk.columns.push(text(&row, 2)?);
            fk.foreign_columns.push(text(&row, 3)?);
            fk.on_update = text(&row, 4)?;
            fk.on_delete = text(&row, 5)?;
        }
        table.foreign_keys = by_id.into_values().collect();
        for row in rows(
            db,
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
            &[&name],
        )
        .await?
        {
            table.triggers.insert(text(&row, 0)?);
        }
        catalog.tables.insert(name, table);
    }
    Ok(catalog)
}
