//! How settings defined with clap are read: from environment variables (and a `.env` file)
//! and, for binaries, the command line, in one way for the service, the API and the migrator.
//!
//! Each setting is a clap argument with `env = "NAME"`. [`parse`] turns the variables found
//! through a lookup function into arguments (`--name=value`) placed before the command line's
//! own, so the command line wins and clap's value parsers (see [`syntax`](super::syntax)) check
//! every value, whichever way it came. A bad variable is reported as
//! [`ConfigError::InvalidValue`] naming the variable; the process environment is never read
//! behind the lookup's back, so tests can pass their own.

use std::collections::HashMap;
use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgMatches, Command};

use super::ConfigError;

/// One configuration variable, as its clap definition declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The environment variable.
    pub name: String,
    /// Its default, written as the variable would be (`None`: no fixed default; the
    /// definition's help says what happens).
    pub default: Option<String>,
    /// What it sets (the first paragraph of its help).
    pub meaning: String,
}

/// The variables `command` reads, in the order of its arguments. A default that is not a
/// value (`the executable's name`) is written at the end of the help, `[default: …]`, as
/// clap shows a value default.
#[must_use]
pub fn variables(command: &Command) -> Vec<Variable> {
    command
        .get_arguments()
        .filter_map(|arg| {
            let name = arg.get_env()?.to_string_lossy().into_owned();
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect();
            let (meaning, default) = match help
                .trim_end()
                .strip_suffix(']')
                .and_then(|rest| rest.rsplit_once("[default: "))
            {
                Some((meaning, default)) => {
                    (meaning.trim_end().to_owned(), Some(default.to_owned()))
                }
                None => (help, (!defaults.is_empty()).then(|| defaults.join(","))),
            };
            Some(Variable {
                name,
                default,
                meaning,
            })
        })
        .collect()
}

/// The process environment, and beneath it a `.env` file (in the working directory or a
/// parent): a variable set in the process wins over the same one in `.env`. Reading `.env`
/// changes nothing in the process environment.
#[derive(Debug, Default)]
pub struct Environment {
    dotenv: HashMap<String, String>,
}

impl Environment {
    /// Reads `.env`, if there is one.
    ///
    /// # Errors
    ///
    /// [`ConfigError::DotEnv`] when `.env` exists but cannot be read or parsed (the error never
    /// repeats its lines: they may hold a password).
    pub fn load() -> Result<Self, ConfigError> {
        let iter = match dotenvy::dotenv_iter() {
            Ok(iter) => iter,
            Err(err) if err.not_found() => return Ok(Self::default()),
            Err(err) => return Err(dotenv_error(&err)),
        };
        let dotenv = iter
            .collect::<Result<HashMap<_, _>, _>>()
            .map_err(|err| dotenv_error(&err))?;
        Ok(Self { dotenv })
    }

    /// The value of `name`: the process's, else `.env`'s.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.dotenv.get(name).cloned())
    }
}

fn dotenv_error(err: &dotenvy::Error) -> ConfigError {
    ConfigError::DotEnv(match err {
        dotenvy::Error::LineParse(_, index) => format!(
            "cannot parse .env at character {index} (the line is not shown: it may hold a password)"
        ),
        dotenvy::Error::Io(err) => format!("cannot read .env: {err}"),
        _ => "cannot use .env: a variable in it is invalid".to_owned(),
    })
}

/// Parses `command`'s arguments from `args` (a command line, without the program's name) and,
/// for every argument that has an environment variable, from `lookup` (blank values count as
/// unset); the command line wins.
///
/// # Errors
///
/// [`ConfigError::InvalidValue`] naming the variable whose value its parser refused, or
/// [`ConfigError::CommandLine`] with clap's message for the command line (an unknown or bad
/// argument; also a request for `--help`, whose message is the help).
pub fn parse(
    command: Command,
    args: impl IntoIterator<Item = String>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<ArgMatches, ConfigError> {
    // (variable, its argument's long flag, value)
    let mut from_env: Vec<(String, String, String)> = Vec::new();
    let mut argv: Vec<OsString> = vec![command.get_name().into()];
    for arg in command.get_arguments() {
        let (Some(name), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let name = name.to_string_lossy().into_owned();
        if let Some(value) = lookup(&name).map(|value| value.trim().to_owned())
            && !value.is_empty()
        {
            argv.push(format!("--{long}={value}").into());
            from_env.push((name, format!("--{long}"), value));
        }
    }
    let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
    let help = command.clone();
    // The values come from `lookup` only, not from what clap read when the command was built.
    let parser = command
        .args_override_self(true)
        .mut_args(|arg| arg.env(None::<&'static str>));
    let command_line_error = |err: clap::Error| ConfigError::CommandLine {
        kind: err.kind(),
        message: if err.kind() == ErrorKind::DisplayHelp {
            help.clone().render_help().to_string()
        } else {
            err.render().to_string()
        },
    };
    // The command line alone first: `--help` and its own mistakes come before the variables'.
    parser
        .clone()
        .try_get_matches_from(argv.iter().take(1).chain(&args))
        .map_err(&command_line_error)?;
    argv.extend(args);
    parser
        .try_get_matches_from(argv)
        .map_err(|err| rejected(&err, &from_env).unwrap_or_else(|| command_line_error(err)))
}

/// A value from the environment that its parser refused, as the error naming the variable.
fn rejected(err: &clap::Error, from_env: &[(String, String, String)]) -> Option<ConfigError> {
    if err.kind() != ErrorKind::ValueValidation && err.kind() != ErrorKind::InvalidValue {
        return None;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        err.get(ContextKind::InvalidArg),
        err.get(ContextKind::InvalidValue),
    ) else {
        return None;
    };
    // `arg` reads `--long <VALUE>`.
    let (name, _, value) = from_env.iter().find(|(_, long, given)| {
        given == value && arg.split([' ', '=']).next() == Some(long.as_str())
    })?;
    let reason = std::error::Error::source(err)
        .map_or_else(|| "invalid value".to_owned(), ToString::to_string);
    Some(ConfigError::InvalidValue {
        variable: name.clone(),
        value: value.clone(),
        reason,
    })
}
