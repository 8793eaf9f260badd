//! jq programs, compiled once with the jaq crates and run on event data.
//!
//! Converters must be deterministic (replaying events must give the same result
//! tomorrow) and must not see the server's environment, so the native filters that
//! read the clock, the environment or the time zone, print, or stop the process are
//! left out of the library the programs compile against.

use std::fmt;
use std::sync::Arc;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data};
use jaq_json::Val;
use serde_json::Value;

/// Native filters a converter may not use, and why: `env` (the server's secrets),
/// `now`, `localtime`, `strflocaltime`, `mktime`'s local variants (the clock and time
/// zone make a replay differ), `halt` (stops the program), `debug`/`stderr` (output).
const FORBIDDEN_FILTERS: &[&str] = &[
    "env",
    "now",
    "localtime",
    "strflocaltime",
    "halt",
    "debug_empty",
    "stderr_empty",
];

/// Definitions of the standard library built on the filters above, left out with them.
const FORBIDDEN_DEFINITIONS: &[&str] = &["stderr", "debug", "halt", "halt_error"];

/// Most values one program run may emit: bounds a runaway generator such as
/// `repeat(.)`.
pub const OUTPUTS_MAX: usize = 64;

type Filter = jaq_core::compile::Filter<jaq_core::Native<data::JustLut<Val>>>;

/// A compiled jq program.
///
/// ```
/// use eventfold_schema::JqProgram;
/// let split = JqProgram::compile(".items[] | {sku: .}").unwrap();
/// let out = split.run(serde_json::json!({"items": ["a", "b"]})).unwrap();
/// assert_eq!(out, vec![serde_json::json!({"sku": "a"}), serde_json::json!({"sku": "b"})]);
/// assert!(JqProgram::compile(".a |").is_err());
/// assert!(JqProgram::compile("env").is_err());
/// ```
#[derive(Clone)]
pub struct JqProgram {
    source: Arc<str>,
    filter: Arc<Filter>,
}

impl fmt::Debug for JqProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JqProgram").field(&self.source).finish()
    }
}

impl PartialEq for JqProgram {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl JqProgram {
    /// Parses and compiles `source`; the error names what the parser or compiler
    /// expected, and where.
    pub fn compile(source: &str) -> Result<Self, String> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .filter(|def| !FORBIDDEN_DEFINITIONS.contains(&def.name));
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs())
            .filter(|(name, _, _)| !FORBIDDEN_FILTERS.contains(name));
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let program = File {
            code: source,
            path: (),
        };
        let modules = loader
            .load(&arena, program)
            .map_err(|errors| describe_load_errors(source, errors))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errors| describe_compile_errors(source, errors))?;
        Ok(JqProgram {
            source: source.into(),
            filter: Arc::new(filter),
        })
    }

    /// The program's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the program on `input`; every value it emits, in order (none for `empty`).
    pub fn run(&self, input: Value) -> Result<Vec<Value>, String> {
        let input: Val = serde_json::from_value(input)
            .map_err(|e| format!("the input is not a jq value: {e}"))?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut outputs = Vec::new();
        for output in self.filter.id.run((ctx, input)) {
            if outputs.len() == OUTPUTS_MAX {
                return Err(format!(
                    "the program emitted more than {OUTPUTS_MAX} values"
                ));
            }
            let value = output.map_err(|exception| match exception.get_err() {
                Ok(error) => format!("the program failed: {error}"),
                Err(_) => "the program stopped without a value".to_string(),
            })?;
            outputs.push(to_json(&value)?);
        }
        Ok(outputs)
    }
}

fn to_json(value: &Val) -> Result<Value, String> {
    // jaq writes its values as JSON text; non-JSON values (NaN, byte strings) fail
    // to parse back and are reported.
    let text = value.to_string();
    serde_json::from_str(&text).map_err(|e| format!("the program emitted {text}, not JSON: {e}"))
}

/// Line and column (from 1) of `rest`, a suffix of `source`.
fn place(source: &str, rest: &str) -> String {
    let offset = source.len().saturating_sub(rest.len());
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let near: String = rest.chars().take(20).collect();
    if near.is_empty() {
        format!("at the end (line {line}, column {column})")
    } else {
        format!("at line {line}, column {column} (near `{near}`)")
    }
}

fn describe_load_errors<P>(source: &str, errors: jaq_core::load::Errors<&str, P>) -> String {
    use jaq_core::load::Error;
    let mut messages = Vec::new();
    for (_, error) in errors {
        match error {
            Error::Io(list) => {
                for (path, reason) in list {
                    messages.push(format!("cannot import {path}: {reason}"));
                }
            }
            Error::Lex(list) => {
                for (expected, rest) in list {
                    messages.push(format!(
                        "expected {} {}",
                        expected.as_str(),
                        place(source, rest)
                    ));
                }
            }
            Error::Parse(list) => {
                for (expected, rest) in list {
                    messages.push(format!(
                        "expected {} {}",
                        expected.as_str(),
                        place(source, rest)
                    ));
                }
            }
        }
    }
    format!("jq program does not parse: {}", messages.join("; "))
}

fn describe_compile_errors<P>(source: &str, errors: jaq_core::compile::Errors<&str, P>) -> String {
    let mut messages = Vec::new();
    for (_, list) in errors {
        for (name, undefined) in list {
            let hint = if FORBIDDEN_FILTERS.contains(&name) || FORBIDDEN_DEFINITIONS.contains(&name)
            {
                " (not allowed in a converter: converters must be deterministic)"
            } else {
                ""
            };
            messages.push(format!(
                "undefined {} `{name}`{hint} {}",
                undefined.as_str(),
                place(source, name)
            ));
        }
    }
    format!("jq program does not compile: {}", messages.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn programs_are_shareable_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<JqProgram>();
    }

    #[test]
    fn a_parse_error_names_the_place() {
        let err = JqProgram::compile("{id: .id,\n reason: }").unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn an_unknown_filter_is_named() {
        let err = JqProgram::compile(".a | frobnicate").unwrap_err();
        assert!(err.contains("frobnicate"), "{err}");
    }

    #[test]
    fn nondeterministic_filters_are_refused() {
        for program in ["now", "env.HOME", "$ENV.HOME", "halt", "debug"] {
            assert!(JqProgram::compile(program).is_err(), "{program} compiled");
        }
    }

    #[test]
    fn a_runtime_error_is_reported_not_raised() {
        let program = JqProgram::compile(".a + 1").unwrap();
        let err = program.run(json!({"a": "text"})).unwrap_err();
        assert!(err.contains("failed"), "{err}");
        let err = JqProgram::compile("error(\"no reason\")")
            .unwrap()
            .run(json!({}))
            .unwrap_err();
        assert!(err.contains("no reason"), "{err}");
    }

    #[test]
    fn empty_drops_and_a_runaway_generator_is_bounded() {
        let drop = JqProgram::compile("empty").unwrap();
        assert_eq!(drop.run(json!({"a": 1})).unwrap(), Vec::<Value>::new());
        let runaway = JqProgram::compile("repeat(.)").unwrap();
        assert!(runaway.run(json!(1)).unwrap_err().contains("more than"));
    }

    #[test]
    fn values_round_trip_through_jaq() {
        let value = json!({"s": "é\"\n", "n": 1.5, "i": -3, "big": 12345678901234i64,
                            "a": [null, true, false], "o": {}});
        let program = JqProgram::compile(".").unwrap();
        assert_eq!(program.run(value.clone()).unwrap(), vec![value]);
    }
}
