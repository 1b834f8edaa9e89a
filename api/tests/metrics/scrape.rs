//! A scrape, parsed by the Prometheus project's Python client library
//! (`prometheus_client.parser.text_string_to_metric_families`), which rejects text that is not
//! the exposition format.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};

use serde::Deserialize;

/// Reads the exposition on stdin; prints its families, then one line per sample, as JSON.
/// Values are printed with `repr` so that `+Inf` and `NaN` survive JSON.
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families.append({"name": family.name, "type": family.type, "samples": [
        {"name": s.name, "labels": s.labels, "value": repr(float(s.value))}
        for s in family.samples
    ]})
json.dump(families, sys.stdout)
"#;

const HOW_TO_INSTALL: &str = "the metrics tests parse scrapes with Python's prometheus_client: \
    install it with `python3 -m pip install prometheus_client` (or Debian's \
    python3-prometheus-client)";

#[derive(Debug, Deserialize)]
struct Family {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    samples: Vec<RawSample>,
}

#[derive(Debug, Deserialize)]
struct RawSample {
    name: String,
    labels: BTreeMap<String, String>,
    value: String,
}

/// One sample of a scrape.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug)]
pub struct Scrape {
    text: String,
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Scrape {
    /// Parses `text` with `prometheus_client`; panics, quoting the parser, if it is not valid.
    pub fn parse(text: &str) -> Self {
        let mut python = Command::new("python3")
            .args(["-c", PARSER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run python3 ({err}); {HOW_TO_INSTALL}"));
        python
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let output = python.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("No module named 'prometheus_client'"),
            "{HOW_TO_INSTALL}"
        );
        assert!(
            output.status.success(),
            "prometheus_client rejects the scrape: {stderr}\n{text}"
        );
        let families: Vec<Family> = serde_json::from_slice(&output.stdout).unwrap();
        let mut types = HashMap::new();
        let mut samples = Vec::new();
        for family in families {
            types.insert(family.name, family.kind);
            for sample in family.samples {
                let value = sample
                    .value
                    .parse::<f64>()
                    .unwrap_or_else(|_| panic!("{}: not a number: {}", sample.name, sample.value));
                samples.push(Sample {
                    name: sample.name,
                    labels: sample.labels,
                    value,
                });
            }
        }
        assert!(!samples.is_empty(), "an empty scrape:\n{text}");
        Self {
            text: text.to_owned(),
            types,
            samples,
        }
    }

    /// The sum of the samples named `name` whose labels include `labels` (0 when there is none).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The `# TYPE` of a metric family (a counter's family drops `_total`).
    pub fn family_type(&self, family: &str) -> Option<&str> {
        self.types.get(family).map(String::as_str)
    }

    /// Every label is one this project uses, with a value from that label's fixed set; no
    /// sample shows any of `words` (what clients sent), a path with one of `ids`, or SQL.
    pub fn assert_no_user_data(&self, words: &[&str], ids: &[String]) {
        for sample in &self.samples {
            for (label, value) in &sample.labels {
                let allowed = match label.as_str() {
                    "operation" => value.starts_with("user.") && is_identifier(&value[5..]),
                    "backend" => ["postgres", "sqlite"].contains(&value.as_str()),
                    "kind" => [
                        "not_found",
                        "conflict",
                        "validation",
                        "unavailable",
                        "contention",
                        "database",
                        "cancelled",
                    ]
                    .contains(&value.as_str()),
                    // A replica's `host:port/database`: configuration, not user data.
                    "pool" => value == "primary" || is_node_name(value),
                    "replica" => is_node_name(value),
                    "direction" => ["up", "down"].contains(&value.as_str()),
                    "method" => {
                        ["GET", "POST", "PATCH", "DELETE", "OTHER"].contains(&value.as_str())
                    }
                    "route" => {
                        ["/health", "/users", "/users/{id}", "unmatched"].contains(&value.as_str())
                    }
                    "status" => value.len() == 3 && value.bytes().all(|b| b.is_ascii_digit()),
                    "le" => value == "+Inf" || value.parse::<f64>().is_ok(),
                    _ => false,
                };
                assert!(allowed, "{}: label {label}={value:?}", sample.name);
            }
        }
        // The samples' lines (the help texts are prose of this project's own).
        let lines: Vec<String> = self
            .text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(str::to_lowercase)
            .collect();
        for line in &lines {
            for word in words {
                assert!(!line.contains(word), "{word:?} in the scrape: {line}");
            }
            for id in ids {
                assert!(
                    !line.contains(&format!("/{id}")),
                    "id {id} in the scrape: {line}"
                );
            }
            for sql in [
                "select ", "insert ", "update ", "delete ", " from ", "\"user\"",
            ] {
                assert!(!line.contains(sql), "{sql:?} in the scrape: {line}");
            }
        }
    }
}

/// `127.0.0.1:PORT/DATABASE`, as the test clusters' nodes are named.
fn is_node_name(value: &str) -> bool {
    value
        .strip_prefix("127.0.0.1:")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(port, database)| port.parse::<u16>().is_ok() && is_identifier(database))
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}
