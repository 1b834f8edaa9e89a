//! The README's "Use it in your service" is enough to start: a crate outside this workspace,
//! made of that section's `Cargo.toml` lines and `main.rs` alone (with the path of this
//! repository), builds and serves `/health` on an embedded SQLite database.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");

/// The body of the first fenced block of `language` after `heading` in the README.
fn block_after(readme: &str, heading: &str, language: &str) -> String {
    let (_, section) = readme
        .split_once(heading)
        .unwrap_or_else(|| panic!("the README has a section {heading:?}"));
    let (_, rest) = section
        .split_once(&format!("```{language}\n"))
        .unwrap_or_else(|| panic!("a ```{language} block under {heading:?}"));
    let (body, _) = rest.split_once("\n```").expect("the block ends");
    format!("{body}\n")
}

/// Kills the server when the test ends, passing or failing.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` over HTTP/1.1: the status code and the body, or why not.
fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme-service");
    let _ = std::fs::remove_dir_all(dir.join("src"));
    std::fs::create_dir_all(dir.join("src")).unwrap();
    dir
}

#[test]
fn a_crate_made_from_the_readme_builds_and_serves_health() {
    let readme = std::fs::read_to_string(Path::new(REPOSITORY).join("README.md")).unwrap();
    let heading = "## Use it in your service";
    let dependencies = block_after(&readme, heading, "toml");
    let main = block_after(&readme, heading, "rust,no_run");
    assert!(
        dependencies.contains(r#"path = "../db/service""#),
        "the README's dependency line names the service crate by path: {dependencies}"
    );
    let dependencies = dependencies.replace("../db/service", &format!("{REPOSITORY}/service"));

    let dir = scratch_dir();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"my-service\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             # Not a member of the repository's workspace: a user's crate.\n[workspace]\n\n\
             {dependencies}"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), main).unwrap();
    // The repository's lock file pins the versions it is tested with (no registry lookup).
    std::fs::copy(
        Path::new(REPOSITORY).join("Cargo.lock"),
        dir.join("Cargo.lock"),
    )
    .unwrap();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(&cargo)
        .args(["build", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        build.status.success(),
        "the README's example does not build:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );

    let port = test_support::free_port().unwrap();
    let data = dir.join("app.sqlite");
    let _ = std::fs::remove_file(&data);
    let _server = Server(
        Command::new(dir.join("target/debug/my-service"))
            .current_dir(&dir)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", data.display()),
            )
            .env("ADDR", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the example starts"),
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, body) = loop {
        match get(port, "/health") {
            Ok(answer) => break answer,
            Err(err) if Instant::now() > deadline => panic!("no answer on /health: {err}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "healthy", "{body}");
    assert_eq!(
        report["migrations"]["pending"].as_array().map(Vec::len),
        Some(0),
        "{body}"
    );

    let (status, body) = get(port, "/users/1").unwrap();
    assert_eq!(
        status, 404,
        "no user yet, and the error maps to 404: {body}"
    );
}
