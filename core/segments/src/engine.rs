//! The one locked-down rhai engine segment scripts are compiled and run
//! with, and how a script sees a customer.
//!
//! A customer is a registered type, `Customer`, holding only its row; its
//! getters (one per catalog field, no setters) read the columns of the
//! frame the evaluating thread is working on, so no value is built for a
//! field the script does not read, and threads share nothing mutable.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, OptimizationLevel};

use crate::catalog::Catalog;
use crate::frame::Frame;

/// What one evaluation of a script may use.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// rhai operations per customer.
    pub operations: u64,
    /// Wall-clock time for a whole run over all customers.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            operations: 100_000,
            deadline: Duration::from_secs(10),
        }
    }
}

/// A customer as a script sees it: `c`.
#[derive(Clone, Copy, Debug)]
pub struct Customer {
    pub(crate) row: u32,
}

thread_local! {
    static FRAME: RefCell<Option<Arc<Frame>>> = const { RefCell::new(None) };
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// While alive, the current thread's getters read `frame` and its
/// evaluations stop at `deadline`.
pub(crate) struct Bound;

impl Bound {
    pub(crate) fn new(frame: &Arc<Frame>, deadline: Instant) -> Bound {
        FRAME.with(|f| *f.borrow_mut() = Some(Arc::clone(frame)));
        DEADLINE.with(|d| d.set(Some(deadline)));
        Bound
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        FRAME.with(|f| *f.borrow_mut() = None);
        DEADLINE.with(|d| d.set(None));
    }
}

pub(crate) fn past_deadline() -> bool {
    DEADLINE.with(|d| d.get().is_some_and(|at| Instant::now() >= at))
}

/// The engine for the fields of `catalog`. Safety settings are applied at
/// compile time too, so scripts are only ever compiled with this engine.
pub fn engine(catalog: &Catalog, limits: Limits) -> Engine {
    let mut e = Engine::new();
    e.set_strict_variables(true)
        .set_optimization_level(OptimizationLevel::Full)
        .set_max_operations(limits.operations)
        .set_max_expr_depths(64, 32)
        .set_max_call_levels(16)
        .set_max_string_size(16 * 1024)
        .set_max_array_size(10_000)
        .set_max_map_size(500)
        .set_max_variables(64)
        .set_max_functions(32)
        .set_fail_on_invalid_map_property(true);
    for keyword in ["while", "loop", "do"] {
        e.disable_symbol(keyword);
    }
    // Nothing that blocks the thread: a script that sleeps would hold up
    // every analysis and segment test queued behind it (the deadline is
    // checked between operations, and a sleep is one). The functions
    // registered here take the place of rhai's own.
    e.register_fn("sleep", |_: i64| -> Result<(), Box<EvalAltResult>> {
        Err("sleep is not available in segment scripts".into())
    });
    e.register_fn("sleep", |_: f64| -> Result<(), Box<EvalAltResult>> {
        Err("sleep is not available in segment scripts".into())
    });
    // Scripts have no stdout; `print` and `debug` go nowhere.
    e.on_print(|_| {});
    e.on_debug(|_, _, _| {});
    e.on_progress(|ops| {
        if ops % 1024 == 0 && past_deadline() {
            Some(Dynamic::from("the segment's time limit was reached"))
        } else {
            None
        }
    });
    e.register_type_with_name::<Customer>("Customer");
    for (index, field) in catalog.fields().iter().enumerate() {
        let name = field.name.clone();
        e.register_get(
            &field.name,
            move |c: &mut Customer| -> Result<Dynamic, Box<EvalAltResult>> {
                FRAME.with(
                    |f| match f.borrow().as_ref().and_then(|f| f.column(index)) {
                        Some(column) => Ok(column.dynamic(c.row)),
                        None => Err(format!(
                            "{name} is read through another variable; read it as c.{name}"
                        )
                        .into()),
                    },
                )
            },
        );
    }
    register_helpers(&mut e);
    e
}

fn register_helpers(e: &mut Engine) {
    e.register_fn("date", |text: &str| -> Result<i64, Box<EvalAltResult>> {
        model::Date::parse(text)
            .map(|d| d.days() as i64)
            .map_err(|err| format!("date(\"{text}\"): {err}").into())
    });
    e.register_fn("days_between", |a: Dynamic, b: Dynamic| -> Dynamic {
        match (a.as_int(), b.as_int()) {
            (Ok(a), Ok(b)) => Dynamic::from_int(b - a),
            _ => Dynamic::UNIT,
        }
    });
    e.register_fn("day_text", |d: i64| {
        i32::try_from(d).map_or_else(|_| String::new(), |d| model::Date::from_days(d).to_string())
    });
    e.register_fn("year", |d: i64| {
        i32::try_from(d).map_or(0, |d| model::Date::from_days(d).year() as i64)
    });
    e.register_fn("month", |d: i64| {
        i32::try_from(d).map_or(0, |d| model::Date::from_days(d).ymd().1 as i64)
    });
    e.register_fn("is_missing", |v: Dynamic| v.is_unit());
}
