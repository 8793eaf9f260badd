//! jq programs, compiled once with the jaq crates and run on event data under limits.
//!
//! Converters must be deterministic (replaying events must give the same result
//! tomorrow) and must not see the server's environment, so the native filters that
//! read the clock, the environment or the time zone, print, or stop the process are
//! left out of the library the programs compile against.
//!
//! Every run is metered, because a converter is code that runs on every read. jaq
//! has no fuel of its own, so a program is rewritten before it is compiled:
//!
//! - every filter definition (the program's own and the standard library's) starts
//!   with a *step*, and so does every iteration of `reduce` and `foreach`: recursion
//!   such as `def f: f; f` and loops such as `repeat` take one step per turn, even
//!   when they never emit a value;
//! - every value the program *builds* (an array, an object, an arithmetic result, an
//!   interpolated string, an update, the output of a built-in filter) takes a step and
//!   is measured: its size as JSON text and its nesting depth.
//!
//! A step fails once the run took more than [`JqLimits::steps_max`] steps or
//! [`JqLimits::run_millis_max`] milliseconds, when the run was interrupted (see
//! [`crate::SchemaStore::interrupt_conversions`]), or when the recursion used more than
//! [`JQ_STACK_BYTES_MAX`] of the stack. A failed limit stays failed for the rest of the
//! run, so a `try` cannot catch it and go on. Programs are compiled and run on
//! dedicated threads with a large stack (see `jq_threads`), never on the caller's.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jaq_core::box_iter::box_once;
use jaq_core::data::HasLut;
use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::load::{Arena, File, Loader};
use jaq_core::path::{Part, Path};
use jaq_core::{Bind, Compiler, Ctx, DataT, Exn, Native, Vars};
use jaq_json::Val;
use serde_json::Value;

use crate::jq_threads;

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

/// Most values one program run may emit (`jq_outputs_max`): bounds a split.
pub const OUTPUTS_MAX: usize = 64;

/// Longest jq program accepted, in bytes (`jq_program_bytes_max`). Parsing and
/// compiling recurse on the program's nesting, so its length bounds the stack they
/// need; converters are short.
pub const JQ_PROGRAM_BYTES_MAX: usize = 16 * 1024;

/// Most stack one run's recursion may use, in bytes (`jq_stack_bytes_max`), measured
/// at each step from where the run started.
pub const JQ_STACK_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Deepest nesting of arrays and objects a program may build (`jq_value_depth_max`).
pub const JQ_VALUE_DEPTH_MAX: usize = 256;

/// Names of the filters the rewrite adds. They cannot be written in a program (jq
/// names do not start with `#`), so a program can neither call nor redefine them.
const STEP: &str = "#step";
const BUILT: &str = "#built";
const MUL: &str = "#mul";
const MUL_RIGHT: &str = "$#mul";
/// The definition holding the program; the loader's main module only calls it.
const MAIN: &str = "eventfold_converter";

/// Limits of one jq run. Each is named with its unit last, as in the server's
/// configuration (`jq_steps_max`, `jq_run_millis_max`, `jq_output_bytes_max`).
///
/// ```
/// use eventfold_schema::{JqError, JqLimit, JqLimits, JqProgram};
/// let limits = JqLimits { steps_max: 1_000, ..JqLimits::default() };
/// let forever = JqProgram::compile("def f: f; f").unwrap();
/// let err = forever.run_with(serde_json::json!({}), &limits, &Default::default()).unwrap_err();
/// assert_eq!(err, JqError::Limit(JqLimit::Steps(1_000)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JqLimits {
    /// Most steps one run may take: filter calls, `reduce`/`foreach` iterations and
    /// values built. Steps make the limit the same on every machine and every replay.
    pub steps_max: u64,
    /// Most wall-clock time one run may take, in milliseconds: a backstop for steps
    /// that are slow (large values).
    pub run_millis_max: u64,
    /// Largest value one run may build, and most bytes it may emit in all, counted as
    /// JSON text.
    pub output_bytes_max: u64,
}

impl Default for JqLimits {
    fn default() -> Self {
        JqLimits {
            steps_max: 1_000_000,
            run_millis_max: 2_000,
            output_bytes_max: 16 * 1024 * 1024,
        }
    }
}

/// The limit a jq run exceeded, with its configured value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JqLimit {
    /// `jq_steps_max`, in steps.
    Steps(u64),
    /// `jq_run_millis_max`, in milliseconds.
    RunMillis(u64),
    /// `jq_output_bytes_max`, in bytes.
    OutputBytes(u64),
    /// `jq_outputs_max` ([`OUTPUTS_MAX`]), in values.
    Outputs(usize),
    /// `jq_stack_bytes_max` ([`JQ_STACK_BYTES_MAX`]), in bytes of recursion.
    StackBytes(usize),
    /// `jq_value_depth_max` ([`JQ_VALUE_DEPTH_MAX`]), in levels of nesting.
    ValueDepth(usize),
}

impl JqLimit {
    /// The limit's name, as configured and documented (`jq_steps_max`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            JqLimit::Steps(_) => "jq_steps_max",
            JqLimit::RunMillis(_) => "jq_run_millis_max",
            JqLimit::OutputBytes(_) => "jq_output_bytes_max",
            JqLimit::Outputs(_) => "jq_outputs_max",
            JqLimit::StackBytes(_) => "jq_stack_bytes_max",
            JqLimit::ValueDepth(_) => "jq_value_depth_max",
        }
    }
}

impl fmt::Display for JqLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match self {
            JqLimit::Steps(n) => write!(f, "{name} ({n} steps)"),
            JqLimit::RunMillis(n) => write!(f, "{name} ({n} ms)"),
            JqLimit::OutputBytes(n) => write!(f, "{name} ({n} bytes)"),
            JqLimit::Outputs(n) => write!(f, "{name} ({n} values)"),
            JqLimit::StackBytes(n) => write!(f, "{name} ({n} bytes of recursion)"),
            JqLimit::ValueDepth(n) => write!(f, "{name} ({n} levels)"),
        }
    }
}

/// Why a jq run gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JqError {
    /// The program raised an error, or emitted something that is not JSON.
    #[error("{0}")]
    Failed(String),
    /// The run was stopped by one of its limits.
    #[error("the program exceeded {0}")]
    Limit(JqLimit),
    /// The run was interrupted: the registry is shutting down.
    #[error("the program was interrupted: conversions are shutting down")]
    Interrupted,
}

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
        if source.len() > JQ_PROGRAM_BYTES_MAX {
            return Err(format!(
                "the jq program is {} bytes, more than jq_program_bytes_max ({JQ_PROGRAM_BYTES_MAX} bytes)",
                source.len()
            ));
        }
        let source: Arc<str> = source.into();
        jq_threads::run_blocking(move || {
            let filter = compile_here(&source)?;
            Ok(JqProgram {
                source,
                filter: Arc::new(filter),
            })
        })?
    }

    /// The program's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the program on `input` with the default [`JqLimits`]; every value it emits,
    /// in order (none for `empty`).
    pub fn run(&self, input: Value) -> Result<Vec<Value>, JqError> {
        self.run_with(input, &JqLimits::default(), &Arc::default())
    }

    /// Runs the program on `input` within `limits`; setting `interrupt` stops the run
    /// at its next step with [`JqError::Interrupted`].
    pub fn run_with(
        &self,
        input: Value,
        limits: &JqLimits,
        interrupt: &Arc<AtomicBool>,
    ) -> Result<Vec<Value>, JqError> {
        if jq_threads::on_jq_thread() {
            return self.run_here(input, limits, interrupt);
        }
        let (program, limits, interrupt) = (self.clone(), *limits, interrupt.clone());
        jq_threads::run_blocking(move || program.run_here(input, &limits, &interrupt))
            .map_err(JqError::Failed)?
    }

    /// Runs `programs` one after another in one hand-off to a jq thread, each on the
    /// one value the program before emitted, as long as `carry_on` accepts that value;
    /// stops after the last program, or after one that emitted no value, several, or
    /// one `carry_on` refuses. Returns how many programs ran and the last one's
    /// outputs; an error comes with the index of the program that failed. (Handing
    /// each program to a jq thread on its own costs a thread's wake-up per step, more
    /// than running a small program.)
    pub(crate) fn run_chain(
        programs: &[JqProgram],
        input: Value,
        limits: &JqLimits,
        interrupt: &Arc<AtomicBool>,
        carry_on: fn(&Value) -> bool,
    ) -> Result<(usize, Vec<Value>), (usize, JqError)> {
        let chain = move |programs: &[JqProgram], limits: &JqLimits, interrupt: &AtomicBool| {
            let mut data = input;
            for (i, program) in programs.iter().enumerate() {
                let mut outputs = program
                    .run_here(data, limits, interrupt)
                    .map_err(|error| (i, error))?;
                match outputs.pop() {
                    Some(one) if outputs.is_empty() && i + 1 < programs.len() && carry_on(&one) => {
                        data = one;
                    }
                    last => {
                        outputs.extend(last);
                        return Ok((i + 1, outputs));
                    }
                }
            }
            Ok((programs.len(), Vec::new()))
        };
        if jq_threads::on_jq_thread() {
            return chain(programs, limits, interrupt);
        }
        let (programs, limits, interrupt) = (programs.to_vec(), *limits, interrupt.clone());
        jq_threads::run_blocking(move || chain(&programs, &limits, &interrupt))
            .map_err(|why| (0, JqError::Failed(why)))?
    }

    fn run_here(
        &self,
        input: Value,
        limits: &JqLimits,
        interrupt: &AtomicBool,
    ) -> Result<Vec<Value>, JqError> {
        let meter = Meter::new(limits, interrupt);
        let input: Val = serde_json::from_value(input)
            .map_err(|e| JqError::Failed(format!("the input is not a jq value: {e}")))?;
        let run = Run {
            lut: &self.filter.lut,
            meter,
        };
        let ctx = Ctx::<Metered>::new(&run, Vars::new([]));
        let mut outputs = Vec::new();
        let mut emitted = 0u64;
        for output in self.filter.id.run((ctx, input)) {
            if let Some(stopped) = run.meter.stopped.get() {
                return Err(stopped.into());
            }
            let value = match output {
                Ok(value) => value,
                Err(exception) => {
                    return Err(match exception.get_err() {
                        Ok(error) => JqError::Failed(format!("the program failed: {error}")),
                        Err(_) => JqError::Failed("the program stopped without a value".into()),
                    });
                }
            };
            if outputs.len() == OUTPUTS_MAX {
                return Err(JqError::Limit(JqLimit::Outputs(OUTPUTS_MAX)));
            }
            let room = limits.output_bytes_max.saturating_sub(emitted);
            let (json, bytes) = to_json(&value, room).ok_or(JqError::Limit(
                JqLimit::OutputBytes(limits.output_bytes_max),
            ))??;
            emitted += bytes;
            outputs.push(json);
        }
        match run.meter.stopped.get() {
            Some(stopped) => Err(stopped.into()),
            None => Ok(outputs),
        }
    }
}

/// `value` as JSON and the length of its text; `None` when the text is longer than
/// `room` bytes.
fn to_json(value: &Val, room: u64) -> Option<Result<(Value, u64), JqError>> {
    let mut text = CappedText {
        text: String::new(),
        room,
    };
    // The only error a `CappedText` raises is running out of room.
    write!(text, "{value}").ok()?;
    let bytes = text.text.len() as u64;
    // jaq writes its values as JSON text; non-JSON values (NaN, byte strings) fail to
    // parse back and are reported.
    Some(
        serde_json::from_str(&text.text)
            .map(|json| (json, bytes))
            .map_err(|e| {
                let shown: String = text.text.chars().take(200).collect();
                JqError::Failed(format!("the program emitted {shown}, not JSON: {e}"))
            }),
    )
}

/// Text that refuses to grow past `room` bytes.
struct CappedText {
    text: String,
    room: u64,
}

impl fmt::Write for CappedText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if (self.text.len() + s.len()) as u64 > self.room {
            return Err(fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// The data type of metered runs: jaq values, with the run's meter beside the
/// program for the added filters to reach.
struct Metered;

impl DataT for Metered {
    type V<'a> = Val;
    type Data<'a> = &'a Run<'a>;
}

struct Run<'a> {
    lut: &'a jaq_core::Lut<Metered>,
    meter: Meter<'a>,
}

impl<'a> HasLut<'a, Metered> for &'a Run<'a> {
    fn lut(&self) -> &'a jaq_core::Lut<Metered> {
        self.lut
    }
}

type Filter = jaq_core::Filter<Metered>;

/// Why a metered run stopped.
#[derive(Debug, Clone, Copy)]
enum Stopped {
    Limit(JqLimit),
    Interrupted,
}

impl From<Stopped> for JqError {
    fn from(stopped: Stopped) -> Self {
        match stopped {
            Stopped::Limit(limit) => JqError::Limit(limit),
            Stopped::Interrupted => JqError::Interrupted,
        }
    }
}

/// What one run has used, against its limits.
struct Meter<'a> {
    limits: &'a JqLimits,
    interrupt: &'a AtomicBool,
    steps: Cell<u64>,
    deadline: Instant,
    stack_start: usize,
    /// The first limit the run hit; every later step fails too.
    stopped: Cell<Option<Stopped>>,
}

impl<'a> Meter<'a> {
    fn new(limits: &'a JqLimits, interrupt: &'a AtomicBool) -> Self {
        Meter {
            limits,
            interrupt,
            steps: Cell::new(0),
            deadline: Instant::now() + Duration::from_millis(limits.run_millis_max),
            stack_start: stack_address(),
            stopped: Cell::new(None),
        }
    }

    /// Takes one step, or says which limit forbids it.
    fn step(&self) -> Result<(), Stopped> {
        if let Some(stopped) = self.stopped.get() {
            return Err(stopped);
        }
        let steps = self.steps.get() + 1;
        self.steps.set(steps);
        let exceeded = if steps > self.limits.steps_max {
            Some(Stopped::Limit(JqLimit::Steps(self.limits.steps_max)))
        } else if self.interrupt.load(Ordering::Relaxed) {
            Some(Stopped::Interrupted)
        } else if stack_address().abs_diff(self.stack_start) > JQ_STACK_BYTES_MAX {
            Some(Stopped::Limit(JqLimit::StackBytes(JQ_STACK_BYTES_MAX)))
        } else if Instant::now() > self.deadline {
            Some(Stopped::Limit(JqLimit::RunMillis(
                self.limits.run_millis_max,
            )))
        } else {
            None
        };
        match exceeded {
            None => Ok(()),
            Some(stopped) => Err(self.stop(stopped)),
        }
    }

    /// Takes a step for a value the program built, and measures it.
    fn built(&self, value: &Val) -> Result<(), Stopped> {
        self.step()?;
        let limit = self.limits.output_bytes_max;
        let mut room = limit;
        measure(value, 0, &mut room, limit).map_err(|limit| self.stop(Stopped::Limit(limit)))
    }

    fn stop(&self, stopped: Stopped) -> Stopped {
        self.stopped.set(Some(stopped));
        stopped
    }

    fn exception<'e>(stopped: Stopped) -> Exn<'e, Val> {
        Exn::from(jaq_core::Error::str(JqError::from(stopped)))
    }
}

/// An address in the current stack frame, to measure how deep a run recursed.
#[inline(never)]
fn stack_address() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// Takes the size of `value` as JSON text (about: numbers count their digits) out of
/// `room`, failing as soon as it does not fit or nests deeper than allowed. Shared
/// parts count every time they appear, as they would in the output.
fn measure(value: &Val, depth: usize, room: &mut u64, limit: u64) -> Result<(), JqLimit> {
    let mut take = |bytes: u64| -> Result<(), JqLimit> {
        *room = room.checked_sub(bytes).ok_or(JqLimit::OutputBytes(limit))?;
        Ok(())
    };
    let nested = |depth: usize| {
        if depth >= JQ_VALUE_DEPTH_MAX {
            Err(JqLimit::ValueDepth(JQ_VALUE_DEPTH_MAX))
        } else {
            Ok(())
        }
    };
    match value {
        Val::Null | Val::Bool(_) => take(5),
        Val::Num(number) => take(number_bytes(number)),
        Val::BStr(bytes) | Val::TStr(bytes) => take(bytes.len() as u64 + 2),
        Val::Arr(items) => {
            nested(depth)?;
            take(items.len() as u64 + 2)?;
            items
                .iter()
                .try_for_each(|item| measure(item, depth + 1, room, limit))
        }
        Val::Obj(entries) => {
            nested(depth)?;
            take(entries.len() as u64 * 2 + 2)?;
            entries.iter().try_for_each(|(key, value)| {
                measure(key, depth + 1, room, limit)?;
                measure(value, depth + 1, room, limit)
            })
        }
    }
}

fn number_bytes(number: &jaq_json::Num) -> u64 {
    match number {
        jaq_json::Num::BigInt(big) => big.bits() / 3 + 2,
        jaq_json::Num::Dec(text) => text.len() as u64,
        _ => 20,
    }
}

/// The output of a native filter that only meters: its input, or the limit's error.
fn metered<'a>(result: Result<(), Stopped>, value: Val) -> jaq_core::ValXs<'a, Val> {
    box_once(result.map(|()| value).map_err(Meter::exception))
}

/// The filters the rewrite calls: `#step` (a step), `#built` (a step and a measure of
/// the value), `#mul($l; $r)` (`$l * $r`, refusing a product too large to build).
fn metering_filters() -> impl Iterator<Item = jaq_core::native::Fun<Metered>> {
    let step = Native::<Metered>::new(|cv| {
        let run: &Run<'_> = cv.0.data();
        metered(run.meter.step(), cv.1)
    })
    .with_paths(|cv| {
        let run: &Run<'_> = cv.0.data();
        box_once(run.meter.step().map(|()| cv.1).map_err(Meter::exception))
    })
    .with_update(|cv, f| {
        let run: &Run<'_> = cv.0.data();
        match run.meter.step() {
            Ok(()) => f(cv.1),
            Err(error) => box_once(Err(Meter::exception(error))),
        }
    });
    let built = Native::<Metered>::new(|cv| {
        let run: &Run<'_> = cv.0.data();
        metered(run.meter.built(&cv.1), cv.1)
    })
    .with_paths(|cv| {
        let run: &Run<'_> = cv.0.data();
        box_once(run.meter.step().map(|()| cv.1).map_err(Meter::exception))
    })
    .with_update(|cv, f| {
        let run: &Run<'_> = cv.0.data();
        match run.meter.step() {
            Ok(()) => f(cv.1),
            Err(error) => box_once(Err(Meter::exception(error))),
        }
    });
    let mul = Native::<Metered>::new(|mut cv| {
        let right = cv.0.pop_var();
        let left = cv.0.pop_var();
        let run: &Run<'_> = cv.0.data();
        let limit = run.meter.limits.output_bytes_max;
        if product_bytes(&left, &right) > limit {
            let stopped = run.meter.stop(Stopped::Limit(JqLimit::OutputBytes(limit)));
            return box_once(Err(Meter::exception(stopped)));
        }
        box_once((left * right).map_err(Exn::from))
    });
    let no_args = || -> Box<[Bind]> { Box::new([]) };
    [
        (STEP, no_args(), step),
        (BUILT, no_args(), built),
        (MUL, jaq_core::native::v(2), mul),
    ]
    .into_iter()
}

/// About the size of `left * right` before it is computed: a repeated string or the
/// product of two big integers can be huge from small operands.
fn product_bytes(left: &Val, right: &Val) -> u64 {
    use jaq_json::Num;
    let times = |n: &Num| match n {
        Num::Int(i) => (*i).max(0) as u64,
        Num::BigInt(_) => u64::MAX,
        Num::Float(f) => f.max(0.0) as u64,
        Num::Dec(_) => 1,
    };
    match (left, right) {
        (Val::TStr(s) | Val::BStr(s), Val::Num(n)) | (Val::Num(n), Val::TStr(s) | Val::BStr(s)) => {
            (s.len() as u64).saturating_mul(times(n))
        }
        (Val::Num(l), Val::Num(r)) => number_bytes(l).saturating_add(number_bytes(r)),
        _ => 0,
    }
}

/// `fromjson` with serde_json's parser, which refuses nesting deeper than 128 (jaq's
/// own parser recurses without a bound).
fn fromjson() -> jaq_core::native::Fun<Metered> {
    let run = Native::<Metered>::new(|cv| {
        let parsed = match &cv.1 {
            Val::TStr(text) | Val::BStr(text) => serde_json::from_slice::<Val>(&text[..])
                .map_err(|e| format!("cannot parse {} as JSON: {e}", cv.1)),
            other => Err(format!("{other} cannot be parsed: it is not a string")),
        };
        box_once(parsed.map_err(|e| Exn::from(jaq_core::Error::str(e))))
    });
    ("fromjson", Box::new([]), run)
}

/// Compiles `source` on the current thread (a jq thread: parsing recurses).
fn compile_here(source: &str) -> Result<Filter, String> {
    let natives: Vec<_> = jaq_core::funs::<Metered>()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(|(name, _, _)| !FORBIDDEN_FILTERS.contains(name) && *name != "fromjson")
        .chain([fromjson()])
        .collect();
    let prelude: Vec<Def<&str>> = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .filter(|def| !FORBIDDEN_DEFINITIONS.contains(&def.name))
        .collect();

    // Errors are reported for the program as written.
    let Some(program) = jaq_core::load::parse(source, |p| p.term()) else {
        let arena = Arena::default();
        let loaded = Loader::new(prelude).load(
            &arena,
            File {
                code: source,
                path: (),
            },
        );
        return Err(match loaded {
            Err(errors) => describe_load_errors(source, errors),
            Ok(_) => "jq program does not parse: modules and imports are not supported".into(),
        });
    };

    let mut defined = HashSet::new();
    for def in &prelude {
        defined.insert((def.name, def.args.len()));
    }
    defined_in(&program, &mut defined);
    let rewrite = Rewrite {
        natives: natives
            .iter()
            .map(|(name, args, _)| (*name, args.len()))
            .filter(|native| !defined.contains(native))
            .collect(),
    };
    let mut defs: Vec<Def<&str>> = prelude.into_iter().map(|def| rewrite.def(def)).collect();
    defs.push(Def {
        name: MAIN,
        args: Vec::new(),
        body: step(rewrite.term(program)),
    });

    let arena = Arena::default();
    let modules = Loader::new(defs)
        .load(
            &arena,
            File {
                code: MAIN,
                path: (),
            },
        )
        .map_err(|errors| describe_load_errors(source, errors))?;
    Compiler::default()
        .with_funs(natives.into_iter().chain(metering_filters()))
        .compile(modules)
        .map_err(|errors| describe_compile_errors(source, errors))
}

/// Adds the (name, arity) of every definition in `term` to `defined`.
fn defined_in<'s>(term: &Term<&'s str>, defined: &mut HashSet<(&'s str, usize)>) {
    if let Term::Def(defs, _) = term {
        for def in defs {
            defined.insert((def.name, def.args.len()));
            defined_in(&def.body, defined);
        }
    }
    for child in children(term) {
        defined_in(child, defined);
    }
}

/// The terms directly inside `term` (not the bodies of its definitions).
fn children<S>(term: &Term<S>) -> Vec<&Term<S>> {
    match term {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Var(_) | Term::Break(_) => Vec::new(),
        Term::Str(_, parts) => parts
            .iter()
            .filter_map(|part| match part {
                StrPart::Term(t) => Some(t),
                _ => None,
            })
            .collect(),
        Term::Arr(t) => t.iter().map(|t| &**t).collect(),
        Term::Obj(entries) => entries
            .iter()
            .flat_map(|(k, v)| std::iter::once(k).chain(v))
            .collect(),
        Term::Neg(t) | Term::Label(_, t) | Term::Def(_, t) => vec![t],
        Term::BinOp(l, _, r) => vec![l, r],
        Term::Fold(_, xs, _, args) => std::iter::once(&**xs).chain(args).collect(),
        Term::TryCatch(t, c) => std::iter::once(&**t).chain(c.as_deref()).collect(),
        Term::IfThenElse(branches, otherwise) => branches
            .iter()
            .flat_map(|(cond, then)| [cond, then])
            .chain(otherwise.as_deref())
            .collect(),
        Term::Call(_, args) => args.iter().collect(),
        Term::Path(t, path) => std::iter::once(&**t)
            .chain(path.0.iter().flat_map(|(part, _)| match part {
                Part::Index(i) => vec![i],
                Part::Range(from, to) => from.iter().chain(to).collect(),
            }))
            .collect(),
    }
}

/// `#step | term`
fn step(term: Term<&str>) -> Term<&str> {
    Term::BinOp(
        Box::new(Term::Call(STEP, Vec::new())),
        BinaryOp::Pipe(None),
        Box::new(term),
    )
}

/// `term | #built`
fn built(term: Term<&str>) -> Term<&str> {
    Term::BinOp(
        Box::new(term),
        BinaryOp::Pipe(None),
        Box::new(Term::Call(BUILT, Vec::new())),
    )
}

/// The rewrite that meters a program (see the module documentation).
struct Rewrite<'s> {
    /// Native filters by name and arity, except those a definition shadows.
    natives: HashSet<(&'s str, usize)>,
}

impl<'s> Rewrite<'s> {
    fn def(&self, def: Def<&'s str>) -> Def<&'s str> {
        Def {
            name: def.name,
            args: def.args,
            body: step(self.term(def.body)),
        }
    }

    fn boxed(&self, term: Box<Term<&'s str>>) -> Box<Term<&'s str>> {
        // Rewrites in place: the parser's boxes are kept.
        let mut term = term;
        *term = self.term(std::mem::take(&mut *term));
        term
    }

    fn term(&self, term: Term<&'s str>) -> Term<&'s str> {
        match term {
            Term::Id | Term::Recurse | Term::Num(_) | Term::Var(_) | Term::Break(_) => term,
            Term::Str(format, parts) => {
                let interpolated =
                    format.is_some() || parts.iter().any(|part| matches!(part, StrPart::Term(_)));
                let parts = parts
                    .into_iter()
                    .map(|part| match part {
                        StrPart::Term(t) => StrPart::Term(self.term(t)),
                        other => other,
                    })
                    .collect();
                let term = Term::Str(format, parts);
                if interpolated { built(term) } else { term }
            }
            Term::Arr(t) => built(Term::Arr(t.map(|t| self.boxed(t)))),
            Term::Obj(entries) => built(Term::Obj(
                entries
                    .into_iter()
                    .map(|(k, v)| (self.term(k), v.map(|v| self.term(v))))
                    .collect(),
            )),
            Term::Neg(t) => Term::Neg(self.boxed(t)),
            Term::Label(label, t) => Term::Label(label, self.boxed(t)),
            Term::Def(defs, t) => Term::Def(
                defs.into_iter().map(|def| self.def(def)).collect(),
                self.boxed(t),
            ),
            Term::Fold(name, xs, pattern, args) => {
                let args = args
                    .into_iter()
                    .enumerate()
                    .map(|(i, arg)| {
                        // The update runs once per iteration.
                        if i == 1 {
                            step(self.term(arg))
                        } else {
                            self.term(arg)
                        }
                    })
                    .collect();
                Term::Fold(name, self.boxed(xs), self.pattern(pattern), args)
            }
            Term::TryCatch(t, c) => Term::TryCatch(self.boxed(t), c.map(|c| self.boxed(c))),
            Term::IfThenElse(branches, otherwise) => Term::IfThenElse(
                branches
                    .into_iter()
                    .map(|(cond, then)| (self.term(cond), self.term(then)))
                    .collect(),
                otherwise.map(|t| self.boxed(t)),
            ),
            Term::Call(name, args) => {
                let native = self.natives.contains(&(name, args.len()));
                let call = Term::Call(name, args.into_iter().map(|a| self.term(a)).collect());
                if native { built(call) } else { call }
            }
            Term::Path(t, path) => Term::Path(
                self.boxed(t),
                Path(
                    path.0
                        .into_iter()
                        .map(|(part, opt)| {
                            let part = match part {
                                Part::Index(i) => Part::Index(self.term(i)),
                                Part::Range(from, to) => Part::Range(
                                    from.map(|t| self.term(t)),
                                    to.map(|t| self.term(t)),
                                ),
                            };
                            (part, opt)
                        })
                        .collect(),
                ),
            ),
            Term::BinOp(l, op, r) => {
                let (l, r) = (self.term(*l), self.term(*r));
                match op {
                    BinaryOp::Math(jaq_core::ops::Math::Mul) => built(Term::Call(MUL, vec![l, r])),
                    // `l *= r` is `r as $x | l |= . * $x`.
                    BinaryOp::UpdateMath(jaq_core::ops::Math::Mul) => built(Term::BinOp(
                        Box::new(r),
                        BinaryOp::Pipe(Some(Pattern::Var(MUL_RIGHT))),
                        Box::new(Term::BinOp(
                            Box::new(l),
                            BinaryOp::Update,
                            Box::new(Term::Call(MUL, vec![Term::Id, Term::Var(MUL_RIGHT)])),
                        )),
                    )),
                    BinaryOp::Math(_)
                    | BinaryOp::Assign
                    | BinaryOp::Update
                    | BinaryOp::UpdateMath(_)
                    | BinaryOp::UpdateAlt => built(Term::BinOp(Box::new(l), op, Box::new(r))),
                    BinaryOp::Pipe(pattern) => Term::BinOp(
                        Box::new(l),
                        BinaryOp::Pipe(pattern.map(|p| self.pattern(p))),
                        Box::new(r),
                    ),
                    BinaryOp::Comma
                    | BinaryOp::Alt
                    | BinaryOp::Or
                    | BinaryOp::And
                    | BinaryOp::Cmp(_) => Term::BinOp(Box::new(l), op, Box::new(r)),
                }
            }
        }
    }

    fn pattern(&self, pattern: Pattern<&'s str>) -> Pattern<&'s str> {
        match pattern {
            Pattern::Var(_) => pattern,
            Pattern::Arr(items) => {
                Pattern::Arr(items.into_iter().map(|p| self.pattern(p)).collect())
            }
            Pattern::Obj(entries) => Pattern::Obj(
                entries
                    .into_iter()
                    .map(|(key, p)| (self.term(key), self.pattern(p)))
                    .collect(),
            ),
        }
    }
}

/// Line and column (from 1) of `part`, a slice of `source` (or a suffix of it).
fn place(source: &str, part: &str) -> String {
    let start = source.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    let offset = if at >= start && at <= start + source.len() {
        at - start
    } else {
        source.len().saturating_sub(part.len())
    };
    let offset = (0..=offset.min(source.len()))
        .rev()
        .find(|i| source.is_char_boundary(*i))
        .unwrap_or(0);
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let near: String = source[offset..].chars().take(20).collect();
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

    fn limited(steps_max: u64) -> JqLimits {
        JqLimits {
            steps_max,
            ..JqLimits::default()
        }
    }

    fn run_limited(program: &str, input: Value, limits: &JqLimits) -> Result<Vec<Value>, JqError> {
        JqProgram::compile(program)
            .unwrap()
            .run_with(input, limits, &Arc::default())
    }

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
        assert!(err.contains("column 6"), "{err}");
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
        assert!(err.to_string().contains("failed"), "{err}");
        let err = JqProgram::compile("error(\"no reason\")")
            .unwrap()
            .run(json!({}))
            .unwrap_err();
        assert!(err.to_string().contains("no reason"), "{err}");
    }

    #[test]
    fn empty_drops_and_a_runaway_generator_is_bounded() {
        let drop = JqProgram::compile("empty").unwrap();
        assert_eq!(drop.run(json!({"a": 1})).unwrap(), Vec::<Value>::new());
        let runaway = JqProgram::compile("repeat(.)").unwrap();
        assert_eq!(
            runaway.run(json!(1)).unwrap_err(),
            JqError::Limit(JqLimit::Outputs(OUTPUTS_MAX))
        );
    }

    #[test]
    fn values_round_trip_through_jaq() {
        let value = json!({"s": "é\"\n", "n": 1.5, "i": -3, "big": 12345678901234i64,
                            "a": [null, true, false], "o": {}});
        let program = JqProgram::compile(".").unwrap();
        assert_eq!(program.run(value.clone()).unwrap(), vec![value]);
    }

    #[test]
    fn the_usual_filters_still_work_when_metered() {
        let cases = [
            ("[range(3)] | map(. * 2)", json!(null), json!([0, 2, 4])),
            ("reduce .[] as $x (0; . + $x)", json!([1, 2, 3]), json!(6)),
            ("[limit(3; repeat(1))]", json!(null), json!([1, 1, 1])),
            ("path(first(.a, .b))", json!({}), json!(["a"])),
            (
                ".a |= . + 1 | .b *= 2",
                json!({"a": 1, "b": 3}),
                json!({"a": 2, "b": 6}),
            ),
            ("\"x\" * 3", json!(null), json!("xxx")),
            ("[paths]", json!({"a": [1]}), json!([["a"], ["a", 0]])),
            (
                "to_entries | from_entries",
                json!({"k": 1}),
                json!({"k": 1}),
            ),
            ("tojson | fromjson", json!({"k": [1]}), json!({"k": [1]})),
            (
                "[.[] | tostring] | join(\",\")",
                json!([1, "a"]),
                json!("1,a"),
            ),
            (
                "def f: if . < 100 then . + 1 | f else . end; f",
                json!(0),
                json!(100),
            ),
            (
                "walk(if type == \"number\" then . + 1 else . end)",
                json!([1, [2]]),
                json!([2, [3]]),
            ),
            ("try error(\"x\") catch .", json!(null), json!("x")),
            (
                "[.[] | select(. > 1)] | sort | unique",
                json!([3, 2, 3, 1]),
                json!([2, 3]),
            ),
            ("gsub(\"a\"; \"b\")", json!("aXa"), json!("bXb")),
        ];
        for (program, input, expected) in cases {
            let out = JqProgram::compile(program)
                .unwrap_or_else(|e| panic!("{program}: {e}"))
                .run(input)
                .unwrap_or_else(|e| panic!("{program}: {e}"));
            assert_eq!(out, vec![expected], "{program}");
        }
    }

    #[test]
    fn recursion_that_never_yields_is_stopped_by_steps() {
        let err = run_limited("def f: f; f", json!({}), &limited(10_000)).unwrap_err();
        assert_eq!(err, JqError::Limit(JqLimit::Steps(10_000)));
    }

    #[test]
    fn loops_inside_a_value_are_stopped_by_steps() {
        for program in [
            "[repeat(.)]",
            "reduce range(1e12) as $i (0; . + 1)",
            "[range(1e12)] | length",
            "last(range(1e12))",
            "until(false; .)",
            "try (def f: f; f) catch \"caught\"",
            "[recurse(. + 1)]",
        ] {
            let err = run_limited(program, json!(0), &limited(10_000)).unwrap_err();
            assert_eq!(err, JqError::Limit(JqLimit::Steps(10_000)), "{program}");
        }
        // Catching the limit's error does not let the program go on: every later step
        // fails too. (This recursion is not a tail call, so the stack limit comes first.)
        let err = run_limited("def f: try f catch f; f", json!(0), &limited(10_000)).unwrap_err();
        assert_eq!(err, JqError::Limit(JqLimit::StackBytes(JQ_STACK_BYTES_MAX)));
    }

    #[test]
    fn the_step_limit_is_the_same_on_every_run() {
        let limits = limited(500);
        let program = JqProgram::compile("[range(.)] | add").unwrap();
        let steps_needed = (0..400)
            .find(|n| {
                program
                    .run_with(json!(n), &limits, &Arc::default())
                    .is_err()
            })
            .expect("some size exceeds 500 steps");
        for _ in 0..3 {
            assert!(
                program
                    .run_with(json!(steps_needed - 1), &limits, &Arc::default())
                    .is_ok()
            );
            assert!(
                program
                    .run_with(json!(steps_needed), &limits, &Arc::default())
                    .is_err()
            );
        }
    }

    #[test]
    fn deep_recursion_is_stopped_before_the_stack_overflows() {
        // Not a tail call: each level keeps a frame. Without the limit, this aborts the
        // whole process with a stack overflow.
        let program = "def f: [(. + 1 | f)]; f";
        let err = run_limited(program, json!(0), &JqLimits::default()).unwrap_err();
        assert_eq!(err, JqError::Limit(JqLimit::StackBytes(JQ_STACK_BYTES_MAX)));
    }

    #[test]
    fn time_is_bounded_when_steps_are_not() {
        let limits = JqLimits {
            steps_max: u64::MAX,
            run_millis_max: 50,
            ..JqLimits::default()
        };
        let err = run_limited("def f: f; f", json!(0), &limits).unwrap_err();
        assert_eq!(err, JqError::Limit(JqLimit::RunMillis(50)));
    }

    #[test]
    fn values_built_are_bounded_in_bytes() {
        let limits = JqLimits {
            output_bytes_max: 10_000,
            ..JqLimits::default()
        };
        let too_large = JqError::Limit(JqLimit::OutputBytes(10_000));
        for program in [
            // Doubling a string.
            "def f: . + . | f; f",
            // Doubling a shared array: little memory, but 2^40 values as text.
            "reduce range(40) as $i (.; [., .]) | tojson",
            "\"x\" * 1000000000000",
            "reduce range(64) as $i (3; . * .)",
            "[range(20000)]",
            "{a: (\"y\" * 20000)}",
        ] {
            let err = run_limited(program, json!("ab"), &limits).unwrap_err();
            assert_eq!(err, too_large, "{program}");
        }
        // Many outputs that are small alone.
        let err = run_limited("range(60) | \"z\" * 500", json!(0), &limits).unwrap_err();
        assert_eq!(err, too_large);
        // The input is not built by the program: a small answer about it is allowed.
        let big = json!("w".repeat(20_000));
        assert_eq!(
            run_limited("length", big, &limits).unwrap(),
            vec![json!(20_000)]
        );
    }

    #[test]
    fn values_built_are_bounded_in_depth() {
        let err = run_limited(
            "reduce range(100000) as $i (.; [.])",
            json!(0),
            &JqLimits::default(),
        )
        .unwrap_err();
        assert_eq!(err, JqError::Limit(JqLimit::ValueDepth(JQ_VALUE_DEPTH_MAX)));
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let err = run_limited("fromjson", json!(deep), &JqLimits::default()).unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }

    #[test]
    fn an_interrupt_stops_a_run_at_its_next_step() {
        let interrupt = Arc::new(AtomicBool::new(false));
        let program = JqProgram::compile("def f: f; f").unwrap();
        let limits = JqLimits {
            steps_max: u64::MAX,
            run_millis_max: 60_000,
            ..JqLimits::default()
        };
        let running = {
            let interrupt = interrupt.clone();
            std::thread::spawn(move || program.run_with(json!(0), &limits, &interrupt))
        };
        interrupt.store(true, Ordering::Relaxed);
        assert_eq!(running.join().unwrap().unwrap_err(), JqError::Interrupted);
    }

    #[test]
    fn long_programs_are_refused_before_they_are_parsed() {
        let program = format!(
            "{}.{}",
            "[".repeat(JQ_PROGRAM_BYTES_MAX),
            "]".repeat(JQ_PROGRAM_BYTES_MAX)
        );
        let err = JqProgram::compile(&program).unwrap_err();
        assert!(err.contains("jq_program_bytes_max"), "{err}");
    }

    #[test]
    fn the_most_nested_program_allowed_compiles_and_runs() {
        // Parsing and compiling recurse once per level: on a small stack this aborts.
        let half = JQ_PROGRAM_BYTES_MAX / 2 - 1;
        for program in [
            format!("{}.{}", "[".repeat(half), "]".repeat(half)),
            format!(".{}", "|.".repeat(half)),
            format!("1{}", "+1".repeat(half)),
        ] {
            let result = JqProgram::compile(&program).map(|p| p.run(json!(0)));
            match result {
                Ok(Ok(_)) | Ok(Err(JqError::Limit(_))) | Err(_) => {}
                Ok(Err(other)) => panic!("{other}"),
            }
        }
    }
}
