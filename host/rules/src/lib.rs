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

pub mod criteria;
pub mod jsonpath;
pub mod operators;
pub mod params;
mod sandbox;
pub mod template;

pub use criteria::{CriteriaOutcome, CriterionResult, evaluate_criteria};
pub use operators::{Operator, OperatorError};
