//! Build-time facts about this crate and the entity crate:
//!
//! * `MIGRATION_SOURCE_FINGERPRINT`: changes whenever a source file of this crate changes, so
//!   test support can tell whether a template database built from an earlier version of the
//!   migrations is still current;
//! * `checksums.rs`: the checksum of each migration's source (`src/m*.rs`), recorded when it
//!   is applied, so an edit after that is noticed (see `checksum.rs`);
//! * `entities.rs`: every module of `../entity/src/lib.rs` (but `prelude`) as an entity of the
//!   model that `check` and `autogenerate` compare the migrations with.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=../entity/src/lib.rs");
    let mut files = Vec::new();
    collect(Path::new("src"), &mut files);
    files.sort();
    let mut fingerprint = Fnv::new();
    let mut checksums = String::from("pub(crate) const CHECKSUMS: &[(&str, &str)] = &[\n");
    for path in &files {
        let bytes = std::fs::read(path).unwrap_or_default();
        fingerprint.feed(path.to_string_lossy().bytes().chain(bytes.iter().copied()));
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        if let Some(stem) =
            stem.filter(|s| is_migration(s) && path.parent() == Some(Path::new("src")))
        {
            let _ = writeln!(checksums, "    ({stem:?}, {:?}),", checksum(&bytes));
        }
    }
    checksums.push_str("];\n");
    println!(
        "cargo:rustc-env=MIGRATION_SOURCE_FINGERPRINT={:016x}",
        fingerprint.0
    );
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    write(&out.join("checksums.rs"), &checksums);
    write(&out.join("entities.rs"), &entities());
}

/// `m` + 8 digits + `_`: the names `generate` gives migration files.
fn is_migration(stem: &str) -> bool {
    let bytes = stem.as_bytes();
    bytes.len() > 10
        && bytes[0] == b'm'
        && bytes[1..9].iter().all(u8::is_ascii_digit)
        && bytes[9] == b'_'
}

/// FNV-1a (64 bit) of the source with line endings normalised (a checkout that turns `\n`
/// into `\r\n` is not an edit), twice with different offsets for 128 bits, as hex.
fn checksum(bytes: &[u8]) -> String {
    let normalised: Vec<u8> = bytes.iter().copied().filter(|b| *b != b'\r').collect();
    let mut a = Fnv::new();
    a.feed(normalised.iter().copied());
    let mut b = Fnv(0x6c62_272e_07bb_0142);
    b.feed(normalised.iter().copied());
    format!("{:016x}{:016x}", a.0, b.0)
}

fn entities() -> String {
    let lib = std::fs::read_to_string("../entity/src/lib.rs").unwrap_or_default();
    let mut out = String::from(
        "/// Every entity module of `entity/src/lib.rs` (found by `build.rs`).\n\
         pub(crate) fn entities() -> Vec<EntityModel> {\n    vec![\n",
    );
    for line in lib.lines() {
        let line = line.trim();
        if let Some(name) = line
            .strip_prefix("pub mod ")
            .and_then(|rest| rest.strip_suffix(';'))
            .map(str::trim)
            .filter(|name| *name != "prelude")
        {
            let _ = writeln!(out, "        EntityModel::of(entity::{name}::Entity),");
        }
    }
    out.push_str("    ]\n}\n");
    out
}

fn write(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

/// FNV-1a, 64 bit: stable across Rust versions, unlike `DefaultHasher`.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn feed(&mut self, bytes: impl Iterator<Item = u8>) {
        for byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}
