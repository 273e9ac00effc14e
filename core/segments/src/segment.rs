//! A segment: its definition, the checks made when it is saved, and its
//! evaluation over the customers.

use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use rhai::{AST, CallFnOptions, Dynamic, Engine, Map, Position, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::catalog::{Catalog, Reach, Source, Ty, closest, origin};
use crate::engine::{Bound, Customer, Limits, past_deadline};
use crate::frame::{Column, Frame, NO_INT, Value};
use crate::parse::{self, Const, Constants, FieldUse, Node, Op, Pos, Tok, Token};

/// What an analyst saves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    #[serde(default)]
    pub description: String,
    /// An expression over `c` (`c.margin > 500.0 && c.tier == "gold"`), or
    /// a script defining `fn matches(c)` (or `fn matches(c, today, params)`).
    pub script: String,
    /// Values the script reads as `params.NAME`.
    #[serde(default)]
    pub params: serde_json::Map<String, Json>,
}

/// A problem with a script, where it is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScriptError {
    pub pos: Option<Pos>,
    pub message: String,
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pos {
            Some(pos) => write!(f, "{pos}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ScriptError {}

fn at(pos: Pos, message: String) -> ScriptError {
    ScriptError {
        pos: Some(pos),
        message,
    }
}

fn rhai_pos(pos: Position) -> Option<Pos> {
    Some(Pos {
        line: pos.line()?,
        column: pos.position().unwrap_or(1),
    })
}

/// An error of a run: which customer, where in the script.
#[derive(Clone, Debug, PartialEq, Serialize, thiserror::Error)]
#[error("{}{}", customer.as_ref().map(|c| format!("customer {c}: ")).unwrap_or_default(), error)]
pub struct RunError {
    pub customer: Option<String>,
    pub error: ScriptError,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Expression,
    /// `fn matches(c)`, or with `today` and `params` as further arguments.
    Function {
        arity: usize,
    },
}

/// A segment compiled for one catalog and one as-of day.
#[derive(Debug)]
pub struct Compiled {
    pub shape: Shape,
    ast: AST,
    /// Expressions: their boolean structure.
    plan: Option<Node>,
    /// Catalog indexes of the fields the script reads.
    pub reads: Vec<usize>,
    /// What its result depends on beyond each customer's own records.
    pub reach: Reach,
    source: String,
    today: Option<i64>,
    params: Dynamic,
}

struct Consts<'a> {
    today: Option<i64>,
    params: &'a serde_json::Map<String, Json>,
}

impl Constants for Consts<'_> {
    fn today(&self) -> Option<i64> {
        self.today
    }

    fn date(&self, text: &str) -> Option<i64> {
        model::Date::parse(text).ok().map(|d| d.days() as i64)
    }

    fn param(&self, name: &str) -> Option<Const> {
        match self.params.get(name)? {
            Json::Number(n) => n
                .as_i64()
                .map(Const::Int)
                .or_else(|| n.as_f64().map(Const::Float)),
            Json::String(s) => Some(Const::Text(s.clone())),
            Json::Bool(b) => Some(Const::Bool(*b)),
            _ => None,
        }
    }
}

fn scope_for(today: Option<i64>, params: &Dynamic) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push_constant_dynamic("today", today.map_or(Dynamic::UNIT, Dynamic::from_int));
    scope.push_constant_dynamic("params", params.clone());
    scope
}

/// Compiles `def` for `catalog` with `engine` (made from the same catalog),
/// checking every field name, the types of the comparisons the catalog can
/// judge, and the parameters named. `today` is the as-of day.
pub fn compile(
    engine: &Engine,
    catalog: &Catalog,
    def: &Definition,
    today: Option<i64>,
) -> Result<Compiled, ScriptError> {
    let src = def.script.as_str();
    if src.trim().is_empty() {
        return Err(ScriptError {
            pos: None,
            message: "the script is empty; write an expression over c, such as c.revenue > 100"
                .into(),
        });
    }
    let params: Dynamic = Dynamic::from_map(
        def.params
            .iter()
            .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
            .collect::<Map>(),
    );
    let tokens = parse::tokens(src);
    let is_function = tokens.as_ref().is_some_and(|t| {
        t.iter()
            .any(|t| matches!(&t.tok, Tok::Ident(k) if k == "fn"))
    });
    let mut scope = scope_for(today, &params);
    let (ast, shape, var) = if is_function {
        let ast = engine
            .compile_with_scope(&scope, src)
            .map_err(|e| parse_error(e, catalog))?;
        let Some(f) = ast.iter_functions().find(|f| f.name == "matches") else {
            return Err(ScriptError {
                pos: None,
                message: "a script with functions must define fn matches(c)".into(),
            });
        };
        let arity = f.params.len();
        if arity != 1 && arity != 3 {
            return Err(ScriptError {
                pos: None,
                message: format!(
                    "fn matches takes (c) or (c, today, params), not {arity} parameters"
                ),
            });
        }
        let var = f.params[0].to_string();
        (ast, Shape::Function { arity }, var)
    } else {
        scope.push("c", Customer { row: 0 });
        let ast = engine
            .compile_expression_with_scope(&scope, src)
            .map_err(|e| parse_error(e, catalog))?;
        (ast, Shape::Expression, "c".to_owned())
    };
    let tokens = tokens.unwrap_or_default();
    let uses = parse::field_uses(&tokens, &var);
    let mut reads = Vec::new();
    for u in &uses {
        match catalog.index(&u.name) {
            Some(i) => {
                if !reads.contains(&i) {
                    reads.push(i);
                }
            }
            None => {
                let hint = catalog
                    .suggest(&u.name)
                    .map(|s| format!("; did you mean {var}.{s}?"))
                    .unwrap_or_else(|| {
                        "; `crm segment fields` lists the fields a script can read".into()
                    });
                return Err(at(u.pos, format!("unknown field '{}'{hint}", u.name)));
            }
        }
    }
    check_params(&tokens, &def.params)?;
    check_types(&tokens, &uses, catalog)?;
    let mut reach = reads
        .iter()
        .map(|&i| catalog.fields()[i].reach)
        .max()
        .unwrap_or(Reach::Own);
    if tokens
        .iter()
        .any(|t| matches!(&t.tok, Tok::Ident(k) if k == "today"))
    {
        reach = reach.max(Reach::AsOf);
    }
    let plan = (shape == Shape::Expression && !tokens.is_empty()).then(|| {
        parse::Parser {
            tokens: &tokens,
            var: &var,
            consts: &Consts {
                today,
                params: &def.params,
            },
            src_len: src.len(),
        }
        .parse()
    });
    let plan = plan.map(|p| only_known_flags(p, catalog));
    let mut ast = ast;
    ast.set_source("segment");
    Ok(Compiled {
        shape,
        ast,
        plan,
        reads,
        reach,
        source: src.to_owned(),
        today,
        params,
    })
}

/// A lone flag is evaluated over columns only for fields that are never
/// absent (metrics); an absent attribute is an error in rhai.
fn only_known_flags(node: Node, catalog: &Catalog) -> Node {
    match node {
        Node::And(parts, s) => Node::And(
            parts
                .into_iter()
                .map(|p| only_known_flags(p, catalog))
                .collect(),
            s,
        ),
        Node::Or(parts, s) => Node::Or(
            parts
                .into_iter()
                .map(|p| only_known_flags(p, catalog))
                .collect(),
            s,
        ),
        Node::Not(inner, s) => Node::Not(Box::new(only_known_flags(*inner, catalog)), s),
        Node::Flag { field, span } => {
            let known = catalog
                .get(&field)
                .is_some_and(|f| f.ty == Ty::Bool && f.source == Source::Metric);
            if known {
                Node::Flag { field, span }
            } else {
                Node::Opaque(span)
            }
        }
        other => other,
    }
}

fn json_to_dynamic(v: &Json) -> Dynamic {
    match v {
        Json::Null => Dynamic::UNIT,
        Json::Bool(b) => Dynamic::from_bool(*b),
        Json::Number(n) => n
            .as_i64()
            .map(Dynamic::from_int)
            .unwrap_or_else(|| Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN))),
        Json::String(s) => Dynamic::from(s.clone()),
        Json::Array(items) => Dynamic::from_array(items.iter().map(json_to_dynamic).collect()),
        Json::Object(map) => Dynamic::from_map(
            map.iter()
                .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
                .collect(),
        ),
    }
}

/// rhai's compile error with its place, and a suggestion for an unknown
/// variable (often a field written without `c.`).
fn parse_error(err: rhai::ParseError, catalog: &Catalog) -> ScriptError {
    let pos = rhai_pos(err.position());
    let mut message = err.err_type().to_string();
    if let rhai::ParseErrorType::VariableUndefined(name) = err.err_type() {
        if catalog.get(name).is_some() {
            message = format!("unknown variable '{name}'; did you mean c.{name}?");
        } else if let Some(s) = catalog.suggest(name) {
            message = format!("unknown variable '{name}'; did you mean c.{s}?");
        } else if let Some(s) = closest(name, ["c", "today", "params"].into_iter()) {
            message = format!("unknown variable '{name}'; did you mean {s}?");
        } else {
            message = format!(
                "unknown variable '{name}'; a segment reads the customer as c, and today and params"
            );
        }
    }
    ScriptError { pos, message }
}

fn check_params(
    tokens: &[Token],
    params: &serde_json::Map<String, Json>,
) -> Result<(), ScriptError> {
    for w in tokens.windows(3) {
        if let (Tok::Ident(p), Tok::Punct("."), Tok::Ident(name)) =
            (&w[0].tok, &w[1].tok, &w[2].tok)
            && p == "params"
            && !params.contains_key(name)
        {
            let hint = closest(name, params.keys().map(String::as_str))
                .map(|s| format!("; did you mean params.{s}?"))
                .unwrap_or_else(|| "; give it with --param NAME=VALUE".into());
            return Err(at(w[2].pos, format!("unknown parameter '{name}'{hint}")));
        }
    }
    Ok(())
}

/// The constant at `tokens[i..]` as the comparison checks see it: a
/// literal, possibly negative.
fn literal_at(tokens: &[Token], i: usize) -> Option<(Const, Pos)> {
    let t = tokens.get(i)?;
    let c = match &t.tok {
        Tok::Int(v) => Const::Int(*v),
        Tok::Float(v) => Const::Float(*v),
        Tok::Str(s) => Const::Text(s.clone()),
        Tok::Ident(b) if b == "true" || b == "false" => Const::Bool(b == "true"),
        Tok::Punct("-") => match literal_at(tokens, i + 1)? {
            (Const::Int(v), _) => Const::Int(-v),
            (Const::Float(v), _) => Const::Float(-v),
            _ => return None,
        },
        _ => return None,
    };
    Some((c, t.pos))
}

/// A literal ending at `tokens[i]` (for `5 < c.x`).
fn literal_before(tokens: &[Token], i: usize) -> Option<(Const, Pos)> {
    let (c, pos) = literal_at(tokens, i)?;
    if i > 0 && tokens[i - 1].tok == Tok::Punct("-") {
        return match c {
            Const::Int(v) => Some((Const::Int(-v), tokens[i - 1].pos)),
            Const::Float(v) => Some((Const::Float(-v), tokens[i - 1].pos)),
            other => Some((other, pos)),
        };
    }
    Some((c, pos))
}

fn is_comparison(tok: &Tok) -> bool {
    matches!(tok, Tok::Punct("==" | "!=" | "<" | "<=" | ">" | ">="))
}

/// Comparisons of a field with a literal whose type cannot match, and
/// text values outside a field's enum.
fn check_types(tokens: &[Token], uses: &[FieldUse], catalog: &Catalog) -> Result<(), ScriptError> {
    for u in uses {
        let Some(field) = catalog.get(&u.name) else {
            continue;
        };
        let mut compared = Vec::new();
        if let Some(op) = tokens.get(u.token + 1)
            && is_comparison(&op.tok)
            && let Some(lit) = literal_at(tokens, u.token + 2)
        {
            compared.push(lit);
        }
        if u.token >= 3
            && is_comparison(&tokens[u.token - 3].tok)
            && let Some(lit) = literal_before(tokens, u.token.wrapping_sub(4))
        {
            compared.push(lit);
        }
        if matches!(tokens.get(u.token + 1).map(|t| &t.tok), Some(Tok::Ident(k)) if k == "in")
            && tokens.get(u.token + 2).map(|t| &t.tok) == Some(&Tok::Punct("["))
        {
            let mut i = u.token + 3;
            while let Some(lit) = literal_at(tokens, i) {
                compared.push(lit);
                i += if tokens[i].tok == Tok::Punct("-") {
                    3
                } else {
                    2
                };
                if tokens.get(i - 1).map(|t| &t.tok) != Some(&Tok::Punct(",")) {
                    break;
                }
            }
        }
        for (value, pos) in compared {
            let fits = match (&value, field.ty) {
                (Const::Int(_) | Const::Float(_), ty) => ty.is_numeric(),
                (Const::Text(_), ty) => ty == Ty::Text,
                (Const::Bool(_), ty) => ty == Ty::Bool,
            };
            let what = format!(
                "c.{} is {} ({})",
                field.name,
                field.ty.describe(),
                origin(&field.source)
            );
            if !fits {
                let hint = match (&value, field.ty) {
                    (Const::Text(t), Ty::Day) if model::Date::parse(t).is_ok() => {
                        format!("; write date(\"{t}\")")
                    }
                    (Const::Text(t), Ty::Int | Ty::Float) if t.parse::<f64>().is_ok() => {
                        format!("; write {t} without quotes")
                    }
                    _ => String::new(),
                };
                return Err(at(
                    pos,
                    format!("{what} but is compared with {}{hint}", value.describe()),
                ));
            }
            if let Const::Text(t) = &value
                && !field.values.is_empty()
                && !field.values.contains(t)
            {
                let hint = closest(t, field.values.iter().map(String::as_str))
                    .map(|s| format!("did you mean \"{s}\"? "))
                    .unwrap_or_default();
                return Err(at(
                    pos,
                    format!(
                        "\"{t}\" is not a value of c.{}; {hint}its values are {}",
                        field.name,
                        field.values.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// One comparison prepared over a frame's column.
enum Test<'f> {
    Int {
        col: &'f [i64],
        op: Op,
        value: i64,
    },
    /// An integer column against a float, or a float column.
    IntF {
        col: &'f [i64],
        op: Op,
        value: f64,
    },
    Float {
        col: &'f [f64],
        op: Op,
        value: f64,
    },
    /// Text equality by code (`None`: the value does not occur).
    TextEq {
        codes: &'f [u32],
        code: Option<u32>,
        negate: bool,
    },
    TextOrd {
        codes: &'f [u32],
        dict: &'f [rhai::ImmutableString],
        op: Op,
        value: String,
    },
    Bool {
        col: &'f [u8],
        op: Op,
        value: u8,
    },
    /// Types that never compare: only `!=` holds.
    Never {
        ne: bool,
    },
    Any(Vec<Test<'f>>),
    All(Vec<Test<'f>>),
    Not(Box<Test<'f>>),
}

fn order<T: PartialOrd>(a: T, op: Op, b: T) -> bool {
    match op {
        Op::Eq => a == b,
        Op::Ne => a != b,
        Op::Lt => a < b,
        Op::Le => a <= b,
        Op::Gt => a > b,
        Op::Ge => a >= b,
    }
}

impl Test<'_> {
    /// rhai's meaning: a comparison with an absent value, or across types,
    /// is false, except `!=` which is true.
    fn at(&self, row: usize) -> bool {
        match self {
            Test::Int { col, op, value } => {
                let v = col[row];
                if v == NO_INT {
                    *op == Op::Ne
                } else {
                    order(v, *op, *value)
                }
            }
            Test::IntF { col, op, value } => {
                let v = col[row];
                if v == NO_INT {
                    *op == Op::Ne
                } else {
                    order(v as f64, *op, *value)
                }
            }
            Test::Float { col, op, value } => {
                let v = col[row];
                if v.is_nan() {
                    *op == Op::Ne
                } else {
                    order(v, *op, *value)
                }
            }
            Test::TextEq {
                codes,
                code,
                negate,
            } => (Some(codes[row]) == *code && codes[row] != analysis::snapshot::NONE) != *negate,
            Test::TextOrd {
                codes,
                dict,
                op,
                value,
            } => {
                let c = codes[row];
                if c == analysis::snapshot::NONE {
                    *op == Op::Ne
                } else {
                    order(dict[c as usize].as_str(), *op, value.as_str())
                }
            }
            Test::Bool { col, op, value } => {
                let v = col[row];
                if v == 2 {
                    *op == Op::Ne
                } else {
                    order(v, *op, *value)
                }
            }
            Test::Never { ne } => *ne,
            Test::Any(parts) => parts.iter().any(|t| t.at(row)),
            Test::All(parts) => parts.iter().all(|t| t.at(row)),
            Test::Not(inner) => !inner.at(row),
        }
    }
}

fn comparison<'f>(col: &'f Column, op: Op, value: &Const) -> Test<'f> {
    match (col, value) {
        (Column::Int(col), Const::Int(v)) => Test::Int { col, op, value: *v },
        (Column::Int(col), Const::Float(v)) => Test::IntF { col, op, value: *v },
        (Column::Float(col), Const::Int(v)) => Test::Float {
            col,
            op,
            value: *v as f64,
        },
        (Column::Float(col), Const::Float(v)) => Test::Float { col, op, value: *v },
        (Column::Text { codes, dict, index }, Const::Text(v)) => match op {
            Op::Eq | Op::Ne => Test::TextEq {
                codes,
                code: index.get(v.as_str()).copied(),
                negate: op == Op::Ne,
            },
            _ => Test::TextOrd {
                codes,
                dict,
                op,
                value: v.clone(),
            },
        },
        (Column::Bool(col), Const::Bool(b)) => Test::Bool {
            col,
            op,
            value: *b as u8,
        },
        _ => Test::Never { ne: op == Op::Ne },
    }
}

impl Compiled {
    /// The plain part of the plan as tests over `frame`: the whole
    /// expression when it is plain, else its plain top-level conjuncts
    /// (a filter; rhai decides the rest). `None` when nothing is plain.
    fn prepare<'f>(&self, frame: &'f Frame, catalog: &Catalog) -> Option<(Test<'f>, bool)> {
        let plan = self.plan.as_ref()?;
        if plan.is_plain() {
            return Some((test(plan, frame, catalog)?, true));
        }
        if let Node::And(parts, _) = plan {
            let plain: Vec<Test> = parts
                .iter()
                .filter(|p| p.is_plain())
                .map(|p| test(p, frame, catalog))
                .collect::<Option<_>>()?;
            if !plain.is_empty() {
                return Some((Test::All(plain), false));
            }
        }
        None
    }

    /// The same segment evaluated by the interpreter alone (for comparisons).
    pub fn interpreted(mut self) -> Compiled {
        self.plan = None;
        self
    }

    /// Whether the expression is evaluated over columns alone.
    pub fn is_plain(&self) -> bool {
        self.plan.as_ref().is_some_and(Node::is_plain)
    }

    /// The rows (all of the frame's, or `rows`) that are members, in order.
    pub fn evaluate(
        &self,
        engine: &Engine,
        catalog: &Catalog,
        frame: &Arc<Frame>,
        rows: Option<&[u32]>,
        limits: Limits,
        ids: &(dyn Fn(u32) -> String + Sync),
    ) -> Result<Vec<u32>, RunError> {
        let deadline = Instant::now() + limits.deadline;
        let all: Vec<u32>;
        let rows = match rows {
            Some(r) => r,
            None => {
                all = (0..frame.rows as u32).collect();
                &all
            }
        };
        let prepared = self.prepare(frame, catalog);
        let candidates: Vec<u32> = match &prepared {
            Some((t, _)) => rows
                .par_chunks(8192)
                .flat_map_iter(|chunk| chunk.iter().copied().filter(|&r| t.at(r as usize)))
                .collect(),
            None => rows.to_vec(),
        };
        if matches!(prepared, Some((_, true))) {
            return Ok(candidates);
        }
        let chunks: Vec<Result<Vec<u32>, RunError>> = candidates
            .par_chunks(2048)
            .map(|chunk| {
                let _bound = Bound::new(frame, deadline);
                let mut runner = self.runner();
                let mut members = Vec::new();
                for (k, &row) in chunk.iter().enumerate() {
                    if k % 256 == 0 && past_deadline() {
                        return Err(RunError {
                            customer: None,
                            error: ScriptError {
                                pos: None,
                                message: format!(
                                    "the segment did not finish within its time limit of {:?}",
                                    limits.deadline
                                ),
                            },
                        });
                    }
                    match runner.matches(engine, &self.ast, row) {
                        Ok(true) => members.push(row),
                        Ok(false) => {}
                        Err(error) => {
                            return Err(RunError {
                                customer: Some(ids(row)),
                                error,
                            });
                        }
                    }
                }
                Ok(members)
            })
            .collect();
        let mut members = Vec::with_capacity(candidates.len());
        for chunk in chunks {
            members.extend(chunk?);
        }
        Ok(members)
    }

    fn runner(&self) -> Runner {
        let scope = scope_for(self.today, &self.params);
        let base = scope.len();
        Runner {
            scope,
            base,
            shape: self.shape,
            today: self.today.map_or(Dynamic::UNIT, Dynamic::from_int),
            params: self.params.clone(),
        }
    }

    /// Whether customer `row` is a member, by the interpreter alone.
    pub fn matches(
        &self,
        engine: &Engine,
        frame: &Arc<Frame>,
        row: u32,
        limits: Limits,
    ) -> Result<bool, ScriptError> {
        let _bound = Bound::new(frame, Instant::now() + limits.deadline);
        self.runner().matches(engine, &self.ast, row)
    }

    /// Each part of an expression for customer `row`: whether it held and
    /// the fields it read with their values.
    pub fn explain(
        &self,
        engine: &Engine,
        catalog: &Catalog,
        frame: &Arc<Frame>,
        row: u32,
        limits: Limits,
    ) -> Result<Explanation, ScriptError> {
        let matched = self.matches(engine, frame, row, limits)?;
        let mut parts = Vec::new();
        if let Some(plan) = &self.plan {
            self.explain_node(engine, catalog, frame, row, limits, plan, 0, &mut parts);
        }
        let values = self
            .reads
            .iter()
            .map(|&f| {
                let field = &catalog.fields()[f];
                Read {
                    field: field.name.clone(),
                    value: frame
                        .column(f)
                        .map_or(Value::Missing, |c| c.get(row))
                        .to_json(field.ty),
                }
            })
            .collect();
        Ok(Explanation {
            matched,
            parts,
            values,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn explain_node(
        &self,
        engine: &Engine,
        catalog: &Catalog,
        frame: &Arc<Frame>,
        row: u32,
        limits: Limits,
        node: &Node,
        depth: usize,
        out: &mut Vec<Part>,
    ) {
        let span = node.span();
        let text = self.source[span.clone()].to_owned();
        let held = match engine.compile_expression_with_scope(
            &{
                let mut s = scope_for(self.today, &self.params);
                s.push("c", Customer { row });
                s
            },
            &text,
        ) {
            Ok(ast) => {
                let _bound = Bound::new(frame, Instant::now() + limits.deadline);
                let mut runner = self.runner();
                runner.shape = Shape::Expression;
                runner.matches(engine, &ast, row).map_err(|e| e.message)
            }
            Err(e) => Err(e.to_string()),
        };
        let tokens = parse::tokens(&text).unwrap_or_default();
        let reads = parse::field_uses(&tokens, "c")
            .into_iter()
            .filter_map(|u| {
                let f = catalog.index(&u.name)?;
                Some(Read {
                    field: u.name,
                    value: frame
                        .column(f)
                        .map_or(Value::Missing, |c| c.get(row))
                        .to_json(catalog.fields()[f].ty),
                })
            })
            .collect();
        out.push(Part {
            depth,
            text,
            held: held.clone().ok(),
            error: held.err(),
            reads,
        });
        let children: &[Node] = match node {
            Node::And(parts, _) | Node::Or(parts, _) => parts,
            Node::Not(inner, _) => std::slice::from_ref(inner.as_ref()),
            _ => &[],
        };
        for child in children {
            self.explain_node(engine, catalog, frame, row, limits, child, depth + 1, out);
        }
    }
}

fn test<'f>(node: &Node, frame: &'f Frame, catalog: &Catalog) -> Option<Test<'f>> {
    let column = |field: &str| frame.column(catalog.index(field)?);
    Some(match node {
        Node::And(parts, _) => Test::All(
            parts
                .iter()
                .map(|p| test(p, frame, catalog))
                .collect::<Option<_>>()?,
        ),
        Node::Or(parts, _) => Test::Any(
            parts
                .iter()
                .map(|p| test(p, frame, catalog))
                .collect::<Option<_>>()?,
        ),
        Node::Not(inner, _) => Test::Not(Box::new(test(inner, frame, catalog)?)),
        Node::Cmp {
            field, op, value, ..
        } => comparison(column(field)?, *op, value),
        Node::In { field, values, .. } => {
            let col = column(field)?;
            Test::Any(values.iter().map(|v| comparison(col, Op::Eq, v)).collect())
        }
        Node::Flag { field, .. } => comparison(column(field)?, Op::Eq, &Const::Bool(true)),
        Node::Opaque(_) => return None,
    })
}

/// Evaluates a script for one customer at a time on one thread.
struct Runner {
    scope: Scope<'static>,
    base: usize,
    shape: Shape,
    today: Dynamic,
    params: Dynamic,
}

impl Runner {
    fn matches(&mut self, engine: &Engine, ast: &AST, row: u32) -> Result<bool, ScriptError> {
        let c = Customer { row };
        let result: Result<Dynamic, _> = match self.shape {
            Shape::Expression => {
                self.scope.rewind(self.base);
                self.scope.push("c", c);
                engine.eval_ast_with_scope::<Dynamic>(&mut self.scope, ast)
            }
            Shape::Function { arity } => {
                let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
                if arity == 1 {
                    engine.call_fn_with_options::<Dynamic>(
                        options,
                        &mut self.scope,
                        ast,
                        "matches",
                        (c,),
                    )
                } else {
                    engine.call_fn_with_options::<Dynamic>(
                        options,
                        &mut self.scope,
                        ast,
                        "matches",
                        (c, self.today.clone(), self.params.clone()),
                    )
                }
            }
        };
        match result {
            Ok(v) => v.as_bool().map_err(|ty| ScriptError {
                pos: None,
                message: format!("the script must give true or false, but gave {ty}"),
            }),
            Err(err) => Err(ScriptError {
                pos: rhai_pos(err.position()),
                message: run_message(&err),
            }),
        }
    }
}

/// A runtime error as one sentence, without rhai's position suffix.
fn run_message(err: &rhai::EvalAltResult) -> String {
    use rhai::EvalAltResult as E;
    match err {
        E::ErrorTooManyOperations(_) => {
            "the script used more operations than a segment may per customer".into()
        }
        E::ErrorStackOverflow(_) => "the script calls itself too deeply".into(),
        E::ErrorDataTooLarge(what, _) => format!("{what} grew beyond what a segment may build"),
        E::ErrorTerminated(_, _) => "the segment's time limit was reached".into(),
        E::ErrorInFunctionCall(_, _, inner, _) => run_message(inner),
        E::ErrorRuntime(v, _) => v.to_string(),
        other => {
            let text = other.to_string();
            match text.rfind(" (line ") {
                Some(i) => text[..i].to_owned(),
                None => text,
            }
        }
    }
}

/// Why a customer is (or is not) in a segment.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub matched: bool,
    /// The expression's parts, outermost first (depth 0), for expressions.
    pub parts: Vec<Part>,
    /// Every field the script reads, with the customer's value.
    pub values: Vec<Read>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Part {
    pub depth: usize,
    pub text: String,
    pub held: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub reads: Vec<Read>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Read {
    pub field: String,
    pub value: Json,
}
