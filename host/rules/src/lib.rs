//! StackStorm rule semantics (`docs/st2-api.md` §3): criteria operators, criteria keys
//! (jsonpath over `{trigger: <payload>}`), and Jinja pattern rendering.
//!
//! Architecture invariant: this crate does no IO. The datastore values a template may read are
//! handed in with the context.
//!
//! # Layout
//!
//! - [`operators`]: every operator and alias, with Python's semantics.
//! - [`jsonpath`]: criteria keys (`trigger.body.items[0].name`, `trigger.headers['X-Y']`, `#suffix`).
//! - [`template`]: Jinja rendering of patterns (minijinja, strict undefined, `{{ x }}` keeps its type),
//!   bounded in time (fuel) and memory (size caps).
//! - [`criteria`]: a rule's criteria, ANDed, with the reason the first failing one failed.
//! - [`params`]: action parameters rendered in dependency order and cast to declared types.
//! - `filters`: StackStorm's own Jinja filters (`to_json_string`, `regex_replace`,
//!   `version_compare`, ...); `python`: Python's `str()`, `repr()` and `%` formatting of template
//!   values; `kv`: the `st2kv` datastore lookups (a missing key renders as `""`).

pub mod criteria;
mod filters;
pub mod jsonpath;
mod kv;
pub mod operators;
pub mod params;
mod python;
mod sandbox;
pub mod template;

pub use criteria::{CriteriaError, CriteriaOutcome, CriterionResult, evaluate_criteria};
pub use operators::{Operator, OperatorError};
