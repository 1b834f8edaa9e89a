//! Every kind of change an entity can make, through `cargo migrate autogenerate`, on
//! PostgreSQL and SQLite, on tables that hold rows (100,000 users).
//!
//! Three steps, each a batch of changes to the entities of one scratch copy of the crates
//! (see [`Scratch`]), built once per step in the shared scratch target:
//!
//! 1. **adds**: a column of every supported type on `user` (nullable; `NOT NULL` with constant
//!    defaults; `NOT NULL` with expression defaults, among them the `created_on` date of the
//!    seed's workflow), a native enum column (a new enum type), a unique constraint and an
//!    index on existing columns, names with one-letter words, and new tables: a
//!    self-referencing one, one referenced by a join table, and the join table with a
//!    composite primary key and two foreign keys;
//! 2. **alters**: narrowing and widening, `NULL` → `NOT NULL` and back, a unique constraint and
//!    an index removed, a rename declared with `renamed_from`, a nullable column dropped, a
//!    value added to the enum type;
//! 3. **drops**: a table, a `NOT NULL` column without a default (whose `down` cannot restore
//!    it while the table has rows, and is flagged so), an enum column with its type, and a
//!    probable rename without `renamed_from` (the output suggests it).
//!
//! Then a field autogenerate cannot write (an array): it refuses before writing any file, and
//! `check` reports what it cannot model rather than failing.
//!
//! For each step, on both backends: `autogenerate` (compared on PostgreSQL) writes the
//! migration, `check` is clean after it, `up` keeps the rows, `down` gives back the schema
//! dump of before, and the `up --sql` script applied by `psql`/`sqlite3` to a twin database
//! holding the same rows gives the schema of `up`. At the end the generated files pass
//! `cargo clippy -D warnings` with the project's lints.

use std::process::Command;

use test_support::{TestBackend, TestDatabase};

use crate::autogenerate::{Scratch, shared_target};
use crate::migrator_cli::apply_script;
use crate::sql::{execute, query_text};

const USERS: u32 = 100_000;

/// The `user` entity after step 1 (`{extra}` is where later steps change fields).
fn user_entity(fields: &str, mood_values: &[&str]) -> String {
    let variants: String = mood_values
        .iter()
        .map(|v| {
            let mut chars = v.chars();
            let first = chars.next().unwrap().to_ascii_uppercase();
            format!(
                "    #[sea_orm(string_value = \"{v}\")]\n    {first}{},\n",
                chars.as_str()
            )
        })
        .collect();
    format!(
        r#"//! A user.

use sea_orm::entity::prelude::*;
use serde::{{Deserialize, Serialize}};

#[derive(Debug, Clone, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "Enum", enum_name = "mood")]
pub enum Mood {{
{variants}}}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "user")]
pub struct Model {{
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(column_type = "String(StringLen::N(255))", unique)]
    pub email: String,
{fields}    #[sea_orm(default_expr = "Expr::current_timestamp()")]
    pub created_at: DateTimeWithTimeZone,
    #[sea_orm(default_expr = "Expr::current_timestamp()")]
    pub updated_at: DateTimeWithTimeZone,
}}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {{}}

impl ActiveModelBehavior for ActiveModel {{}}
"#
    )
}

/// Step 1: every field of `user` but the key, email and timestamps.
const USER_FIELDS_1: &str = r#"    #[sea_orm(column_type = "String(StringLen::N(255))", unique)]
    pub name: String,
    pub nick: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub bio: Option<String>,
    #[sea_orm(column_type = "String(StringLen::N(64))")]
    pub code: Option<String>,
    #[sea_orm(column_type = "String(StringLen::N(50))")]
    pub title: Option<String>,
    #[sea_orm(column_type = "Char(Some(2))")]
    pub initials: Option<String>,
    pub age: Option<i16>,
    pub visits: Option<i32>,
    pub big: Option<i64>,
    pub ratio: Option<f32>,
    pub score: Option<f64>,
    pub active: Option<bool>,
    pub birthday: Option<Date>,
    pub wakes_at: Option<Time>,
    pub seen_at: Option<DateTime>,
    pub seen_tz: Option<DateTimeWithTimeZone>,
    pub avatar: Option<Vec<u8>>,
    #[sea_orm(column_type = "Decimal(Some((10, 2)))")]
    pub price: Option<Decimal>,
    pub token: Option<Uuid>,
    pub meta: Option<Json>,
    #[sea_orm(column_type = "JsonBinary")]
    pub meta_b: Option<Json>,
    pub mood: Option<Mood>,
    pub pos_x_y: Option<i32>,
    pub c_i64: Option<i64>,
    pub a_b_c: Option<String>,
    #[sea_orm(default_value = 0, indexed)]
    pub rank: i32,
    #[sea_orm(column_type = "String(StringLen::N(20))", default_value = "new")]
    pub status: String,
    #[sea_orm(default_value = false)]
    pub verified: bool,
    #[sea_orm(default_expr = "Expr::current_date()")]
    pub created_on: Date,
    #[sea_orm(default_expr = "Expr::current_timestamp()")]
    pub touched_at: DateTimeWithTimeZone,
"#;

/// Step 2: narrowed `code`, widened `title` and `visits`, `bio` NOT NULL, `status` nullable,
/// no unique on `name`, no index on `rank`, `nick` renamed `nickname`, `seen_at` dropped.
const USER_FIELDS_2: &str = r#"    #[sea_orm(column_type = "String(StringLen::N(255))")]
    pub name: String,
    #[sea_orm(renamed_from = "nick")]
    pub nickname: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub bio: String,
    #[sea_orm(column_type = "String(StringLen::N(16))")]
    pub code: Option<String>,
    #[sea_orm(column_type = "String(StringLen::N(200))")]
    pub title: Option<String>,
    #[sea_orm(column_type = "Char(Some(2))")]
    pub initials: Option<String>,
    pub age: Option<i16>,
    pub visits: Option<i64>,
    pub big: Option<i64>,
    pub ratio: Option<f32>,
    pub score: Option<f64>,
    pub active: Option<bool>,
    pub birthday: Option<Date>,
    pub wakes_at: Option<Time>,
    pub seen_tz: Option<DateTimeWithTimeZone>,
    pub avatar: Option<Vec<u8>>,
    #[sea_orm(column_type = "Decimal(Some((10, 2)))")]
    pub price: Option<Decimal>,
    pub token: Option<Uuid>,
    pub meta: Option<Json>,
    #[sea_orm(column_type = "JsonBinary")]
    pub meta_b: Option<Json>,
    pub mood: Option<Mood>,
    pub pos_x_y: Option<i32>,
    pub c_i64: Option<i64>,
    pub a_b_c: Option<String>,
    #[sea_orm(default_value = 0)]
    pub rank: i32,
    #[sea_orm(column_type = "String(StringLen::N(20))", default_value = "new")]
    pub status: Option<String>,
    #[sea_orm(default_value = false)]
    pub verified: bool,
    #[sea_orm(default_expr = "Expr::current_date()")]
    pub created_on: Date,
    #[sea_orm(default_expr = "Expr::current_timestamp()")]
    pub touched_at: DateTimeWithTimeZone,
"#;

/// Step 3: `bio` (NOT NULL, no default) and `mood` dropped, `a_b_c` replaced by `abc`.
fn user_fields_3() -> String {
    USER_FIELDS_2
        .replace(
            "    #[sea_orm(column_type = \"Text\")]\n    pub bio: String,\n",
            "",
        )
        .replace("    pub mood: Option<Mood>,\n", "")
        .replace("pub a_b_c: Option<String>", "pub abc: Option<String>")
}

const TAG: &str = r#"//! A tag.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tag")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub label: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
"#;

const CATEGORY: &str = r#"//! A category, under another one.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "category")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub parent_id: Option<i32>,
    pub label: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "Entity",
        from = "Column::ParentId",
        to = "Column::Id",
        on_delete = "SetNull"
    )]
    Parent,
}

impl ActiveModelBehavior for ActiveModel {}
"#;

const USER_TAG: &str = r#"//! A tag of a user: a join table with a composite primary key.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_tag")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub tag_id: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::UserId",
        to = "super::user::Column::Id",
        on_delete = "Cascade"
    )]
    User,
    #[sea_orm(
        belongs_to = "super::tag::Entity",
        from = "Column::TagId",
        to = "super::tag::Column::Id",
        on_delete = "Cascade"
    )]
    Tag,
}

impl ActiveModelBehavior for ActiveModel {}
"#;

/// A database of one backend and its twin, which gets the same rows and the `up --sql`
/// scripts instead of `up`.
struct Pair {
    backend: TestBackend,
    url: String,
    twin: String,
    _held: Vec<TestDatabase>,
}

impl Pair {
    async fn new(scratch: &Scratch, backend: TestBackend) -> Self {
        match backend {
            TestBackend::Postgres => {
                let (a, b) = (
                    TestDatabase::empty(TestBackend::Postgres).await,
                    TestDatabase::empty(TestBackend::Postgres).await,
                );
                Self {
                    backend,
                    url: a.config().url.expose_secret().to_string(),
                    twin: b.config().url.expose_secret().to_string(),
                    _held: vec![a, b],
                }
            }
            TestBackend::Sqlite => {
                let file = |name: &str| {
                    let path = scratch.path(name);
                    let _ = std::fs::remove_file(&path);
                    format!("sqlite://{}?mode=rwc", path.display())
                };
                Self {
                    backend,
                    url: file("matrix.sqlite"),
                    twin: file("matrix-twin.sqlite"),
                    _held: Vec::new(),
                }
            }
        }
    }

    fn name(&self) -> &'static str {
        match self.backend {
            TestBackend::Postgres => "PostgreSQL",
            TestBackend::Sqlite => "SQLite",
        }
    }

    /// Runs `sql` (one of `[postgres, sqlite]`) on both databases.
    async fn seed(&self, sql: [&str; 2]) {
        let sql = match self.backend {
            TestBackend::Postgres => sql[0],
            TestBackend::Sqlite => sql[1],
        };
        for url in [&self.url, &self.twin] {
            execute(url, sql).await;
        }
    }

    async fn value(&self, sql: &str) -> String {
        query_text(&self.url, sql).await
    }
}

/// One step: `up` on each database's main copy keeps what `rows` says, `down` gives back the
/// schema of before, `up` again; the `up --sql` script gives the twin the same schema.
/// `migrations` is how many files the step wrote.
async fn round_trip(scratch: &Scratch, pairs: &[Pair], step: &str, migrations: usize) {
    let count = migrations.to_string();
    for pair in pairs {
        let at = format!("{step} on {}", pair.name());
        let before = scratch.ok(&at, &pair.url, &["schema"]);
        let script = scratch.ok(&at, &pair.url, &["up", "--sql"]);
        scratch.ok(&at, &pair.url, &["up"]);
        let after = scratch.ok(&at, &pair.url, &["schema"]);
        assert_ne!(before, after, "{at}: up changed the schema");
        scratch.ok(&at, &pair.url, &["down", "-n", &count]);
        let undone = scratch.ok(&at, &pair.url, &["schema"]);
        assert_eq!(before, undone, "{at}: down gives back the schema of before");
        scratch.ok(&at, &pair.url, &["up"]);
        apply_script(&pair.twin, script.as_bytes());
        let offline = scratch.ok(&at, &pair.twin, &["schema"]);
        assert_eq!(
            after, offline,
            "{at}: `up --sql` applied as a script is `up`"
        );
    }
}

/// `autogenerate NAME` on PostgreSQL: the files it wrote (name, text) and what it printed.
fn autogenerate(scratch: &Scratch, pg: &str, name: &str) -> (Vec<String>, String) {
    let before = scratch.migrations();
    let printed = scratch.ok(name, pg, &["autogenerate", name]);
    let sources = scratch
        .migrations()
        .into_iter()
        .filter(|m| !before.contains(m))
        .map(|m| std::fs::read_to_string(scratch.path(&format!("migration/src/{m}"))).unwrap())
        .collect();
    (sources, printed)
}

/// Asserts that the generated `source` has `expected`, whitespace and trailing commas aside
/// (the files are formatted by rustfmt).
fn assert_has(source: &str, expected: &str) {
    let squash = |s: &str| {
        s.split_whitespace()
            .collect::<String>()
            .replace(",)", ")")
            .replace(",]", "]")
    };
    assert!(
        squash(source).contains(&squash(expected)),
        "{expected}:\n{source}"
    );
}

fn assert_check_clean(scratch: &Scratch, pg: &str, step: &str) {
    for (code, out) in scratch.check(pg) {
        assert_eq!(code, Some(0), "check after {step}: {out}");
    }
}

fn set_entities(scratch: &Scratch, modules: &[&str]) {
    let lib = scratch.path("entity/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    let start = text.find("entities! {").unwrap();
    let end = start + text[start..].find('}').unwrap();
    let list: String = modules
        .iter()
        .map(|m| format!("    pub mod {m};\n"))
        .collect();
    std::fs::write(
        &lib,
        format!("{}entities! {{\n{list}{}", &text[..start], &text[end..]),
    )
    .unwrap();
}

#[tokio::test]
#[expect(
    clippy::await_holding_lock,
    reason = "the lock serialises whole tests, each on a runtime of its own"
)]
async fn every_kind_of_entity_change_round_trips_on_tables_with_rows_on_both_backends() {
    let _target = shared_target();
    let started = std::time::Instant::now();
    let lap = |step: &str| {
        eprintln!(
            "autogenerate matrix: {step} done at {:?}",
            started.elapsed()
        )
    };
    let scratch = Scratch::named("autogen-matrix");
    let pairs = [
        Pair::new(&scratch, TestBackend::Postgres).await,
        Pair::new(&scratch, TestBackend::Sqlite).await,
    ];
    let pg = pairs[0].url.clone();
    scratch.build("main");
    for pair in &pairs {
        scratch.ok("main", &pair.url, &["up"]);
        scratch.ok("main", &pair.twin, &["up"]);
    }
    // 100,000 users (ten more inserted and deleted, so that SQLite's AUTOINCREMENT counter is
    // ahead of the highest id: a table rebuild must keep it).
    for pair in &pairs {
        pair.seed([
            &format!(
                "INSERT INTO \"user\" (email, name) SELECT 'u' || i || '@x.io', 'n' || i \
                 FROM generate_series(1, {USERS} + 10) AS s(i); \
                 DELETE FROM \"user\" WHERE id > {USERS}"
            ),
            &format!(
                "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {USERS} + 10) \
                 INSERT INTO \"user\" (email, name) SELECT 'u' || i || '@x.io', 'n' || i FROM s; \
                 DELETE FROM \"user\" WHERE id > {USERS}"
            ),
        ])
        .await;
    }
    let users = USERS.to_string();

    lap("setup");

    // 1. Adds.
    std::fs::write(
        scratch.path("entity/src/user.rs"),
        user_entity(USER_FIELDS_1, &["happy", "sad"]),
    )
    .unwrap();
    for (module, text) in [("tag", TAG), ("category", CATEGORY), ("user_tag", USER_TAG)] {
        std::fs::write(scratch.path(&format!("entity/src/{module}.rs")), text).unwrap();
    }
    set_entities(&scratch, &["category", "tag", "user", "user_tag"]);
    scratch.build("adds");
    for (code, out) in scratch.check(&pg) {
        assert_eq!(code, Some(5), "check names the additions: {out}");
        assert!(out.contains("user.created_on"), "{out}");
    }
    // Compared on SQLite, the same additions make the same steps (the files are read and
    // removed again: the migration the test goes on with is PostgreSQL's).
    let lib = std::fs::read_to_string(scratch.path("migration/src/lib.rs")).unwrap();
    let before = scratch.migrations();
    let printed = scratch.ok(
        "adds on SQLite",
        "sqlite::memory:",
        &["autogenerate", "adds"],
    );
    let written: Vec<String> = scratch
        .migrations()
        .into_iter()
        .filter(|m| !before.contains(m))
        .collect();
    assert_eq!(written.len(), 2, "{printed}");
    let on_sqlite =
        std::fs::read_to_string(scratch.path(&format!("migration/src/{}", written[0]))).unwrap();
    for expected in [
        "enums::create_type(manager, \"mood\", &[\"happy\", \"sad\"])",
        "enumeration_null(User::Mood, Alias::new(\"mood\"), [Alias::new(\"happy\"), Alias::new(\"sad\")])",
        ".primary_key(Index::create().col(UserTag::UserId).col(UserTag::TagId))",
        "date(User::CreatedOn).default(Expr::current_date()).take()",
        "ColumnType::VarBinary(StringLen::None)",
        "decimal_len_null(User::Price, 10, 2)",
        "json_binary_null(User::MetaB)",
        ".add_unique([User::Name])",
    ] {
        assert_has(&on_sqlite, expected);
    }
    for file in &written {
        std::fs::remove_file(scratch.path(&format!("migration/src/{file}"))).unwrap();
    }
    std::fs::write(scratch.path("migration/src/lib.rs"), lib).unwrap();

    let (sources, printed) = autogenerate(&scratch, &pg, "adds");
    assert_eq!(
        sources.len(),
        2,
        "the index on user goes to a migration of its own:\n{printed}"
    );
    for expected in [
        "enums::create_type(manager, \"mood\", &[\"happy\", \"sad\"])",
        "enumeration_null(User::Mood, Alias::new(\"mood\"), [Alias::new(\"happy\"), Alias::new(\"sad\")])",
        ".primary_key(Index::create().col(UserTag::UserId).col(UserTag::TagId))",
        ".to(Category::Table, Category::Id)",
        "date(User::CreatedOn).default(Expr::current_date()).take()",
        "ColumnType::VarBinary(StringLen::None)",
        "decimal_len_null(User::Price, 10, 2)",
        "uuid_null(User::Token)",
        "json_null(User::Meta)",
        "json_binary_null(User::MetaB)",
        "#[sea_orm(iden = \"pos_x_y\")]",
        "#[sea_orm(iden = \"c_i64\")]",
        "#[sea_orm(iden = \"a_b_c\")]",
        ".add_unique([User::Name])",
    ] {
        assert_has(&sources[0], expected);
    }
    assert_has(&sources[1], "online::create_index(");
    scratch.build("adds written");
    assert_check_clean(&scratch, &pg, "adds");
    let sequence_before = pairs[1]
        .value("SELECT CAST(seq AS TEXT) FROM sqlite_sequence WHERE name = 'user'")
        .await;
    round_trip(&scratch, &pairs, "adds", 2).await;
    for pair in &pairs {
        let at = pair.name();
        assert_eq!(
            pair.value("SELECT CAST(count(*) AS TEXT) FROM \"user\"")
                .await,
            users,
            "{at}: the users are all there"
        );
        assert_eq!(
            pair.value(
                "SELECT CAST(count(*) AS TEXT) FROM \"user\" WHERE created_on IS NULL \
                 OR touched_at IS NULL OR status <> 'new' OR rank <> 0"
            )
            .await,
            "0",
            "{at}: every existing row got the NOT NULL columns' defaults"
        );
        assert_eq!(
            pair.value("SELECT email FROM \"user\" WHERE id = 4242")
                .await,
            "u4242@x.io",
            "{at}"
        );
    }
    assert_eq!(
        pairs[1]
            .value("SELECT CAST(seq AS TEXT) FROM sqlite_sequence WHERE name = 'user'")
            .await,
        sequence_before,
        "SQLite: rebuilding user keeps its AUTOINCREMENT counter"
    );
    let fill = "UPDATE \"user\" SET nick = 'k' || id, bio = 'b', code = 'c' || id, price = 1.5, \
                 title = 't', seen_at = '2026-01-01 00:00:00', a_b_c = 'x', pos_x_y = 7; \
                 UPDATE \"user\" SET mood = 'happy' WHERE id <= 10; \
                 INSERT INTO tag (label) VALUES ('a'), ('b'); \
                 INSERT INTO category (label, parent_id) VALUES ('root', NULL); \
                 INSERT INTO category (label, parent_id) VALUES ('child', 1); \
                 INSERT INTO user_tag (user_id, tag_id) VALUES (1, 1), (1, 2), (2, 1)";
    for pair in &pairs {
        pair.seed([fill, fill]).await;
    }

    lap("adds");

    // 2. Alters.
    std::fs::write(
        scratch.path("entity/src/user.rs"),
        user_entity(USER_FIELDS_2, &["happy", "sad", "calm"]),
    )
    .unwrap();
    scratch.build("alters");
    let (sources, printed) = autogenerate(&scratch, &pg, "alters");
    assert_eq!(sources.len(), 1, "{printed}");
    for expected in [
        ".rename_column(User::Nick, User::Nickname)",
        ".alter_column(string_len_null(User::Code, 16))",
        ".alter_column(string_len_null(User::Title, 200))",
        ".alter_column(big_integer_null(User::Visits))",
        ".alter_column(text(User::Bio))",
        ".drop_unique([User::Name])",
        "enums::add_values(manager, \"mood\", &[\"calm\"])",
        "enums::set_values(manager, \"mood\", &[\"happy\", \"sad\"])",
        ".drop_column(User::SeenAt)",
    ] {
        assert_has(&sources[0], expected);
    }
    for destructive in ["narrows user.code", "user.bio NOT NULL", "user.seen_at"] {
        assert!(
            printed
                .lines()
                .any(|l| l.starts_with("  DESTRUCTIVE") && l.contains(destructive)),
            "{destructive}:\n{printed}"
        );
    }
    scratch.build("alters written");
    assert_check_clean(&scratch, &pg, "alters");
    round_trip(&scratch, &pairs, "alters", 1).await;
    for pair in &pairs {
        let at = pair.name();
        assert_eq!(
            pair.value("SELECT nickname FROM \"user\" WHERE id = 5")
                .await,
            "k5",
            "{at}: the renamed column kept its data"
        );
        assert_eq!(
            pair.value(
                "SELECT CAST(count(*) AS TEXT) FROM \"user\" \
                 WHERE bio = 'b' AND code = 'c' || id AND price = 1.5"
            )
            .await,
            users,
            "{at}: the altered columns kept their data"
        );
        assert_eq!(
            pair.value("SELECT CAST(count(*) AS TEXT) FROM user_tag")
                .await,
            "3",
            "{at}: the join table's rows survived rebuilding the tables it references"
        );
        assert_eq!(
            pair.value("SELECT CAST(parent_id AS TEXT) FROM category WHERE label = 'child'")
                .await,
            "1",
            "{at}"
        );
    }

    lap("alters");

    // 3. Drops.
    std::fs::write(
        scratch.path("entity/src/user.rs"),
        user_entity(&user_fields_3(), &["happy", "sad", "calm"]),
    )
    .unwrap();
    std::fs::remove_file(scratch.path("entity/src/user_tag.rs")).unwrap();
    set_entities(&scratch, &["category", "tag", "user"]);
    scratch.build("drops");
    let (sources, printed) = autogenerate(&scratch, &pg, "drops");
    assert_eq!(sources.len(), 1, "{printed}");
    for expected in [
        "REVIEW (not restorable): `down` cannot restore user.bio",
        ".primary_key(Index::create().col(UserTag::UserId).col(UserTag::TagId))",
        "enums::drop_type(manager, \"mood\")",
        "enums::create_type(manager, \"mood\", &[\"happy\", \"sad\", \"calm\"])",
    ] {
        assert_has(&sources[0], expected);
    }
    for expected in [
        "`down` cannot restore user.bio",
        "declare `#[sea_orm(renamed_from = \"a_b_c\")]` on the field `abc`",
        "table user_tag",
    ] {
        assert!(
            printed
                .lines()
                .any(|l| l.starts_with("  DESTRUCTIVE") && l.contains(expected)),
            "{expected}:\n{printed}"
        );
    }
    scratch.build("drops written");
    assert_check_clean(&scratch, &pg, "drops");
    for pair in &pairs {
        let at = format!("drops on {}", pair.name());
        let before = scratch.ok(&at, &pair.url, &["schema"]);
        let script = scratch.ok(&at, &pair.url, &["up", "--sql"]);
        scratch.ok(&at, &pair.url, &["up"]);
        let after = scratch.ok(&at, &pair.url, &["schema"]);
        assert_eq!(
            pair.value("SELECT CAST(count(*) AS TEXT) FROM \"user\"")
                .await,
            users,
            "{at}"
        );
        // As flagged: `down` cannot add user.bio back while user has rows…
        let down = scratch.migrator(&pair.url, &["down"]);
        assert_eq!(down.status.code(), Some(1), "{at}: down fails, as flagged");
        assert!(
            String::from_utf8_lossy(&down.stderr).contains("bio"),
            "{at}: {}",
            String::from_utf8_lossy(&down.stderr)
        );
        assert_eq!(
            scratch.ok(&at, &pair.url, &["schema"]),
            after,
            "{at}: and changes nothing"
        );
        // …and gives back the schema of before once it has none.
        execute(&pair.url, "DELETE FROM \"user\"").await;
        scratch.ok(&at, &pair.url, &["down"]);
        assert_eq!(scratch.ok(&at, &pair.url, &["schema"]), before, "{at}");
        apply_script(&pair.twin, script.as_bytes());
        assert_eq!(
            scratch.ok(&at, &pair.twin, &["schema"]),
            after,
            "{at}: `up --sql`"
        );
    }

    lap("drops");

    // A field autogenerate cannot write (an array): it refuses before writing any file,
    // naming the entity and the field; `check` on SQLite, which cannot hold the table at all,
    // reports that and does not fail.
    std::fs::write(
        scratch.path("entity/src/user.rs"),
        user_entity(
            &format!("{}    pub tags: Option<Vec<String>>,\n", user_fields_3()),
            &["happy", "sad", "calm"],
        ),
    )
    .unwrap();
    scratch.build("refused");
    let before = scratch.migrations();
    let refused = scratch.migrator(&pg, &["autogenerate", "tags"]);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{message}");
    assert!(
        message.contains("autogenerate wrote nothing")
            && message.contains("entity `user`, field `tags`")
            && message.contains("by hand"),
        "{message}"
    );
    assert_eq!(scratch.migrations(), before, "no file written");
    let [(pg_code, pg_out), (sqlite_code, sqlite_out)] = scratch.check(&pg);
    assert_eq!(pg_code, Some(5), "{pg_out}");
    assert!(
        pg_out.contains("column user.tags: new in the entities"),
        "{pg_out}"
    );
    assert_eq!(sqlite_code, Some(5), "{sqlite_out}");
    assert!(
        sqlite_out.contains("user: the entity's table cannot be created on SQLite"),
        "{sqlite_out}"
    );
    lap("refusal");

    // The generated files are formatted and pass the project's lints.
    let fmt = Command::new(env!("CARGO"))
        .args(["fmt", "-p", "migration", "--", "--check"])
        .current_dir(scratch.path(""))
        .output()
        .unwrap();
    assert!(
        fmt.status.success(),
        "rustfmt on the generated migrations:\n{}",
        String::from_utf8_lossy(&fmt.stdout)
    );
    let clippy = Command::new(env!("CARGO"))
        .args([
            "clippy",
            "--offline",
            "-q",
            "-p",
            "migration",
            "--",
            "-D",
            "warnings",
        ])
        .current_dir(scratch.path(""))
        .env("CARGO_TARGET_DIR", scratch.target())
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        clippy.status.success(),
        "clippy on the generated migrations:\n{}",
        String::from_utf8_lossy(&clippy.stderr)
    );
    lap("fmt and clippy");
}
