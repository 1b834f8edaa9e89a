//! The configuration as documented is the configuration as parsed: the one table of the
//! configuration reference (docs/configuration.md) lists every variable the service, the API and the migrator read — no more, no fewer — with
//! who reads it and the default the code has; and every duration takes the same syntax.

use std::collections::{BTreeMap, BTreeSet};

use service::DatabaseConfig;
use service::config::Variable;

/// One row of the configuration reference's table.
#[derive(Debug, PartialEq, Eq)]
struct Documented {
    read_by: BTreeSet<String>,
    default: String,
}

/// The configuration reference's table, by variable (a variable listed twice fails here).
fn documented() -> BTreeMap<String, Documented> {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .expect("docs/configuration.md");
    let header = "| variable | read by | default | meaning |";
    assert_eq!(
        readme.matches(header).count(),
        1,
        "docs/configuration.md has one configuration table, headed {header:?}"
    );
    let (_, table) = readme.split_once(header).unwrap();
    let mut rows = BTreeMap::new();
    for line in table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
    {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert!(cells.len() >= 4, "a row of four cells: {line}");
        let name = cells[0].trim_matches('`').to_owned();
        let row = Documented {
            read_by: cells[1].split(", ").map(str::to_owned).collect(),
            default: cells[2].replace('`', ""),
        };
        assert!(
            rows.insert(name.clone(), row).is_none(),
            "{name} is documented twice"
        );
    }
    rows
}

/// What the code defines: every variable, who reads it and its default.
fn defined() -> BTreeMap<String, Documented> {
    let mut rows: BTreeMap<String, Documented> = BTreeMap::new();
    let mut add = |reader: &str, name: &str, default: Option<&str>| {
        let row = rows.entry(name.to_owned()).or_insert_with(|| Documented {
            read_by: BTreeSet::new(),
            default: default.unwrap_or("none").replace('`', ""),
        });
        row.read_by.insert(reader.to_owned());
    };
    let service = DatabaseConfig::variables();
    for variable in &service {
        add("service", &variable.name, variable.default.as_deref());
    }
    for variable in migrator::options::environment() {
        add("migrator", &variable.name, variable.default.as_deref());
    }
    // The API reads the database's variables through `DatabaseConfig`: listed as the service's.
    // It reads the migrations' (`MIGRATION_*`, for `--migrate`) as the migrator does.
    for variable in api::ApiConfig::variables() {
        if !service.iter().any(|v| v.name == variable.name) {
            add("api", &variable.name, variable.default.as_deref());
        }
    }
    rows
}

#[test]
fn the_readme_lists_exactly_the_variables_the_code_reads() {
    let documented = documented();
    let defined = defined();
    let names = |rows: &BTreeMap<String, Documented>| rows.keys().cloned().collect::<BTreeSet<_>>();
    let not_parsed: Vec<_> = names(&documented)
        .difference(&names(&defined))
        .cloned()
        .collect();
    let not_documented: Vec<_> = names(&defined)
        .difference(&names(&documented))
        .cloned()
        .collect();
    assert!(
        not_parsed.is_empty() && not_documented.is_empty(),
        "documented but not parsed: {not_parsed:?}; parsed but not documented: {not_documented:?}"
    );
    for (name, row) in &defined {
        assert_eq!(
            &documented[name], row,
            "{name}: the documented row (left) differs from the code (right)"
        );
    }
}

#[test]
fn every_definition_says_what_it_means() {
    let empty: Vec<Variable> = DatabaseConfig::variables()
        .into_iter()
        .chain(api::ApiConfig::variables())
        .filter(|variable| variable.meaning.trim().is_empty())
        .collect();
    assert!(empty.is_empty(), "{empty:?}");
}

fn lookup(vars: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    let vars = vars.to_vec();
    move |name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| (*value).to_owned())
    }
}

#[test]
fn durations_take_minutes_everywhere_and_a_bad_one_names_its_variable() {
    let config = DatabaseConfig::from_lookup(lookup(&[("DB_CONNECT_TIMEOUT", "2m")])).unwrap();
    assert_eq!(config.connect_timeout.as_secs(), 120);
    let err = DatabaseConfig::from_lookup(lookup(&[("DB_CONNECT_TIMEOUT", "abc")])).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#"DB_CONNECT_TIMEOUT="abc" is invalid: expected a duration"#),
        "{err}"
    );

    let args = std::iter::empty::<String>;
    match api::Invocation::from_lookup(args(), lookup(&[("API_REQUEST_TIMEOUT", "2m")])) {
        Ok(api::Invocation::Serve(config)) => assert_eq!(config.request_timeout.as_secs(), 120),
        other => panic!("API_REQUEST_TIMEOUT=2m: {other:?}"),
    }
    let err = api::Invocation::from_lookup(args(), lookup(&[("API_REQUEST_TIMEOUT", "abc")]))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#"API_REQUEST_TIMEOUT="abc" is invalid: expected a duration"#),
        "{err}"
    );
}
