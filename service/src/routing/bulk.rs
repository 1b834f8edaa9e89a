//! Many rows at once: `COPY … FROM STDIN` on a PostgreSQL pool, chunked multi-row `INSERT`s
//! everywhere else.

use std::sync::Arc;

use sea_orm::sea_query::{DynIden, Query};
use sea_orm::sqlx::postgres::PgPoolCopyExt;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, RuntimeErr, TransactionSession, TransactionTrait, Value,
    sqlx,
};

/// Bytes sent per `CopyData` message: big enough to keep the per-message cost negligible,
/// small enough that the server starts inserting while the rest is on its way.
const COPY_CHUNK: usize = 1 << 20;

/// Runs `copy` (a `COPY … FROM STDIN` statement) on a connection of `pool`, sending `data` in
/// the text format (see [`push_copy_field`]). One statement: every row is inserted, or none.
/// Returns the number of rows inserted.
pub(crate) async fn copy_in(pool: &sqlx::PgPool, copy: &str, data: &[u8]) -> Result<u64, DbErr> {
    let as_db_err = |err: sqlx::Error| DbErr::Exec(RuntimeErr::SqlxError(Arc::new(err)));
    let mut stream = pool.copy_in_raw(copy).await.map_err(as_db_err)?;
    for chunk in data.chunks(COPY_CHUNK) {
        // On error, dropping `stream` sends CopyFail: the server discards everything received.
        stream.send(chunk).await.map_err(as_db_err)?;
    }
    stream.finish().await.map_err(as_db_err)
}

/// Appends `value` as one field of PostgreSQL's `COPY` text format: backslash, tab (the
/// delimiter), newline and carriage return are backslash-escaped, everything else is sent as
/// is. Since every backslash is doubled, `\N` (NULL) and `\.` (end of data) cannot be produced
/// by a value. Fields are separated by `\t`, rows end with `\n`.
pub(crate) fn push_copy_field(data: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escaped = match byte {
            b'\\' => b'\\',
            b'\t' => b't',
            b'\n' => b'n',
            b'\r' => b'r',
            _ => continue,
        };
        data.extend_from_slice(&bytes[start..i]);
        data.extend_from_slice(&[b'\\', escaped]);
        start = i + 1;
    }
    data.extend_from_slice(&bytes[start..]);
}

/// Inserts `rows` (each one value per column of `columns`) into `table` with multi-row
/// `INSERT`s, each under the backend's bind-parameter limit, inside one transaction (a
/// savepoint when `db` is already a transaction): every row, or none. Returns the number of
/// rows inserted.
pub(crate) async fn insert_chunked<C>(
    db: &C,
    table: DynIden,
    columns: &[DynIden],
    rows: Vec<Vec<Value>>,
) -> Result<u64, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let rows_per_statement = (max_binds(db.get_database_backend()) / columns.len().max(1)).max(1);
    let transaction = db.begin().await?;
    let mut inserted = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut insert = Query::insert();
        insert
            .into_table(table.clone())
            .columns(columns.iter().cloned());
        for row in rows.by_ref().take(rows_per_statement) {
            insert.values_panic(row.into_iter().map(Into::into));
        }
        match transaction.execute(&insert).await {
            Ok(result) => inserted += result.rows_affected(),
            Err(err) => {
                // Roll back now rather than on drop, so the connection is clean when it goes
                // back to the pool; the statement's error is the one worth reporting.
                let _ = transaction.rollback().await;
                return Err(err);
            }
        }
    }
    transaction.commit().await?;
    Ok(inserted)
}

/// The most bind parameters one statement may carry.
fn max_binds(backend: DbBackend) -> usize {
    match backend {
        // SQLITE_MAX_VARIABLE_NUMBER's default since SQLite 3.32.
        DbBackend::Sqlite => 32_766,
        // PostgreSQL (and MySQL) count parameters in an unsigned 16-bit field.
        _ => 65_535,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_field(value: &str) -> String {
        let mut data = Vec::new();
        push_copy_field(&mut data, value);
        String::from_utf8(data).unwrap()
    }

    /// Decodes one field of COPY text format as PostgreSQL does (for the escapes produced).
    fn decode_copy_field(field: &str) -> String {
        let mut out = String::new();
        let mut chars = field.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('t') => out.push('\t'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('\\') => out.push('\\'),
                    other => panic!("unexpected escape {other:?} in {field:?}"),
                }
            } else {
                assert!(!matches!(c, '\t' | '\n' | '\r'), "raw {c:?} in {field:?}");
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn copy_fields_escape_backslash_tab_newline_and_carriage_return() {
        assert_eq!(copy_field("plain é 🎉"), "plain é 🎉");
        assert_eq!(copy_field("a\\b"), "a\\\\b");
        assert_eq!(copy_field("\\N"), "\\\\N", "not the NULL marker");
        assert_eq!(copy_field("\\."), "\\\\.", "not the end-of-data marker");
        assert_eq!(copy_field("a\tb\nc\rd"), "a\\tb\\nc\\rd");
        assert_eq!(copy_field("\t\n\r\\"), "\\t\\n\\r\\\\");
        for hostile in [
            "\\",
            "\\\\t",
            "x\\\ty",
            "\r\n",
            "end\\",
            "\\\n.",
            "tab\tin\tname",
            "' OR 1=1; --",
        ] {
            let field = copy_field(hostile);
            assert_eq!(decode_copy_field(&field), hostile, "{field:?}");
        }
    }
}
