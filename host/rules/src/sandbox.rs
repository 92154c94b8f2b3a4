//! Resource bounds for user templates.
//!
//! Rule criteria patterns and action parameters are written by users and rendered with webhook
//! data, so a render must end quickly and must not allocate without bound, whatever the template
//! says. minijinja 3.1's own limits cover part of that; this module adds the rest.
//!
//! 1. **Fuel** ([`FUEL`]). minijinja charges every instruction, every byte written or created
//!    and every item a built-in filter visits, and refuses a string of known size (`'x' * n`,
//!    `replace`, `format` widths) before allocating it. The loop `{% for i in range(100000) %}
//!    {% for j in range(100000) %}{% endfor %}{% endfor %}` stops after [`FUEL`] steps.
//! 2. **Guarded operators.** Some of minijinja's operations are neither charged nor bounded:
//!    `[x] * n` and `list + list` build lazy sequences of any length (the latter materialized
//!    after 32 levels); `[l, l, l]` nested a few times shares children, so printing, comparing
//!    or hashing it walks far more than was charged; `{% set ns.x = ns %}` makes a cycle that
//!    printing, comparing, hashing or serializing follows until the stack overflows, which
//!    aborts the process. So every compiled template is rewritten, one instruction for one,
//!    before it runs: `+`, `*`, `~`, `%` (Python string formatting when the left side is a
//!    string, into a capped buffer), the comparisons (chained ones too), `in`, `x[y]`,
//!    list/tuple/map literals and `loop.changed()` call the functions of this module instead.
//!    They walk their operands first (charging fuel for the walk, refusing values nested deeper
//!    than [`MAX_VALUE_DEPTH`] or larger than [`MAX_VALUE_BYTES`]), build sequences eagerly, size
//!    results before building them, and then do minijinja's operation (numbers and errors keep
//!    minijinja's exact semantics: they are computed by minijinja itself). The formatter that
//!    prints `{{ value }}` walks containers the same way first.
//! 3. **Guarded filters, tests and functions.** Every filter, test and global function is
//!    wrapped the same way: arguments are walked before the call, the result after it. Filters
//!    whose output can be much larger than their input are sized before they run (`replace`,
//!    `join`, `indent`, `format`, `tojson`, `pprint`, `escape`); `sum` is reimplemented so that
//!    summing strings or lists is linear (minijinja's copies the total for every item).
//!    `debug()` (a dump of the whole context) is not available. StackStorm's filters
//!    (`filters/`) are added the same way; theirs write into buffers capped at
//!    [`MAX_VALUE_BYTES`] (`to_json_string`, `json_escape`, `regex_replace`, ...), and their
//!    regex compiling and matching cost one fuel per 250 ns they take (at least one per match),
//!    so at most about 250 ms of a render are spent on regexes.
//! 4. **Compile-time checks.** minijinja folds constant expressions while compiling, outside
//!    fuel: `[0] * 100000000` would become a lazy sequence that a folded `~`, comparison or `+`
//!    chain then walks or copies. A `*` between constants that repeats a list or tuple is
//!    refused (a constant is then never larger than its source text). minijinja's parser and
//!    compiler recurse once per operator and per `elif`, and overflow the stack (aborting the
//!    process) on a long enough chain (`1 + 1 + ...`, `-----1`, `x|abs|abs|...`): blocks with
//!    more than [`MAX_EXPRESSION_OPERATORS`] operators and templates with more than
//!    [`MAX_ELIF_BRANCHES`] `elif`s are refused before parsing.
//! 5. **Size caps.** A rendered string is refused above [`MAX_OUTPUT_BYTES`], the value of a
//!    single `{{ expression }}` above [`MAX_VALUE_BYTES`].
//!
//! # What is bounded by fuel only
//!
//! - The data a render creates in total: minijinja charges one fuel per 64 bytes of strings
//!   and per two list slots, so at most about `FUEL * 64` bytes (64 MiB) are created. That
//!   includes text written into a `{% set %}...{% endset %}` or `{% filter %}` block, a macro
//!   or `{% call %}` body, and the output itself: none of them is capped while it is written.
//!   The output is checked against [`MAX_OUTPUT_BYTES`] when the render ends; a captured string
//!   against [`MAX_VALUE_BYTES`] when an operator, filter or test next uses it.
//! - Work the guards do not charge: one operation on values within the caps. Printing or
//!   serializing such a value (`{{ list }}`, `string`, `tojson`, `pprint`) escapes its strings,
//!   up to six bytes per byte for control characters, so it can allocate about
//!   `6 * MAX_VALUE_BYTES` (48 MiB) before the result is charged and checked; case conversion
//!   (`upper`, `title`, ...) up to three times its input. `from_yaml_string`
//!   builds its whole result (YAML's aliases are limited by the parser) before it is checked;
//!   `to_yaml_string` writes into a buffer capped at [`MAX_VALUE_BYTES`]. Sorting (`sort`, `unique`, `groupby`,
//!   `dictsort`, `min`, `max`) compares items `n log n` times while the walk charged `n`.
//!   Unpacking (`{% set a, b = x %}`) iterates `x` once, uncharged, and fails the render if
//!   the length is wrong.
//! - Compiling: proportional to the template's source times its nesting (at most
//!   [`MAX_EXPRESSION_OPERATORS`] deep); the source length itself is not limited here.
//! - Values from the context (the webhook payload, datastore values) are as large as they are;
//!   a value larger than [`MAX_VALUE_BYTES`] cannot be operated on, filtered or returned by a
//!   single `{{ expression }}`, but can be looped over and its parts used.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::LazyLock;

use crate::{kv, python};
use minijinja::machinery::{self, CodeGenerator, Instruction, Instructions, Token, ast};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{
    Kwargs, Object, ObjectRepr, Rest, Tuple, Value, ValueKind, ValueOrKwargs, from_args,
};
use minijinja::{
    AutoEscape, Environment, Error, ErrorKind, Expression, Output, State, UndefinedBehavior,
    filters, functions, tests,
};

/// Fuel for one render: minijinja's budget of steps (one per instruction, plus one per 64
/// bytes of data produced and per two items a filter visits). A loop body of a few instructions
/// can run about a hundred thousand times; a nested `range(100000)` loop fails after about
/// 50 ms (release build). It also bounds the data a render can create to about 64 MiB.
pub const FUEL: u64 = 1_000_000;

/// Largest rendered string, in bytes. Twice the default webhook body limit (4 MiB), so that a
/// template that passes the whole payload on (`{{ trigger.body | tojson }}`) keeps working.
pub const MAX_OUTPUT_BYTES: usize = 8 << 20;

/// Largest single value a template may produce or operate on, in bytes as printed (estimated
/// while walking it: strings count their length plus quotes, containers their punctuation).
pub const MAX_VALUE_BYTES: usize = 8 << 20;

/// Deepest nesting of lists and maps a template may produce or operate on.
pub const MAX_VALUE_DEPTH: usize = 256;

/// Most operators (`+`, `|`, `.`, `[`, `(`, `not`, `and`, ...) in a single `{{ ... }}` or
/// `{% ... %}` block: minijinja's parser and compiler recurse once per operator.
pub const MAX_EXPRESSION_OPERATORS: usize = 1_000;

/// Most `{% elif %}` branches in a template: the parser recurses once per branch too.
pub const MAX_ELIF_BRANCHES: usize = 500;

/// The name minijinja reports templates under.
const TEMPLATE_NAME: &str = "<string>";

/// The guard functions the rewritten instructions call. The names are not identifiers, so a
/// template can neither call nor shadow them.
mod name {
    pub(super) const ADD: &str = "\0add";
    pub(super) const MUL: &str = "\0mul";
    pub(super) const CONCAT: &str = "\0concat";
    pub(super) const EQ: &str = "\0eq";
    pub(super) const NE: &str = "\0ne";
    pub(super) const LT: &str = "\0lt";
    pub(super) const LTE: &str = "\0lte";
    pub(super) const GT: &str = "\0gt";
    pub(super) const GTE: &str = "\0gte";
    pub(super) const IN: &str = "\0in";
    pub(super) const NOT_IN: &str = "\0not_in";
    pub(super) const KEEP_EQ: &str = "\0keep_eq";
    pub(super) const KEEP_NE: &str = "\0keep_ne";
    pub(super) const KEEP_LT: &str = "\0keep_lt";
    pub(super) const KEEP_LTE: &str = "\0keep_lte";
    pub(super) const KEEP_GT: &str = "\0keep_gt";
    pub(super) const KEEP_GTE: &str = "\0keep_gte";
    pub(super) const KEEP_IN: &str = "\0keep_in";
    pub(super) const KEEP_NOT_IN: &str = "\0keep_not_in";
    pub(super) const GET_ITEM: &str = "\0get_item";
    pub(super) const LIST: &str = "\0list";
    pub(super) const TUPLE: &str = "\0tuple";
    pub(super) const MAP: &str = "\0map";
    pub(super) const CHANGED: &str = "\0changed";
    pub(super) const MOD: &str = "\0mod";
}

// ---------------------------------------------------------------------------------------------
// Errors

pub(crate) fn too_large() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("value larger than {MAX_VALUE_BYTES} bytes"),
    )
}

fn too_deep() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("value nested deeper than {MAX_VALUE_DEPTH} levels"),
    )
}

/// The message for a failed render. Running out of fuel is named as such.
pub(crate) fn describe(err: &Error) -> String {
    match err.kind() {
        ErrorKind::OutOfFuel => format!("template exceeded its fuel (too many steps): {err}"),
        _ => err.to_string(),
    }
}

/// An error from a nested evaluation, without its location (the caller's is attached).
fn relocate(err: Error) -> Error {
    match err.detail() {
        Some(detail) => Error::new(err.kind(), detail.to_owned()),
        None => Error::from(err.kind()),
    }
}

// ---------------------------------------------------------------------------------------------
// Compiling and running

/// Refuses template blocks with more than [`MAX_EXPRESSION_OPERATORS`] operators. Only
/// operators nest (`1 + 1 + 1` is three levels deep, a list of a thousand items one), so long
/// literals stay allowed. Lexer errors are left to the parser, which reports them with context.
/// Also refuses more than [`MAX_ELIF_BRANCHES`] `{% elif %}`: the parser recurses once per
/// branch.
fn check_operators(source: &str, in_expr: bool) -> Result<(), Error> {
    let mut count = 0usize;
    let mut elifs = 0usize;
    let mut block_start = false;
    for token in machinery::tokenize(source, in_expr, SyntaxConfig::default()) {
        let Ok((token, _)) = token else {
            return Ok(());
        };
        let after_block_start =
            std::mem::replace(&mut block_start, matches!(token, Token::BlockStart));
        match token {
            Token::Ident("elif") if after_block_start => {
                elifs += 1;
                if elifs > MAX_ELIF_BRANCHES {
                    return Err(Error::new(
                        ErrorKind::SyntaxError,
                        format!("more than {MAX_ELIF_BRANCHES} elif branches"),
                    ));
                }
            }
            Token::VariableStart | Token::BlockStart | Token::TemplateData(_) => count = 0,
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::FloorDiv
            | Token::Pow
            | Token::Mod
            | Token::Dot
            | Token::Tilde
            | Token::Pipe
            | Token::Eq
            | Token::Ne
            | Token::Gt
            | Token::Gte
            | Token::Lt
            | Token::Lte
            | Token::BracketOpen
            | Token::ParenOpen
            | Token::Ident("not" | "and" | "or" | "in" | "is" | "if" | "else") => {
                count += 1;
                if count > MAX_EXPRESSION_OPERATORS {
                    return Err(Error::new(
                        ErrorKind::SyntaxError,
                        format!("expression with more than {MAX_EXPRESSION_OPERATORS} operators"),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses `*` between constants when it repeats a list or tuple (`[0] * 100000000`).
///
/// minijinja's compiler folds constant expressions while compiling, outside fuel and the guard
/// functions: `[x] * n` becomes a lazy sequence of any length, and a folded `~`, comparison,
/// `in` or long `+` chain around it walks or copies it while the template is still compiling.
/// Without repetition a constant is no larger than its source text. Repeating a variable
/// (`{% set zero = [0] %}{{ zero * 3 }}`) is done at run time, bounded.
fn check_constants_stmt(stmt: &ast::Stmt<'_>) -> Result<(), Error> {
    use ast::Stmt;
    let exprs = |items: &[&ast::Expr<'_>]| items.iter().try_for_each(|e| check_constants(e));
    let body = |stmts: &[ast::Stmt<'_>]| stmts.iter().try_for_each(check_constants_stmt);
    match stmt {
        Stmt::Template(t) => body(&t.children),
        Stmt::EmitExpr(e) => check_constants(&e.expr),
        Stmt::EmitRaw(_) => Ok(()),
        Stmt::ForLoop(l) => {
            exprs(&[&l.target, &l.iter])?;
            if let Some(filter) = &l.filter_expr {
                check_constants(filter)?;
            }
            body(&l.body)?;
            body(&l.else_body)
        }
        Stmt::IfCond(c) => {
            check_constants(&c.expr)?;
            body(&c.true_body)?;
            body(&c.false_body)
        }
        Stmt::WithBlock(w) => {
            for (target, value) in &w.assignments {
                exprs(&[target, value])?;
            }
            body(&w.body)
        }
        Stmt::Set(s) => exprs(&[&s.target, &s.expr]),
        Stmt::SetBlock(s) => {
            check_constants(&s.target)?;
            if let Some(filter) = &s.filter {
                check_constants(filter)?;
            }
            body(&s.body)
        }
        Stmt::AutoEscape(a) => {
            check_constants(&a.enabled)?;
            body(&a.body)
        }
        Stmt::FilterBlock(f) => {
            check_constants(&f.filter)?;
            body(&f.body)
        }
        Stmt::Macro(m) => check_constants_macro(m),
        Stmt::CallBlock(c) => {
            check_constants_call(&c.call)?;
            check_constants_macro(&c.macro_decl)
        }
        Stmt::Do(d) => check_constants_call(&d.call),
    }
}

fn check_constants_macro(m: &ast::Macro<'_>) -> Result<(), Error> {
    m.args
        .iter()
        .chain(&m.defaults)
        .try_for_each(check_constants)?;
    m.body.iter().try_for_each(check_constants_stmt)
}

fn check_constants_call(call: &ast::Call<'_>) -> Result<(), Error> {
    check_constants(&call.expr)?;
    check_constants_args(&call.args)
}

fn check_constants_args(args: &[ast::CallArg<'_>]) -> Result<(), Error> {
    args.iter().try_for_each(|arg| match arg {
        ast::CallArg::Pos(e)
        | ast::CallArg::Kwarg(_, e)
        | ast::CallArg::PosSplat(e)
        | ast::CallArg::KwargSplat(e) => check_constants(e),
    })
}

fn check_constants(expr: &ast::Expr<'_>) -> Result<(), Error> {
    use ast::Expr;
    let opt = |e: &Option<Expr<'_>>| e.as_ref().map_or(Ok(()), check_constants);
    match expr {
        Expr::Var(_) | Expr::Const(_) => Ok(()),
        Expr::Slice(s) => {
            check_constants(&s.expr)?;
            opt(&s.start)?;
            opt(&s.stop)?;
            opt(&s.step)
        }
        Expr::UnaryOp(u) => check_constants(&u.expr),
        Expr::BinOp(b) => {
            if matches!(b.op, ast::BinOpKind::Mul)
                && is_constant(&b.left)
                && is_constant(&b.right)
                && (has_sequence(&b.left) || has_sequence(&b.right))
            {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "repeating a constant list or tuple (`[x] * n`) is not supported; \
                     repeat a variable instead",
                ));
            }
            check_constants(&b.left)?;
            check_constants(&b.right)
        }
        Expr::Compare(c) => {
            check_constants(&c.expr)?;
            c.ops.iter().try_for_each(|op| check_constants(&op.expr))
        }
        Expr::IfExpr(i) => {
            check_constants(&i.test_expr)?;
            check_constants(&i.true_expr)?;
            opt(&i.false_expr)
        }
        Expr::Filter(f) => {
            opt(&f.expr)?;
            check_constants_args(&f.args)
        }
        Expr::Test(t) => {
            check_constants(&t.expr)?;
            check_constants_args(&t.args)
        }
        Expr::GetAttr(g) => check_constants(&g.expr),
        Expr::GetItem(g) => {
            check_constants(&g.expr)?;
            check_constants(&g.subscript_expr)
        }
        Expr::Call(c) => check_constants_call(c),
        Expr::List(l) => l.items.iter().try_for_each(check_constants),
        Expr::Tuple(t) => t.items.iter().try_for_each(check_constants),
        Expr::Map(m) => m.keys.iter().chain(&m.values).try_for_each(check_constants),
    }
}

/// Whether the compiler may fold `expr` into a constant (the shape `Expr::as_const` accepts).
fn is_constant(expr: &ast::Expr<'_>) -> bool {
    use ast::Expr;
    match expr {
        Expr::Const(_) => true,
        Expr::List(l) => l.items.iter().all(is_constant),
        Expr::Tuple(t) => t.items.iter().all(is_constant),
        Expr::Map(m) => m.keys.iter().chain(&m.values).all(is_constant),
        Expr::UnaryOp(u) => is_constant(&u.expr),
        Expr::BinOp(b) => is_constant(&b.left) && is_constant(&b.right),
        Expr::Compare(c) => is_constant(&c.expr) && c.ops.iter().all(|op| is_constant(&op.expr)),
        _ => false,
    }
}

/// Whether a constant expression contains a list or tuple.
fn has_sequence(expr: &ast::Expr<'_>) -> bool {
    use ast::Expr;
    match expr {
        Expr::List(_) | Expr::Tuple(_) => true,
        Expr::Const(c) => matches!(c.value.kind(), ValueKind::Seq | ValueKind::Iterable),
        Expr::Map(m) => m.keys.iter().chain(&m.values).any(has_sequence),
        Expr::UnaryOp(u) => has_sequence(&u.expr),
        Expr::BinOp(b) => has_sequence(&b.left) || has_sequence(&b.right),
        Expr::Compare(c) => has_sequence(&c.expr) || c.ops.iter().any(|op| has_sequence(&op.expr)),
        _ => false,
    }
}

/// Rewrites bounded-work instructions into calls of the guard functions (one for one, so no
/// jump target moves).
fn rewrite(instructions: &mut Instructions<'_>) -> Result<(), Error> {
    fn args(n: usize) -> Result<Option<u16>, Error> {
        u16::try_from(n)
            .map(Some)
            .map_err(|_| Error::new(ErrorKind::SyntaxError, "literal with too many items"))
    }
    fn keep(op: &str) -> Option<&'static str> {
        Some(match op {
            "Eq" => name::KEEP_EQ,
            "Ne" => name::KEEP_NE,
            "Lt" => name::KEEP_LT,
            "Lte" => name::KEEP_LTE,
            "Gt" => name::KEEP_GT,
            "Gte" => name::KEEP_GTE,
            "In" => name::KEEP_IN,
            "NotIn" => name::KEEP_NOT_IN,
            _ => return None,
        })
    }
    let call = |name: &'static str, n: Option<u16>| Instruction::CallFunction(name, n);
    // Two instructions can only become one call if nothing jumps to the second: in
    // `not (x or a in b)` the `or` jumps straight to the `not`.
    let mut targets = std::collections::BTreeSet::new();
    let mut pc = 0u32;
    while let Some(instr) = instructions.get(pc) {
        if let Instruction::Jump(target)
        | Instruction::JumpIfFalse(target)
        | Instruction::JumpIfFalseOrPop(target)
        | Instruction::JumpIfTrueOrPop(target)
        | Instruction::Iterate(target)
        | Instruction::BuildMacro(_, target, _) = instr
        {
            targets.insert(*target);
        }
        pc += 1;
    }
    let mut pc = 0u32;
    while let Some(instr) = instructions.get(pc) {
        let next = instructions
            .get(pc + 1)
            .filter(|_| !targets.contains(&(pc + 1)));
        // (replacement for pc, replacement for pc + 1)
        let (this, following) = match instr {
            Instruction::Add => (call(name::ADD, Some(2)), None),
            Instruction::Mul => (call(name::MUL, Some(2)), None),
            Instruction::Rem => (call(name::MOD, Some(2)), None),
            Instruction::StringConcat => (call(name::CONCAT, Some(2)), None),
            Instruction::Eq => (call(name::EQ, Some(2)), None),
            Instruction::Ne => (call(name::NE, Some(2)), None),
            Instruction::Lt => (call(name::LT, Some(2)), None),
            Instruction::Lte => (call(name::LTE, Some(2)), None),
            Instruction::Gt => (call(name::GT, Some(2)), None),
            Instruction::Gte => (call(name::GTE, Some(2)), None),
            // `not in` (and `not (a in b)`): one call; the `not` becomes a jump to the next
            // instruction, which does nothing.
            Instruction::In if matches!(next, Some(Instruction::Not)) => {
                (call(name::NOT_IN, Some(2)), Some(Instruction::Jump(pc + 2)))
            }
            Instruction::In => (call(name::IN, Some(2)), None),
            // `a < b < c`: `CompareAndPreserve` keeps `b` for the next comparison and a
            // `JumpIfFalseOrPop` ends the chain early. The call instead leaves `b`, or a marker
            // that makes the rest of the chain false; the jump becomes a no-op.
            Instruction::CompareAndPreserve(op) => {
                let op = format!("{op:?}");
                let Some(keep) = keep(&op) else {
                    return Err(Error::new(
                        ErrorKind::SyntaxError,
                        format!("unsupported comparison {op}"),
                    ));
                };
                if !matches!(next, Some(Instruction::JumpIfFalseOrPop(_))) {
                    return Err(Error::new(
                        ErrorKind::SyntaxError,
                        "unsupported chained comparison",
                    ));
                }
                (call(keep, Some(2)), Some(Instruction::Jump(pc + 2)))
            }
            Instruction::GetItem => (call(name::GET_ITEM, Some(2)), None),
            Instruction::BuildList(n) => {
                (call(name::LIST, n.map(args).transpose()?.flatten()), None)
            }
            Instruction::BuildTuple(n) => {
                (call(name::TUPLE, n.map(args).transpose()?.flatten()), None)
            }
            Instruction::BuildMap(n) => (call(name::MAP, args(n.saturating_mul(2))?), None),
            Instruction::CallMethod("changed", n) => (call(name::CHANGED, *n), None),
            _ => {
                pc += 1;
                continue;
            }
        };
        if let Some(slot) = instructions.get_mut(pc) {
            *slot = this;
        }
        if let Some(following) = following {
            if let Some(slot) = instructions.get_mut(pc + 1) {
                *slot = following;
            }
            pc += 1;
        }
        pc += 1;
    }
    Ok(())
}

/// Renders `source` with `ctx`, bounded.
pub(crate) fn render(
    env: &Environment<'static>,
    source: &str,
    ctx: Value,
) -> Result<String, Error> {
    check_operators(source, false)?;
    let ast = machinery::parse(source, TEMPLATE_NAME, syntax())?;
    check_constants_stmt(&ast)?;
    let mut generator = CodeGenerator::new(TEMPLATE_NAME, source);
    generator.compile_stmt(&ast);
    drop(ast);
    let (mut instructions, mut blocks) = generator.finish();
    rewrite(&mut instructions)?;
    for block in blocks.values_mut() {
        rewrite(block)?;
    }
    let mut rendered = String::new();
    let mut out = machinery::make_string_output(&mut rendered);
    machinery::eval(env, &instructions, ctx, &blocks, &mut out, AutoEscape::None)?;
    if rendered.len() > MAX_OUTPUT_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("rendered output larger than {MAX_OUTPUT_BYTES} bytes"),
        ));
    }
    Ok(rendered)
}

/// Evaluates the expression `source` with `ctx`, bounded; the value is checked against
/// [`MAX_VALUE_BYTES`] and [`MAX_VALUE_DEPTH`].
pub(crate) fn eval(env: &Environment<'static>, source: &str, ctx: Value) -> Result<Value, Error> {
    check_operators(source, true)?;
    let ast = machinery::parse_expr(source)?;
    check_constants(&ast)?;
    let mut generator = CodeGenerator::new("<expression>", source);
    generator.compile_expr(&ast);
    drop(ast);
    let (mut instructions, _) = generator.finish();
    rewrite(&mut instructions)?;
    let mut sink = String::new();
    let mut out = machinery::make_string_output(&mut sink);
    let (value, _) = machinery::eval(
        env,
        &instructions,
        ctx,
        &BTreeMap::new(),
        &mut out,
        AutoEscape::None,
    )?;
    let value = value.unwrap_or(Value::UNDEFINED);
    measure(&value, MAX_VALUE_BYTES)?;
    Ok(value)
}

/// Checks that `source` is safe to compile with minijinja's own API (for callers that compile
/// it themselves, e.g. to list its variables): short enough blocks, no constant repetition.
pub(crate) fn check_source(source: &str) -> Result<(), Error> {
    check_operators(source, false)?;
    check_constants_stmt(&machinery::parse(source, TEMPLATE_NAME, syntax())?)
}

/// Whether `source` is not a template at all: it does not parse, though within the bounds
/// (StackStorm's `param.py::_process` takes such a value as it is).
pub(crate) fn is_malformed(source: &str) -> bool {
    check_operators(source, false).is_ok()
        && machinery::parse(source, TEMPLATE_NAME, syntax()).is_err()
}

/// StackStorm's whitespace settings (`get_jinja_environment(trim_blocks=True,
/// lstrip_blocks=True)`): the newline after a block tag is removed, and the spaces before one
/// on its line.
pub(crate) fn syntax() -> SyntaxConfig {
    SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Measuring values

/// What walking a value found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Size {
    /// Bytes as printed (an estimate that errs on the large side for containers).
    pub(crate) bytes: usize,
    /// Values visited.
    pub(crate) nodes: usize,
    /// Deepest nesting.
    pub(crate) depth: usize,
}

/// Walks `value`, failing as soon as it is larger than `limit` or deeper than
/// [`MAX_VALUE_DEPTH`]. The walk visits at most about `limit` values, whatever the value shares
/// or contains.
fn measure(value: &Value, limit: usize) -> Result<Size, Error> {
    let mut size = Size::default();
    measure_into(value, 0, limit, &mut size)?;
    Ok(size)
}

fn measure_into(value: &Value, depth: usize, limit: usize, size: &mut Size) -> Result<(), Error> {
    size.nodes += 1;
    size.depth = size.depth.max(depth);
    match value.kind() {
        ValueKind::String => size.bytes += value.as_str().map_or(0, str::len) + 3,
        ValueKind::Bytes => size.bytes += value.as_bytes().map_or(0, <[u8]>::len) * 4 + 3,
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map => {
            if depth >= MAX_VALUE_DEPTH {
                return Err(too_deep());
            }
            size.bytes += 3;
            if let Some(object) = value.as_object() {
                if object.repr() == ObjectRepr::Map {
                    for (key, item) in object.try_iter_pairs().into_iter().flatten() {
                        measure_into(&key, depth + 1, limit, size)?;
                        measure_into(&item, depth + 1, limit, size)?;
                    }
                } else {
                    for item in object.try_iter().into_iter().flatten() {
                        measure_into(&item, depth + 1, limit, size)?;
                    }
                }
            }
        }
        // Macros, functions, the loop object: printed as a short tag.
        ValueKind::Plain => size.bytes += 32,
        _ => {
            let mut counter = Counter(0);
            let _ = write!(counter, "{value}");
            size.bytes += counter.0 + 2;
        }
    }
    if size.bytes > limit {
        Err(too_large())
    } else {
        Ok(())
    }
}

/// Counts the bytes written to it.
struct Counter(usize);

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// A string writer that refuses to grow past a limit.
pub(crate) struct Capped {
    pub(crate) buf: String,
    limit: usize,
}

impl Capped {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            buf: String::new(),
            limit,
        }
    }
}

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.buf.len() + s.len() > self.limit {
            return Err(fmt::Error);
        }
        self.buf.push_str(s);
        Ok(())
    }
}

/// Fuel for walking a value: half a fuel per value visited (minijinja charges that much per
/// item a filter visits) and one per 256 bytes of strings compared, hashed or copied.
fn charge(state: &State, size: &Size) -> Result<(), Error> {
    state.consume_fuel(size.nodes as u64 / 2 + size.bytes as u64 / 256)
}

/// Walks a value that is about to be used (charging for the walk) and refuses it if it is too
/// large or too deep. Strings and scalars cost nothing to check.
pub(crate) fn guard(state: &State, value: &Value) -> Result<Size, Error> {
    if value.as_object().is_none() {
        let bytes = match value.kind() {
            ValueKind::String => value.as_str().map_or(0, str::len),
            ValueKind::Bytes => value.as_bytes().map_or(0, <[u8]>::len),
            _ => 8,
        };
        if bytes > MAX_VALUE_BYTES {
            return Err(too_large());
        }
        let size = Size {
            bytes,
            nodes: 1,
            depth: 0,
        };
        if bytes >= 256 {
            charge(state, &size)?;
        }
        return Ok(size);
    }
    let size = measure(value, MAX_VALUE_BYTES)?;
    charge(state, &size)?;
    Ok(size)
}

pub(crate) fn check_size(bytes: usize) -> Result<(), Error> {
    if bytes > MAX_VALUE_BYTES {
        Err(too_large())
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Nested evaluation of the operators themselves

/// A plain environment in which the guard functions do the operation itself, once they have
/// checked its operands: `1 + 2.5` and the like keep minijinja's exact semantics and errors.
static ARITHMETIC: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env
});

macro_rules! operation {
    ($name:ident, $source:literal) => {
        static $name: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| {
            ARITHMETIC
                .compile_expression($source)
                .expect("a valid expression")
        });
    };
}

operation!(ADD, "a + b");
operation!(MUL, "a * b");
operation!(IN, "a in b");
operation!(CONCAT, "a ~ b");
operation!(REM, "a % b");

/// Does `a <op> b` in [`ARITHMETIC`]. A nested evaluation costs about as much time as a few
/// instructions, so it is charged two fuel.
fn apply(
    state: &State,
    operation: &LazyLock<Expression<'static, 'static>>,
    a: Value,
    b: Value,
) -> Result<Value, Error> {
    state.consume_fuel(2)?;
    operation
        .eval(minijinja::context! { a => a, b => b })
        .map_err(relocate)
}

// ---------------------------------------------------------------------------------------------
// The guard functions

fn small_int(value: &Value) -> Option<i64> {
    if value.is_integer() {
        value.as_i64()
    } else {
        None
    }
}

/// Both operands as floats, if they are numbers and one of them is a float (minijinja then
/// computes in `f64`).
fn floats(a: &Value, b: &Value) -> Option<(f64, f64)> {
    if a.kind() != ValueKind::Number
        || b.kind() != ValueKind::Number
        || (a.is_integer() && b.is_integer())
    {
        return None;
    }
    Some((
        f64::try_from(a.clone()).ok()?,
        f64::try_from(b.clone()).ok()?,
    ))
}

/// Whether `value` is a list or other sequence that `+` and `*` would make lazy.
fn is_lazy_sequence(value: &Value) -> bool {
    matches!(value.kind(), ValueKind::Seq | ValueKind::Iterable) && !value.is_tuple()
}

fn op_add(state: &mut State, a: Value, b: Value) -> Result<Value, Error> {
    let (a, b) = (kv::as_text(a), kv::as_text(b));
    if let (Some(x), Some(y)) = (small_int(&a), small_int(&b))
        && let Some(sum) = x.checked_add(y)
    {
        return Ok(Value::from(sum));
    }
    if let Some((x, y)) = floats(&a, &b) {
        return Ok(Value::from(x + y));
    }
    let size_a = guard(state, &a)?;
    let size_b = guard(state, &b)?;
    check_size(size_a.bytes.saturating_add(size_b.bytes))?;
    if a.kind() == ValueKind::String && b.kind() == ValueKind::String {
        return concat(state, &a, &b);
    }
    if is_lazy_sequence(&a) && is_lazy_sequence(&b) {
        let mut items: Vec<Value> = a.try_iter()?.collect();
        items.extend(b.try_iter()?);
        return Ok(Value::from(items));
    }
    apply(state, &ADD, a, b)
}

/// `(repeated, count)` if `a * b` repeats a string or a sequence.
fn repetition<'v>(a: &'v Value, b: &'v Value) -> Option<(&'v Value, &'v Value)> {
    let repeatable = |v: &Value| {
        matches!(
            v.kind(),
            ValueKind::String | ValueKind::Seq | ValueKind::Iterable
        )
    };
    if repeatable(a) {
        Some((a, b))
    } else if repeatable(b) {
        Some((b, a))
    } else {
        None
    }
}

fn op_mul(state: &mut State, a: Value, b: Value) -> Result<Value, Error> {
    let (a, b) = (kv::as_text(a), kv::as_text(b));
    if let (Some(x), Some(y)) = (small_int(&a), small_int(&b))
        && let Some(product) = x.checked_mul(y)
    {
        return Ok(Value::from(product));
    }
    if let Some((x, y)) = floats(&a, &b) {
        return Ok(Value::from(x * y));
    }
    let size_a = guard(state, &a)?;
    let size_b = guard(state, &b)?;
    if let Some((repeated, count)) = repetition(&a, &b) {
        // Like minijinja: a negative count repeats zero times; a count that is not an integer
        // is left to minijinja to refuse.
        if let Ok(count) = i128::try_from(count.clone()) {
            let count = usize::try_from(count.max(0)).unwrap_or(usize::MAX);
            let size = if std::ptr::eq(repeated, &a) {
                size_a
            } else {
                size_b
            };
            let each = match repeated.as_str() {
                Some(s) => s.len(),
                None => size.bytes.saturating_sub(3),
            };
            check_size(each.saturating_mul(count))?;
            if is_lazy_sequence(repeated) {
                let items: Vec<Value> = repeated.try_iter()?.collect();
                let mut out = Vec::with_capacity(items.len().saturating_mul(count));
                for _ in 0..count {
                    out.extend(items.iter().cloned());
                }
                return Ok(Value::from(out));
            }
        }
    }
    apply(state, &MUL, a, b)
}

/// Whether `a ~ b` (or `a + b` on strings) must escape the side that is not safe.
fn needs_markup(state: &State, a: &Value, b: &Value) -> bool {
    a.is_safe() != b.is_safe() && !matches!(state.auto_escape(), AutoEscape::None)
}

fn concat(state: &mut State, a: &Value, b: &Value) -> Result<Value, Error> {
    if needs_markup(state, a, b) {
        let mut rendered = String::new();
        {
            let mut out = machinery::make_string_output(&mut rendered);
            for value in [a, b] {
                if value.is_safe() {
                    out.write_str(value.as_str().unwrap_or_default())
                        .map_err(|_| too_large())?;
                } else {
                    format_value(&mut out, state, value)?;
                }
            }
        }
        check_size(rendered.len())?;
        return Ok(Value::from_safe_string(rendered));
    }
    // Jinja2's `~` joins `str()` of both sides (`True`, `None`, `['a']`).
    let mut out = Capped::new(MAX_VALUE_BYTES);
    for value in [a, b] {
        out.write_str(&python::str_of(value)?)
            .map_err(|_| too_large())?;
    }
    Ok(if a.is_safe() && b.is_safe() {
        Value::from_safe_string(out.buf)
    } else {
        Value::from(out.buf)
    })
}

/// `%`: Python's string formatting when the left side is a string (`"%s-%d" % (a, b)`),
/// minijinja's remainder otherwise.
fn op_mod(state: &mut State, a: Value, b: Value) -> Result<Value, Error> {
    let (a, b) = (kv::as_text(a), kv::as_text(b));
    if let Some(format) = a.as_str() {
        strict_defined(state, &b)?;
        guard(state, &a)?;
        guard(state, &b)?;
        state.consume_fuel(format.len() as u64 / 64)?;
        return python::percent_format(format, &b).map(Value::from);
    }
    apply(state, &REM, a, b)
}

fn op_concat(state: &mut State, a: Value, b: Value) -> Result<Value, Error> {
    strict_defined(state, &a)?;
    strict_defined(state, &b)?;
    guard(state, &a)?;
    guard(state, &b)?;
    concat(state, &a, &b)
}

/// minijinja's `assert_value_not_undefined`: strict mode refuses undefined operands, except the
/// silent undefined of `x if false` (which prints as nothing). The two cannot be told apart
/// through minijinja's API, so an undefined operand is handed to minijinja's own `~`.
fn strict_defined(state: &State, value: &Value) -> Result<(), Error> {
    if value.is_undefined() {
        apply(state, &CONCAT, value.clone(), Value::from(""))?;
    }
    Ok(())
}

/// The marker a failed comparison leaves in a chain (`a < b < c` with `a >= b`): every later
/// comparison of the chain is false.
#[derive(Debug)]
struct ChainFailed;

impl Object for ChainFailed {}

fn chain_failed(value: &Value) -> bool {
    value.downcast_object_ref::<ChainFailed>().is_some()
}

#[derive(Clone, Copy)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    NotIn,
}

fn compare(state: &mut State, op: Cmp, a: &Value, b: &Value) -> Result<bool, Error> {
    match op {
        Cmp::In | Cmp::NotIn => {
            guard(state, a)?;
            guard(state, b)?;
            let contains = apply(state, &IN, a.clone(), b.clone())?.is_true();
            Ok(contains == matches!(op, Cmp::In))
        }
        _ => {
            strict_defined(state, a)?;
            strict_defined(state, b)?;
            guard(state, a)?;
            guard(state, b)?;
            Ok(match op {
                Cmp::Eq => a == b,
                Cmp::Ne => a != b,
                Cmp::Lt => a < b,
                Cmp::Lte => a <= b,
                Cmp::Gt => a > b,
                _ => a >= b,
            })
        }
    }
}

fn comparison(op: Cmp) -> impl Fn(&mut State, Value, Value) -> Result<bool, Error> {
    move |state, a, b| {
        if chain_failed(&a) {
            return Ok(false);
        }
        compare(state, op, &kv::as_text(a), &kv::as_text(b))
    }
}

fn chained_comparison(op: Cmp) -> impl Fn(&mut State, Value, Value) -> Result<Value, Error> {
    move |state, a, b| {
        let b = kv::as_text(b);
        if chain_failed(&a) || !compare(state, op, &kv::as_text(a), &b)? {
            return Ok(Value::from_object(ChainFailed));
        }
        Ok(b)
    }
}

fn op_get_item(state: &mut State, container: Value, key: Value) -> Result<Value, Error> {
    guard(state, &key)?;
    if let (Some(object), Some(index)) = (container.as_object(), key.as_i64()) {
        // Indexing an iterable walks it up to the index.
        if object.repr() == ObjectRepr::Iterable {
            let steps = usize::try_from(index.unsigned_abs()).unwrap_or(usize::MAX);
            let steps = object.enumerator_len().map_or(steps, |len| steps.min(len));
            state.consume_fuel(steps as u64 / 2)?;
        }
    }
    container.get_item(&key)
}

fn checked_items(state: &State, items: &[Value]) -> Result<(), Error> {
    let mut total = 3usize;
    for item in items {
        total = total.saturating_add(guard(state, item)?.bytes + 2);
    }
    check_size(total)
}

fn op_list(state: &mut State, items: Rest<Value>) -> Result<Value, Error> {
    checked_items(state, &items)?;
    Ok(Value::from(items.0))
}

fn op_tuple(state: &mut State, items: Rest<Value>) -> Result<Value, Error> {
    checked_items(state, &items)?;
    Ok(Value::from(Tuple::from(items.0)))
}

fn op_map(state: &mut State, items: Rest<Value>) -> Result<Value, Error> {
    checked_items(state, &items)?;
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut items = items.0.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        pairs.push((key, value));
    }
    Ok(Value::from_pairs(pairs))
}

fn op_changed(state: &mut State, args: Rest<Value>) -> Result<Value, Error> {
    let Some((receiver, args)) = args.split_first() else {
        return Err(Error::from(ErrorKind::MissingArgument));
    };
    for arg in args {
        guard(state, arg)?;
    }
    receiver.call_method(state, "changed", args)
}

/// The formatter: containers are walked (bounded, charged) first; values print as Python's
/// `str()` does, as in StackStorm (`True`, `None`, `['a', 1]`, `{'k': 1.5}`).
fn format_value(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    if value.as_object().is_some() {
        guard(state, value)?;
    }
    if value.is_undefined() || value.kind() == ValueKind::String {
        return minijinja::escape_formatter(out, state, value);
    }
    out.write_str(&python::str_of(value)?)
        .map_err(|_| too_large())
}

// ---------------------------------------------------------------------------------------------
// Filters, tests and functions

/// A check of a filter's arguments before it runs (the arguments have been guarded).
pub(crate) type Precheck = fn(&State, &[Value], &[Size]) -> Result<(), Error>;

pub(crate) fn no_check(_: &State, _: &[Value], _: &[Size]) -> Result<(), Error> {
    Ok(())
}

/// Calls `f` with guarded arguments, checks its result. Datastore lookups are passed on as
/// their strings.
fn call_guarded(
    state: &mut State,
    f: &Value,
    args: &[Value],
    precheck: Precheck,
) -> Result<Value, Error> {
    let args: Vec<Value> = args.iter().cloned().map(kv::as_text).collect();
    call_guarded_raw(state, f, &args, precheck)
}

/// [`call_guarded`], with datastore lookups passed on as they are.
fn call_guarded_raw(
    state: &mut State,
    f: &Value,
    args: &[Value],
    precheck: Precheck,
) -> Result<Value, Error> {
    let mut sizes = Vec::with_capacity(args.len());
    for arg in args {
        sizes.push(guard(state, arg)?);
    }
    precheck(state, args, &sizes)?;
    let rv = f.call(state, args)?;
    guard(state, &rv)?;
    Ok(rv)
}

pub(crate) fn add_filter(
    env: &mut Environment<'static>,
    name: &'static str,
    f: Value,
    precheck: Precheck,
) {
    env.add_filter(name, move |state: &mut State, args: Rest<ValueOrKwargs>| {
        call_guarded(state, &f, &args.into_values(), precheck)
    });
}

/// Adds a filter that the caller provides (`decrypt_kv`), guarded like the built-in ones; it
/// receives datastore lookups as they are (to name a missing key).
pub(crate) fn add_guarded_filter(env: &mut Environment<'static>, name: &'static str, f: Value) {
    env.add_filter(name, move |state: &mut State, args: Rest<ValueOrKwargs>| {
        call_guarded_raw(state, &f, &args.into_values(), no_check)
    });
}

fn add_test(env: &mut Environment<'static>, name: &'static str, f: Value) {
    env.add_test(name, move |state: &mut State, args: Rest<ValueOrKwargs>| {
        call_guarded(state, &f, &args.into_values(), no_check).map(|v| v.is_true())
    });
}

fn add_function(env: &mut Environment<'static>, name: &'static str, f: Value) {
    env.add_function(name, move |state: &mut State, args: Rest<ValueOrKwargs>| {
        call_guarded(state, &f, &args.into_values(), no_check)
    });
}

/// Jinja2's `int`: a value that does not convert gives the default (0), not an error
/// (`{{ "" | int }}` is 0). Undefined values are refused as in strict mode.
fn jinja_int(state: &mut State, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    lenient(state, &args.into_values(), filters::int, Value::from(0))
}

/// Jinja2's `float`: the default (0.0) for a value that does not convert.
fn jinja_float(state: &mut State, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    lenient(state, &args.into_values(), filters::float, Value::from(0.0))
}

/// Calls minijinja's conversion `f`; when it fails on a defined value, the `default`
/// argument (positional or keyword) or `fallback` is the result.
fn lenient<F, Rv, Args>(
    state: &mut State,
    args: &[Value],
    f: F,
    fallback: Value,
) -> Result<Value, Error>
where
    F: minijinja::functions::Function<Rv, Args>,
    Rv: minijinja::value::FunctionResult,
    Args: for<'a> minijinja::value::FunctionArgs<'a>,
{
    let result = Value::from_function(f).call(state, args);
    if args.first().is_none_or(Value::is_undefined) {
        return result;
    }
    result.or_else(|_| {
        Ok(positional(args, 1)
            .cloned()
            .or_else(|| kwarg(args, "default"))
            .unwrap_or(fallback))
    })
}

/// Jinja2's `string`: Python's `str()`.
fn jinja_string(state: &mut State, value: Value) -> Result<Value, Error> {
    if value.is_undefined() {
        return Value::from_function(filters::string).call(state, &[value]);
    }
    if value.kind() == ValueKind::String {
        return Ok(value);
    }
    python::str_of(&value).map(Value::from)
}

/// A keyword argument, without marking it used.
pub(crate) fn kwarg(args: &[Value], key: &str) -> Option<Value> {
    let last = args.last().filter(|v| v.is_kwargs())?;
    last.get_item(&Value::from(key))
        .ok()
        .filter(|v| !v.is_undefined())
}

/// A positional argument (`None` if missing or a keyword argument).
pub(crate) fn positional(args: &[Value], index: usize) -> Option<&Value> {
    args.get(index).filter(|v| !v.is_kwargs())
}

/// How long a string argument is once converted (containers as printed).
fn printed_len(value: &Value, size: Option<&Size>) -> usize {
    match value.as_str() {
        Some(s) => s.len(),
        None => size.map_or(8, |s| s.bytes),
    }
}

/// `join`: every item plus the joiner once per item.
fn check_join(_: &State, args: &[Value], sizes: &[Size]) -> Result<(), Error> {
    let joiner = positional(args, 1)
        .or(kwarg(args, "d").as_ref())
        .map_or(0, |j| printed_len(j, sizes.get(1)));
    let items = sizes.first().map_or(0, |s| s.nodes);
    let base = sizes.first().map_or(0, |s| s.bytes);
    check_size(base.saturating_add(joiner.saturating_mul(items)))
}

/// `indent`: the indentation once per line.
fn check_indent(_: &State, args: &[Value], sizes: &[Size]) -> Result<(), Error> {
    let text = args.first().map_or(0, |v| printed_len(v, sizes.first()));
    let lines = args
        .first()
        .and_then(Value::as_str)
        .map_or(text, |s| s.matches('\n').count() + 1);
    let width = positional(args, 1)
        .cloned()
        .or_else(|| kwarg(args, "width"))
        .map_or(4, |w| w.as_usize().unwrap_or_else(|| printed_len(&w, None)));
    check_size(text.saturating_add(width.saturating_mul(lines)))
}

/// `format` (printf style): any width or precision beyond the cap.
fn check_format(_: &State, args: &[Value], _: &[Size]) -> Result<(), Error> {
    let Some(spec) = args.first().and_then(Value::as_str) else {
        return Ok(());
    };
    let too_wide = spec
        .split(|c: char| !c.is_ascii_digit())
        .filter(|digits| !digits.is_empty())
        .any(|digits| digits.len() > 9 || digits.parse::<usize>().unwrap_or(0) > MAX_VALUE_BYTES);
    if too_wide {
        return Err(too_large());
    }
    // minijinja caps a precision at `u16::MAX` before Rust's formatter, which still panics
    // on `{:.65535e}` (`'%.65535e' | format(x)` aborted the render's task).
    let precision_too_large = spec.split('.').skip(1).any(|after| {
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        digits
            .parse::<usize>()
            .is_ok_and(|p| p >= usize::from(u16::MAX))
    });
    if precision_too_large {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("precision too large: at most {}", u16::MAX - 1),
        ));
    }
    Ok(())
}

/// Pretty printing: indentation for every value, as deep as it is nested.
fn check_pretty(indent: usize, size: &Size) -> Result<(), Error> {
    let per_line = indent.saturating_mul(size.depth).saturating_add(1);
    check_size(
        size.bytes
            .saturating_add(per_line.saturating_mul(size.nodes)),
    )
}

pub(crate) fn check_tojson(_: &State, args: &[Value], sizes: &[Size]) -> Result<(), Error> {
    let indent = positional(args, 1)
        .cloned()
        .or_else(|| kwarg(args, "indent"))
        .map_or(0, |i| i.as_usize().unwrap_or_else(|| printed_len(&i, None)));
    sizes
        .first()
        .map_or(Ok(()), |size| check_pretty(indent, size))
}

fn check_pprint(_: &State, _: &[Value], sizes: &[Size]) -> Result<(), Error> {
    sizes.first().map_or(Ok(()), |size| check_pretty(4, size))
}

/// `escape`: at most six bytes for every byte.
pub(crate) fn check_escape(_: &State, args: &[Value], sizes: &[Size]) -> Result<(), Error> {
    let len = args.first().map_or(0, |v| printed_len(v, sizes.first()));
    check_size(len.saturating_mul(6))
}

/// `replace(old, new, count)`, sized before it is built.
fn replace(state: &mut State, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    for arg in &args {
        guard(state, arg)?;
    }
    let (value, old, new, count, kwargs): (Value, Value, Value, Option<i64>, Kwargs) =
        from_args(&args)?;
    let count = match count {
        Some(count) => Some(count),
        None => kwargs.get::<Option<i64>>("count")?,
    };
    kwargs.assert_all_used()?;
    let text = printed(&value)?;
    let old = printed(&old)?;
    let new = printed(&new)?;
    let limit = count
        .and_then(|c| usize::try_from(c).ok())
        .unwrap_or(usize::MAX);
    if new.len() > old.len() {
        let matches = text.matches(old.as_str()).take(limit).count();
        check_size(
            text.len()
                .saturating_add(matches.saturating_mul(new.len() - old.len())),
        )?;
    }
    let replaced = text.replacen(old.as_str(), &new, limit);
    Ok(if value.is_safe() {
        Value::from_safe_string(replaced)
    } else {
        Value::from(replaced)
    })
}

/// A value converted to a string as filters do, bounded.
fn printed(value: &Value) -> Result<String, Error> {
    if let Some(s) = value.as_str() {
        return Ok(s.to_owned());
    }
    let mut out = Capped::new(MAX_VALUE_BYTES);
    write!(out, "{value}").map_err(|_| too_large())?;
    Ok(out.buf)
}

/// `sum`: numbers as minijinja sums them; strings and sequences concatenated in one pass
/// (minijinja's repeated `+` copies the accumulated value for every item).
fn sum(state: &mut State, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    for arg in &args {
        guard(state, arg)?;
    }
    let start = positional(&args, 2)
        .cloned()
        .or_else(|| kwarg(&args, "start"))
        .unwrap_or(Value::from(0));
    if start.is_number() || !(start.kind() == ValueKind::String || start.kind() == ValueKind::Seq) {
        let f = Value::from_function(filters::sum);
        return f.call(state, &args);
    }
    let attribute = positional(&args, 1)
        .cloned()
        .or_else(|| kwarg(&args, "attribute"))
        .filter(|a| !a.is_none());
    let attribute = attribute.as_ref().and_then(Value::as_str);
    let values = args.first().cloned().unwrap_or(Value::UNDEFINED);
    let items = values.try_iter()?.map(|item| match attribute {
        Some(path) => get_path(&item, path),
        None => item,
    });
    let unsupported = |item: &Value| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "tried to use + operator on unsupported types {} and {}",
                start.kind(),
                item.kind()
            ),
        )
    };
    let mut steps = 0u64;
    if let Some(s) = start.as_str() {
        let mut out = Capped::new(MAX_VALUE_BYTES);
        out.write_str(s).map_err(|_| too_large())?;
        let mut safe = start.is_safe();
        for item in items {
            steps += 1;
            if item.is_undefined() {
                continue;
            }
            let Some(s) = item.as_str() else {
                return Err(unsupported(&item));
            };
            safe &= item.is_safe();
            out.write_str(s).map_err(|_| too_large())?;
        }
        state.consume_fuel(steps / 2)?;
        return Ok(if safe {
            Value::from_safe_string(out.buf)
        } else {
            Value::from(out.buf)
        });
    }
    let tuple = start.is_tuple();
    let mut out: Vec<Value> = start.try_iter()?.collect();
    let mut bytes = 0usize;
    for item in items {
        steps += 1;
        if item.is_undefined() {
            continue;
        }
        if item.is_tuple() != tuple || !matches!(item.kind(), ValueKind::Seq | ValueKind::Iterable)
        {
            return Err(unsupported(&item));
        }
        bytes = bytes.saturating_add(guard(state, &item)?.bytes);
        check_size(bytes)?;
        out.extend(item.try_iter()?);
    }
    state.consume_fuel(steps / 2)?;
    Ok(if tuple {
        Value::from(Tuple::from(out))
    } else {
        Value::from(out)
    })
}

/// `a.b.0` as minijinja's `attribute=` arguments resolve it (undefined when missing).
fn get_path(value: &Value, path: &str) -> Value {
    let mut rv = value.clone();
    for part in path.split('.') {
        let next = match part.parse::<usize>() {
            Ok(index) => rv.get_item_by_index(index),
            Err(_) => rv.get_attr(part),
        };
        match next {
            Ok(next) => rv = next,
            Err(_) => return Value::UNDEFINED,
        }
    }
    rv
}

/// The environment: strict undefined, fuel, the guard functions, and every built-in filter,
/// test and function wrapped.
pub(crate) fn environment() -> Environment<'static> {
    /// A filter, test or function as a value.
    macro_rules! f {
        ($function:expr) => {
            Value::from_function($function)
        };
    }
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_formatter(format_value);
    env.set_syntax(syntax());

    env.add_function(name::ADD, op_add);
    env.add_function(name::MUL, op_mul);
    env.add_function(name::CONCAT, op_concat);
    for (name, op) in [
        (name::EQ, Cmp::Eq),
        (name::NE, Cmp::Ne),
        (name::LT, Cmp::Lt),
        (name::LTE, Cmp::Lte),
        (name::GT, Cmp::Gt),
        (name::GTE, Cmp::Gte),
        (name::IN, Cmp::In),
        (name::NOT_IN, Cmp::NotIn),
    ] {
        env.add_function(name, comparison(op));
    }
    for (name, op) in [
        (name::KEEP_EQ, Cmp::Eq),
        (name::KEEP_NE, Cmp::Ne),
        (name::KEEP_LT, Cmp::Lt),
        (name::KEEP_LTE, Cmp::Lte),
        (name::KEEP_GT, Cmp::Gt),
        (name::KEEP_GTE, Cmp::Gte),
        (name::KEEP_IN, Cmp::In),
        (name::KEEP_NOT_IN, Cmp::NotIn),
    ] {
        env.add_function(name, chained_comparison(op));
    }
    env.add_function(name::GET_ITEM, op_get_item);
    env.add_function(name::LIST, op_list);
    env.add_function(name::TUPLE, op_tuple);
    env.add_function(name::MAP, op_map);
    env.add_function(name::CHANGED, op_changed);
    env.add_function(name::MOD, op_mod);

    // `range` yields at most 100 000 integers (minijinja's limit) and is iterated lazily.
    env.add_function("range", functions::range);
    add_function(&mut env, "dict", f!(functions::dict));
    add_function(&mut env, "namespace", f!(functions::namespace));

    let filters: Vec<(&'static str, Value, Precheck)> = vec![
        ("safe", f!(filters::safe), no_check),
        ("escape", f!(filters::escape), check_escape),
        ("e", f!(filters::escape), check_escape),
        ("lower", f!(filters::lower), no_check),
        ("upper", f!(filters::upper), no_check),
        ("title", f!(filters::title), no_check),
        ("capitalize", f!(filters::capitalize), no_check),
        ("length", f!(filters::length), no_check),
        ("count", f!(filters::length), no_check),
        ("dictsort", f!(filters::dictsort), no_check),
        ("items", f!(filters::items), no_check),
        ("reverse", f!(filters::reverse), no_check),
        ("trim", f!(filters::trim), no_check),
        ("join", f!(filters::join), check_join),
        ("split", f!(filters::split), no_check),
        ("lines", f!(filters::lines), no_check),
        ("default", f!(filters::default), no_check),
        ("d", f!(filters::default), no_check),
        ("round", f!(filters::round), no_check),
        ("abs", f!(filters::abs), no_check),
        ("int", f!(jinja_int), no_check),
        ("float", f!(jinja_float), no_check),
        ("attr", f!(filters::attr), no_check),
        ("first", f!(filters::first), no_check),
        ("last", f!(filters::last), no_check),
        ("min", f!(filters::min), no_check),
        ("max", f!(filters::max), no_check),
        ("sort", f!(filters::sort), no_check),
        ("list", f!(filters::list), no_check),
        ("string", f!(jinja_string), no_check),
        ("bool", f!(filters::bool), no_check),
        ("batch", f!(filters::batch), no_check),
        ("slice", f!(filters::slice), no_check),
        ("indent", f!(filters::indent), check_indent),
        ("select", f!(filters::select), no_check),
        ("reject", f!(filters::reject), no_check),
        ("selectattr", f!(filters::selectattr), no_check),
        ("rejectattr", f!(filters::rejectattr), no_check),
        ("map", f!(filters::map), no_check),
        ("groupby", f!(filters::groupby), no_check),
        ("unique", f!(filters::unique), no_check),
        ("chain", f!(filters::chain), no_check),
        ("zip", f!(filters::zip), no_check),
        ("pprint", f!(filters::pprint), check_pprint),
        ("format", f!(filters::format), check_format),
        ("tojson", f!(filters::tojson), check_tojson),
        ("replace", f!(replace), no_check),
        ("sum", f!(sum), no_check),
    ];
    for (name, filter, precheck) in filters {
        add_filter(&mut env, name, filter, precheck);
    }
    crate::filters::register(&mut env);

    let tests: Vec<(&'static str, Value)> = vec![
        ("undefined", f!(tests::is_undefined)),
        ("defined", f!(tests::is_defined)),
        ("none", f!(tests::is_none)),
        ("safe", f!(tests::is_safe)),
        ("escaped", f!(tests::is_safe)),
        ("boolean", f!(tests::is_boolean)),
        ("odd", f!(tests::is_odd)),
        ("even", f!(tests::is_even)),
        ("divisibleby", f!(tests::is_divisibleby)),
        ("number", f!(tests::is_number)),
        ("integer", f!(tests::is_integer)),
        ("int", f!(tests::is_integer)),
        ("float", f!(tests::is_float)),
        ("string", f!(tests::is_string)),
        ("sequence", f!(tests::is_sequence)),
        ("iterable", f!(tests::is_iterable)),
        ("mapping", f!(tests::is_mapping)),
        ("startingwith", f!(tests::is_startingwith)),
        ("endingwith", f!(tests::is_endingwith)),
        ("lower", f!(tests::is_lower)),
        ("upper", f!(tests::is_upper)),
        ("sameas", f!(tests::is_sameas)),
        ("eq", f!(tests::is_eq)),
        ("equalto", f!(tests::is_eq)),
        ("==", f!(tests::is_eq)),
        ("ne", f!(tests::is_ne)),
        ("!=", f!(tests::is_ne)),
        ("lt", f!(tests::is_lt)),
        ("lessthan", f!(tests::is_lt)),
        ("<", f!(tests::is_lt)),
        ("le", f!(tests::is_le)),
        ("<=", f!(tests::is_le)),
        ("gt", f!(tests::is_gt)),
        ("greaterthan", f!(tests::is_gt)),
        (">", f!(tests::is_gt)),
        ("ge", f!(tests::is_ge)),
        (">=", f!(tests::is_ge)),
        ("in", f!(tests::is_in)),
    ];
    for (name, test) in tests {
        add_test(&mut env, name, test);
    }
    for (name, test) in [
        ("true", f!(tests::is_true)),
        ("false", f!(tests::is_false)),
        ("filter", f!(tests::is_filter)),
        ("test", f!(tests::is_test)),
    ] {
        add_test(&mut env, name, test);
    }
    env
}
