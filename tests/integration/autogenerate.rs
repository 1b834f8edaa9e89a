//! Model-first migrations end to end, on PostgreSQL and SQLite: edit an entity, `check` names
//! the difference, `autogenerate` writes a migration, the rebuilt migrator agrees with the
//! entities, and the migration goes `up` and `down` leaving the schema as it was.
//!
//! Everything happens in a scratch copy of the crates the migrator needs under
//! the test's temporary folder, never in this repository's sources. The copy is compiled with
//! its own target folder (`$HOME/.cache/db-autogen-scratch-target`, kept between runs, so only
//! the first run compiles the dependencies), and reused by every step: one test walks the
//! steps in order, each building on the last.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use test_support::{TestBackend, TestDatabase};

use crate::sql::{execute, query_text};

pub(crate) struct Scratch {
    root: PathBuf,
    target: PathBuf,
}

/// Held by each test that builds a scratch copy in the shared target folder, for its whole
/// run: the copies share the compiled dependencies, but never build or run each other's
/// migrator binary.
pub(crate) fn shared_target() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Scratch {
    /// A fresh copy of the crates the migrator needs, as a workspace of its own.
    fn new() -> Self {
        Self::named("autogen-scratch")
    }

    /// [`Scratch::new`] in a folder of the given name: copies side by side share the target
    /// folder, as checkouts with a global `target-dir` do.
    pub(crate) fn named(name: &str) -> Self {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = std::fs::remove_dir_all(&root);
        for dir in [
            ".cargo",
            "connection",
            "entity",
            "migrator",
            "migration",
            "settings",
        ] {
            copy_dir(&repo.join(dir), &root.join(dir));
        }
        for file in ["Cargo.lock", "rustfmt.toml"] {
            std::fs::copy(repo.join(file), root.join(file)).unwrap();
        }
        let manifest = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap();
        let workspace = &manifest[manifest.find("[workspace]").unwrap()..];
        let workspace = workspace.replace(
            &workspace[workspace.find("members").unwrap()..][..=workspace
                [workspace.find("members").unwrap()..]
                .find(']')
                .unwrap()],
            r#"members = ["connection", "entity", "migrator", "migration", "settings"]"#,
        );
        std::fs::write(root.join("Cargo.toml"), workspace).unwrap();
        let target = std::env::var_os("HOME").map_or_else(
            || root.with_file_name("autogen-scratch-target"),
            |home| PathBuf::from(home).join(".cache/db-autogen-scratch-target"),
        );
        Self { root, target }
    }

    /// The same copy built in `target` instead (a folder of its own, so that concurrent
    /// tests never swap each other's migrator binary).
    pub(crate) fn with_target(mut self, target: PathBuf) -> Self {
        self.target = target;
        self
    }

    pub(crate) fn target(&self) -> &Path {
        &self.target
    }

    pub(crate) fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Compiles the scratch migrator; panics with the compiler's output if it fails.
    pub(crate) fn build(&self, step: &str) {
        let output = Command::new(env!("CARGO"))
            .args([
                "build",
                "--offline",
                "-q",
                "-p",
                "migration",
                "--bin",
                "migration",
            ])
            .current_dir(&self.root)
            .env("CARGO_TARGET_DIR", &self.target)
            .env("CARGO_PROFILE_DEV_DEBUG", "0")
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{step}: the scratch crate does not compile:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub(crate) fn migrator(&self, url: &str, args: &[&str]) -> Output {
        Command::new(self.target.join("debug/migration"))
            .arg("-u")
            .arg(url)
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("SHADOW_DATABASE_URL")
            .env_remove("DATABASE_SCHEMA")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs the migrator and returns its stdout; panics naming the step if it fails.
    pub(crate) fn ok(&self, step: &str, url: &str, args: &[&str]) -> String {
        let output = self.migrator(url, args);
        assert!(
            output.status.success(),
            "{step}: `{}` failed ({:?}):\n{}{}",
            args.join(" "),
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub(crate) fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.path(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no `{from}`");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    pub(crate) fn migrations(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("migration/src"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.starts_with('m') && n.ends_with(".rs") && n.as_bytes()[1].is_ascii_digit()
            })
            .collect();
        names.sort();
        names
    }

    /// Runs `autogenerate NAME` and returns the one file it wrote and what it printed.
    fn autogenerate(&self, url: &str, name: &str) -> (String, String) {
        let before = self.migrations();
        let printed = self.ok(name, url, &["autogenerate", name]);
        let after = self.migrations();
        let new: Vec<&String> = after.iter().filter(|m| !before.contains(m)).collect();
        assert_eq!(
            new.len(),
            1,
            "{name}: one migration written: {new:?}\n{printed}"
        );
        assert!(new[0].ends_with(&format!("_{name}.rs")));
        let source =
            std::fs::read_to_string(self.path(&format!("migration/src/{}", new[0]))).unwrap();
        (source, printed)
    }

    /// `check` on both backends; returns (exit code, stdout) for each.
    pub(crate) fn check(&self, pg: &str) -> [(Option<i32>, String); 2] {
        [pg, "sqlite::memory:"].map(|url| {
            let output = self.migrator(url, &["check"]);
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
            )
        })
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&path, &to.join(entry.file_name()));
            }
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

/// A database of each backend to run one round trip on.
struct Databases {
    pg: TestDatabase,
    sqlite: PathBuf,
}

impl Databases {
    async fn new(scratch: &Scratch, name: &str) -> Self {
        let sqlite = scratch.path(&format!("{name}.sqlite"));
        let _ = std::fs::remove_file(&sqlite);
        Self {
            pg: TestDatabase::empty(TestBackend::Postgres).await,
            sqlite,
        }
    }

    fn urls(&self) -> [String; 2] {
        [
            self.pg.config().url.expose_secret().to_string(),
            format!("sqlite://{}?mode=rwc", self.sqlite.display()),
        ]
    }
}

/// `up` to the migration before `name`, dump, `up`, `down`, dump again: the two dumps must be
/// equal. Returns the databases (migrated to the end) and, per backend, the URL and the dump
/// after `up`, for the caller's own checks.
async fn round_trip(
    scratch: &Scratch,
    name: &str,
    seed: Option<&str>,
) -> (Databases, Vec<(String, String)>) {
    let dbs = Databases::new(scratch, name).await;
    let all = scratch.migrations();
    let previous = all[all.len() - 2].trim_end_matches(".rs").to_owned();
    let mut after_up = Vec::new();
    for url in dbs.urls() {
        let step = format!("{name} on {}", &url[..url.find(':').unwrap()]);
        scratch.ok(&step, &url, &["up", "--to", &previous]);
        if let Some(seed) = seed {
            execute(&url, seed).await;
        }
        let before = scratch.ok(&step, &url, &["schema"]);
        scratch.ok(&step, &url, &["up"]);
        let applied = scratch.ok(&step, &url, &["schema"]);
        assert_ne!(before, applied, "{step}: up changed the schema");
        scratch.ok(&step, &url, &["down"]);
        let after = scratch.ok(&step, &url, &["schema"]);
        assert_eq!(before, after, "{step}: down restores the schema exactly");
        scratch.ok(&step, &url, &["up"]);
        after_up.push((url, applied));
    }
    (dbs, after_up)
}

const POST: &str = r#"//! A post.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "post")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub user_id: i32,
    #[sea_orm(column_type = "String(StringLen::N(255))")]
    pub title: String,
    pub summary: Option<String>,
    pub notes: Option<String>,
    pub legacy: Option<i32>,
    #[sea_orm(default_expr = "Expr::current_timestamp()")]
    pub created_at: DateTimeWithTimeZone,
    #[sea_orm(default_expr = "Expr::current_timestamp()")]
    pub updated_at: DateTimeWithTimeZone,
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
}

impl ActiveModelBehavior for ActiveModel {}
"#;

#[tokio::test]
#[expect(
    clippy::await_holding_lock,
    reason = "the lock serialises whole tests, each on a runtime of its own"
)]
async fn entities_drive_migrations_that_round_trip_on_postgres_and_sqlite() {
    let _target = shared_target();
    let scratch = Scratch::new();
    let server = TestDatabase::empty(TestBackend::Postgres).await;
    let pg = server.config().url.expose_secret().to_string();

    // The repository as it is: the entities and the migrations agree.
    scratch.build("main");
    for (code, out) in scratch.check(&pg) {
        assert_eq!(code, Some(0), "check on main: {out}");
    }

    // 1. A new nullable column.
    scratch.edit(
        "entity/src/user.rs",
        "    pub name: String,\n",
        "    pub name: String,\n    pub bio: Option<String>,\n",
    );
    scratch.build("add bio");
    for (code, out) in scratch.check(&pg) {
        assert_eq!(code, Some(5), "check names the new column: {out}");
        assert!(out.contains("user.bio"), "{out}");
    }
    let (source, _) = scratch.autogenerate(&pg, "add_user_bio");
    assert!(
        source.contains(".add_column(string_null(User::Bio))"),
        "{source}"
    );
    scratch.build("add_user_bio");
    for (code, out) in scratch.check(&pg) {
        assert_eq!(code, Some(0), "check after add_user_bio: {out}");
    }
    let (_dbs, migrated) = round_trip(&scratch, "add_user_bio", None).await;
    for (url, schema) in migrated {
        assert!(schema.contains("user.bio"), "{url}: {schema}");
    }

    // 2. A new table with a foreign key and timestamps.
    std::fs::write(scratch.path("entity/src/post.rs"), POST).unwrap();
    scratch.edit(
        "entity/src/lib.rs",
        "pub mod user;",
        "pub mod post;\npub mod user;",
    );
    scratch.edit(
        "entity/src/prelude.rs",
        "pub use super::user",
        "pub use super::post::Entity as Post;\npub use super::user",
    );
    scratch.build("add post");
    for (code, out) in scratch.check(&pg) {
        assert_eq!(code, Some(5), "check names the new table: {out}");
        assert!(out.contains("table post"), "{out}");
    }
    let (source, _) = scratch.autogenerate(&pg, "create_post_table");
    for expected in [
        "timestamps::create_table(",
        ".to(User::Table, User::Id)",
        ".on_delete(ForeignKeyAction::Cascade)",
        "timestamps::drop_table(manager, Post::Table)",
    ] {
        assert!(source.contains(expected), "{expected}:\n{source}");
    }
    scratch.build("create_post_table");
    for (code, out) in scratch.check(&pg) {
        assert_eq!(code, Some(0), "check after create_post_table: {out}");
    }
    let (_dbs, migrated) = round_trip(&scratch, "create_post_table", None).await;
    for (url, schema) in migrated {
        assert!(schema.contains("post"), "{url}: {schema}");
        // The trigger keeps updated_at current for a raw UPDATE, on both backends.
        execute(
            &url,
            "INSERT INTO \"user\" (email, name) VALUES ('ada@x.io', 'Ada'); \
             INSERT INTO post (user_id, title) VALUES (1, 'first')",
        )
        .await;
        let before = query_text(&url, "SELECT CAST(updated_at AS TEXT) FROM post").await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        execute(&url, "UPDATE post SET title = 'second'").await;
        let after = query_text(&url, "SELECT CAST(updated_at AS TEXT) FROM post").await;
        assert_ne!(before, after, "{url}: updated_at moved");
    }

    // 3. A type change, a nullability change, a rename and a dropped column on `post`, and a
    //    narrowed type on `user`, which `post` references (on SQLite both tables are rebuilt;
    //    the referencing rows must survive).
    scratch.edit(
        "entity/src/post.rs",
        "    #[sea_orm(column_type = \"String(StringLen::N(255))\")]\n    pub title: String,\n    pub summary: Option<String>,\n    pub notes: Option<String>,\n    pub legacy: Option<i32>,\n",
        "    #[sea_orm(column_type = \"Text\")]\n    pub title: String,\n    pub summary: String,\n    #[sea_orm(renamed_from = \"notes\")]\n    pub remarks: Option<String>,\n",
    );
    scratch.edit(
        "entity/src/user.rs",
        "    #[sea_orm(column_type = \"String(StringLen::N(255))\")]\n    pub name: String,",
        "    #[sea_orm(column_type = \"String(StringLen::N(200))\")]\n    pub name: String,",
    );
    scratch.build("alter post");
    let (source, printed) = scratch.autogenerate(&pg, "alter_post");
    for expected in [
        ".alter_column(text(Post::Title))",
        ".alter_column(string(Post::Summary))",
        ".rename_column(Post::Notes, Post::Remarks)",
        ".drop_column(Post::Legacy)",
        ".alter_column(string_len(User::Name, 200))",
        "REVIEW (destructive)",
    ] {
        assert!(source.contains(expected), "{expected}:\n{source}");
    }
    for destructive in ["post.legacy", "post.summary NOT NULL", "narrows user.name"] {
        assert!(
            printed
                .lines()
                .any(|l| l.contains("DESTRUCTIVE") && l.contains(destructive)),
            "the summary names {destructive}:\n{printed}"
        );
    }
    scratch.build("alter_post");
    for (code, out) in scratch.check(&pg) {
        assert_eq!(code, Some(0), "check after alter_post: {out}");
    }
    let (dbs, migrated) = round_trip(
        &scratch,
        "alter_post",
        Some(
            "INSERT INTO \"user\" (email, name) VALUES ('ada@x.io', 'Ada'); \
             INSERT INTO post (user_id, title, summary) VALUES (1, 'first', 'short')",
        ),
    )
    .await;
    for (url, schema) in migrated {
        assert!(schema.contains("remarks"), "{url}: {schema}");
        assert_eq!(
            query_text(&url, "SELECT CAST(count(*) AS TEXT) FROM post").await,
            "1",
            "{url}: the post survived rebuilding the table it references"
        );
    }

    // 4. A new index on an existing table: a migration of its own, not a transaction, that
    //    builds it CONCURRENTLY on PostgreSQL.
    scratch.edit(
        "entity/src/post.rs",
        "    pub user_id: i32,\n",
        "    #[sea_orm(indexed)]\n    pub user_id: i32,\n",
    );
    scratch.build("index post.user_id");
    let (source, _) = scratch.autogenerate(&pg, "index_post_user_id");
    for expected in [
        "online::create_index(",
        ".name(\"idx-post-user_id\")",
        "online::drop_index(manager, \"idx-post-user_id\")",
        "Some(false)",
    ] {
        assert!(source.contains(expected), "{expected}:\n{source}");
    }
    scratch.build("index_post_user_id");
    for (code, out) in scratch.check(&pg) {
        assert_eq!(code, Some(0), "check after index_post_user_id: {out}");
    }
    let (_dbs, migrated) = round_trip(&scratch, "index_post_user_id", None).await;
    for (url, schema) in migrated {
        assert!(schema.contains("idx-post-user_id"), "{url}: {schema}");
    }

    // 5. Editing an applied migration: `status` names it, `up` refuses, `--allow-changed`
    //    goes on.
    let bio = scratch
        .migrations()
        .into_iter()
        .find(|m| m.ends_with("_add_user_bio.rs"))
        .unwrap();
    let version = bio.trim_end_matches(".rs").to_owned();
    let file = format!("migration/src/{bio}");
    let text = std::fs::read_to_string(scratch.path(&file)).unwrap();
    std::fs::write(
        scratch.path(&file),
        text + "// edited after it was applied\n",
    )
    .unwrap();
    scratch.build("edit add_user_bio");
    for url in dbs.urls() {
        let status = scratch.ok("status after the edit", &url, &["status"]);
        assert!(
            status.contains(&format!("changed  {version}")),
            "{url}: {status}"
        );
        let up = scratch.migrator(&url, &["up"]);
        let message = String::from_utf8_lossy(&up.stderr);
        assert_eq!(up.status.code(), Some(1), "{url}: {message}");
        assert!(
            message.contains(&version) && message.contains("--allow-changed"),
            "{message}"
        );
        scratch.ok("up --allow-changed", &url, &["up", "--allow-changed"]);
    }

    // 6. Column names whose words SeaORM's case conversion would merge or split: the
    //    generated identifiers name each column exactly (`up` creates those names, `check`
    //    agrees, `down` removes them).
    let words = ["pos_x_y", "line2_total", "a_b_c_d", "http_status_2xx"];
    scratch.edit(
        "entity/src/user.rs",
        "    pub name: String,\n",
        &format!(
            "    pub name: String,\n{}",
            words
                .iter()
                .map(|w| format!("    pub {w}: Option<i32>,\n"))
                .collect::<String>()
        ),
    );
    scratch.build("word-shaped columns");
    let (source, _) = scratch.autogenerate(&pg, "add_word_columns");
    assert!(
        source.contains("#[sea_orm(iden = \"pos_x_y\")]"),
        "{source}"
    );
    scratch.build("add_word_columns");
    for (code, out) in scratch.check(&pg) {
        assert_eq!(code, Some(0), "check after add_word_columns: {out}");
    }
    let (_dbs, migrated) = round_trip(&scratch, "add_word_columns", None).await;
    for (url, schema) in migrated {
        for word in words {
            assert!(
                schema.contains(&format!("user.{word} ")),
                "{url}: {word}: {schema}"
            );
        }
        for wrong in ["pos_xy", "http_status2xx", "abcd"] {
            assert!(!schema.contains(wrong), "{url}: {wrong}: {schema}");
        }
    }

    // The shadow databases are gone.
    let leftovers = query_text(
        &pg,
        "SELECT CAST(count(*) AS TEXT) FROM pg_database WHERE datname LIKE 'migration_shadow_%'",
    )
    .await;
    assert_eq!(leftovers, "0");
}
