//! What the platform reads from a script besides running it: the fields it
//! names (`c.NAME`), where, and, for expressions, their boolean structure.
//!
//! rhai keeps its syntax tree to itself (only its `internals` feature,
//! which is not for production, exposes it), so scripts are tokenised here
//! once rhai has accepted them. The structure is recovered only for the
//! shapes whose meaning is certain: `&&`, `||`, `!` over parenthesised
//! groups, and leaves that compare a field with a constant. Everything
//! else is an opaque leaf that rhai evaluates.

use std::ops::Range;

/// A place in a script: line and column, from 1, in characters (as rhai counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    Punct(&'static str),
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: Pos,
    /// Byte range in the source.
    pub span: Range<usize>,
}

const PUNCTS: &[&str] = &[
    "===", "!==", "..=", "...", "&&", "||", "==", "!=", "<=", ">=", "??", "?.", "?[", "..", "::",
    "=>", "->", "+=", "-=", "*=", "/=", "**", "<<", ">>", "(", ")", "[", "]", "{", "}", ".", ",",
    ";", ":", "!", "<", ">", "+", "-", "*", "/", "%", "=", "&", "|", "^", "?", "#", "@", "$",
];

/// The tokens of a script rhai has accepted; `None` for anything this
/// tokeniser does not follow (the script is then treated as opaque).
pub(crate) fn tokens(src: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let bytes = src.as_bytes();
    let (mut i, mut line, mut column) = (0usize, 1usize, 1usize);
    let advance = |from: usize, to: usize, line: &mut usize, column: &mut usize| {
        for ch in src[from..to].chars() {
            if ch == '\n' {
                *line += 1;
                *column = 1;
            } else {
                *column += 1;
            }
        }
    };
    while i < bytes.len() {
        let rest = &src[i..];
        let ch = rest.chars().next()?;
        let start = i;
        let pos = Pos { line, column };
        let end;
        if ch.is_whitespace() {
            end = i + ch.len_utf8();
        } else if rest.starts_with("//") {
            end = i + rest.find('\n').unwrap_or(rest.len());
        } else if let Some(comment) = rest.strip_prefix("/*") {
            end = i + 2 + comment.find("*/")? + 2;
        } else if ch.is_ascii_digit() {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(rest.len());
            let mut text = &rest[..len];
            // `1..5` is a range, not a float.
            if let Some(dots) = text.find("..") {
                text = &text[..dots];
            }
            end = i + text.len();
            let clean = text.replace('_', "");
            let tok = if let Ok(v) = clean.parse::<i64>() {
                Tok::Int(v)
            } else if let Ok(v) = clean.parse::<f64>() {
                Tok::Float(v)
            } else {
                return None;
            };
            out.push(Token {
                tok,
                pos,
                span: start..end,
            });
        } else if ch.is_alphabetic() || ch == '_' {
            let len = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            end = i + len;
            out.push(Token {
                tok: Tok::Ident(rest[..len].to_owned()),
                pos,
                span: start..end,
            });
        } else if ch == '"' || ch == '`' || ch == '\'' {
            let (text, len) = quoted(rest, ch)?;
            end = i + len;
            out.push(Token {
                tok: Tok::Str(text),
                pos,
                span: start..end,
            });
        } else {
            let p = PUNCTS.iter().find(|p| rest.starts_with(**p))?;
            end = i + p.len();
            out.push(Token {
                tok: Tok::Punct(p),
                pos,
                span: start..end,
            });
        }
        advance(i, end, &mut line, &mut column);
        i = end;
    }
    Some(out)
}

/// A quoted literal at the start of `rest`: its text and its length in bytes.
fn quoted(rest: &str, quote: char) -> Option<(String, usize)> {
    let mut text = String::new();
    let mut chars = rest.char_indices().skip(1);
    while let Some((at, ch)) = chars.next() {
        if ch == quote {
            return Some((text, at + 1));
        }
        if ch == '\\' && quote != '`' {
            let (_, esc) = chars.next()?;
            text.push(match esc {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                // \x, \u and \U escapes: left to rhai; such literals are opaque.
                'x' | 'u' | 'U' => return None,
                other => other,
            });
        } else {
            text.push(ch);
        }
    }
    None
}

/// A use of a field in a script: `c.NAME` at `pos`.
#[derive(Clone, Debug)]
pub(crate) struct FieldUse {
    pub name: String,
    pub pos: Pos,
    /// Index of the name's token.
    pub token: usize,
}

/// Every `VAR.NAME` (not followed by `(`, which is a method call) where VAR
/// is the customer variable.
pub(crate) fn field_uses(tokens: &[Token], var: &str) -> Vec<FieldUse> {
    let mut uses = Vec::new();
    for i in 0..tokens.len().saturating_sub(2) {
        let is_var = matches!(&tokens[i].tok, Tok::Ident(v) if v == var);
        // `x.c.name` is a property of x, not the customer.
        let after_dot = i > 0 && matches!(tokens[i - 1].tok, Tok::Punct("." | "?."));
        if !is_var || after_dot || !matches!(tokens[i + 1].tok, Tok::Punct("." | "?.")) {
            continue;
        }
        if let Tok::Ident(name) = &tokens[i + 2].tok {
            let call = matches!(tokens.get(i + 3), Some(t) if t.tok == Tok::Punct("("));
            if !call {
                uses.push(FieldUse {
                    name: name.clone(),
                    pos: tokens[i + 2].pos,
                    token: i + 2,
                });
            }
        }
    }
    uses
}

/// A constant a field is compared with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Const {
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

impl Const {
    pub(crate) fn describe(&self) -> String {
        match self {
            Const::Int(v) => format!("the number {v}"),
            Const::Float(v) => format!("the number {v}"),
            Const::Text(v) => format!("the text {v:?}"),
            Const::Bool(v) => format!("{v}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn parse(p: &str) -> Option<Op> {
        Some(match p {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            _ => return None,
        })
    }

    /// The operator with its sides swapped: `5 < x` is `x > 5`.
    fn flipped(self) -> Op {
        match self {
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
            other => other,
        }
    }
}

/// The boolean structure of an expression.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    And(Vec<Node>, Range<usize>),
    Or(Vec<Node>, Range<usize>),
    Not(Box<Node>, Range<usize>),
    /// A field compared with a constant.
    Cmp {
        field: String,
        op: Op,
        value: Const,
        span: Range<usize>,
    },
    /// A field with one of several constants: `c.f in [a, b]`.
    In {
        field: String,
        values: Vec<Const>,
        span: Range<usize>,
    },
    /// A boolean field on its own.
    Flag {
        field: String,
        span: Range<usize>,
    },
    /// Anything else, evaluated by rhai.
    Opaque(Range<usize>),
}

impl Node {
    pub(crate) fn span(&self) -> Range<usize> {
        match self {
            Node::And(_, s) | Node::Or(_, s) | Node::Not(_, s) | Node::Opaque(s) => s.clone(),
            Node::Cmp { span, .. } | Node::In { span, .. } | Node::Flag { span, .. } => {
                span.clone()
            }
        }
    }

    /// Whether the node can be evaluated over columns, without rhai.
    pub(crate) fn is_plain(&self) -> bool {
        match self {
            Node::And(parts, _) | Node::Or(parts, _) => parts.iter().all(Node::is_plain),
            Node::Not(inner, _) => inner.is_plain(),
            Node::Cmp { .. } | Node::In { .. } | Node::Flag { .. } => true,
            Node::Opaque(_) => false,
        }
    }
}

/// Resolves the constants scripts may compare with: literals, `today`,
/// `date("...")`, `params.NAME`.
pub(crate) trait Constants {
    fn today(&self) -> Option<i64>;
    fn date(&self, text: &str) -> Option<i64>;
    fn param(&self, name: &str) -> Option<Const>;
}

/// Token kinds the structure parser follows; any other at the top level
/// makes the whole expression opaque (its precedence might differ).
fn followed(tok: &Tok) -> bool {
    match tok {
        Tok::Punct(p) => matches!(
            *p,
            "&&" | "||"
                | "!"
                | "=="
                | "!="
                | "<"
                | "<="
                | ">"
                | ">="
                | "("
                | ")"
                | "["
                | "]"
                | "."
                | ","
                | "+"
                | "-"
                | "*"
                | "/"
                | "%"
        ),
        _ => true,
    }
}

pub(crate) struct Parser<'a> {
    pub tokens: &'a [Token],
    pub var: &'a str,
    pub consts: &'a dyn Constants,
    pub src_len: usize,
}

impl Parser<'_> {
    /// The structure of the whole expression.
    pub(crate) fn parse(&self) -> Node {
        if self.tokens.is_empty() || !self.tokens.iter().all(|t| followed(&t.tok)) {
            return Node::Opaque(0..self.src_len);
        }
        self.or(0, self.tokens.len())
    }

    fn span(&self, lo: usize, hi: usize) -> Range<usize> {
        self.tokens[lo].span.start..self.tokens[hi - 1].span.end
    }

    /// Positions of `sep` at depth 0 in `lo..hi`; `None` if brackets do not balance.
    fn split(&self, lo: usize, hi: usize, sep: &str) -> Option<Vec<(usize, usize)>> {
        let mut parts = Vec::new();
        let (mut depth, mut from) = (0i32, lo);
        for i in lo..hi {
            match self.tokens[i].tok {
                Tok::Punct("(" | "[") => depth += 1,
                Tok::Punct(")" | "]") => depth -= 1,
                Tok::Punct(p) if p == sep && depth == 0 => {
                    parts.push((from, i));
                    from = i + 1;
                }
                _ => {}
            }
            if depth < 0 {
                return None;
            }
        }
        parts.push((from, hi));
        (depth == 0 && parts.iter().all(|(a, b)| a < b)).then_some(parts)
    }

    fn or(&self, lo: usize, hi: usize) -> Node {
        match self.split(lo, hi, "||") {
            None => Node::Opaque(self.span(lo, hi)),
            Some(parts) if parts.len() == 1 => self.and(lo, hi),
            Some(parts) => Node::Or(
                parts.into_iter().map(|(a, b)| self.and(a, b)).collect(),
                self.span(lo, hi),
            ),
        }
    }

    fn and(&self, lo: usize, hi: usize) -> Node {
        match self.split(lo, hi, "&&") {
            None => Node::Opaque(self.span(lo, hi)),
            Some(parts) if parts.len() == 1 => self.unary(lo, hi),
            Some(parts) => Node::And(
                parts.into_iter().map(|(a, b)| self.unary(a, b)).collect(),
                self.span(lo, hi),
            ),
        }
    }

    /// The closing bracket of the one at `open`.
    fn matching(&self, open: usize, hi: usize) -> Option<usize> {
        let mut depth = 0;
        for i in open..hi {
            match self.tokens[i].tok {
                Tok::Punct("(" | "[") => depth += 1,
                Tok::Punct(")" | "]") => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
        None
    }

    fn unary(&self, lo: usize, hi: usize) -> Node {
        let span = self.span(lo, hi);
        match self.tokens[lo].tok {
            Tok::Punct("(") if self.matching(lo, hi) == Some(hi - 1) => {
                let inner = self.or(lo + 1, hi - 1);
                // Keep the parentheses in the span of a group.
                match inner {
                    Node::Opaque(_) => Node::Opaque(span),
                    other => other,
                }
            }
            Tok::Punct("!") if lo + 1 < hi => {
                let group = self.tokens[lo + 1].tok == Tok::Punct("(")
                    && self.matching(lo + 1, hi) == Some(hi - 1);
                let inner = self.unary(lo + 1, hi);
                if group || matches!(inner, Node::Flag { .. }) {
                    Node::Not(Box::new(inner), span)
                } else {
                    Node::Opaque(span)
                }
            }
            _ => self.leaf(lo, hi).unwrap_or(Node::Opaque(span)),
        }
    }

    /// `c.f` at `at`: the field name.
    fn field_at(&self, at: usize, hi: usize) -> Option<String> {
        if at + 3 > hi {
            return None;
        }
        match (
            &self.tokens[at].tok,
            &self.tokens[at + 1].tok,
            &self.tokens[at + 2].tok,
        ) {
            (Tok::Ident(v), Tok::Punct("."), Tok::Ident(name)) if v == self.var => {
                Some(name.clone())
            }
            _ => None,
        }
    }

    /// A constant spanning exactly `lo..hi`.
    fn constant(&self, lo: usize, hi: usize) -> Option<Const> {
        let t = |i: usize| &self.tokens[i].tok;
        match hi - lo {
            1 => match t(lo) {
                Tok::Int(v) => Some(Const::Int(*v)),
                Tok::Float(v) => Some(Const::Float(*v)),
                Tok::Str(s) => Some(Const::Text(s.clone())),
                Tok::Ident(id) if id == "true" => Some(Const::Bool(true)),
                Tok::Ident(id) if id == "false" => Some(Const::Bool(false)),
                Tok::Ident(id) if id == "today" => self.consts.today().map(Const::Int),
                _ => None,
            },
            2 => match (t(lo), t(lo + 1)) {
                (Tok::Punct("-"), Tok::Int(v)) => Some(Const::Int(v.checked_neg()?)),
                (Tok::Punct("-"), Tok::Float(v)) => Some(Const::Float(-v)),
                _ => None,
            },
            3 => match (t(lo), t(lo + 1), t(lo + 2)) {
                (Tok::Ident(p), Tok::Punct("."), Tok::Ident(name)) if p == "params" => {
                    self.consts.param(name)
                }
                _ => None,
            },
            4 => match (t(lo), t(lo + 1), t(lo + 2), t(lo + 3)) {
                (Tok::Ident(f), Tok::Punct("("), Tok::Str(s), Tok::Punct(")")) if f == "date" => {
                    self.consts.date(s).map(Const::Int)
                }
                _ => None,
            },
            _ => None,
        }
    }

    fn leaf(&self, lo: usize, hi: usize) -> Option<Node> {
        let span = self.span(lo, hi);
        if let Some(field) = self.field_at(lo, hi) {
            if hi - lo == 3 {
                return Some(Node::Flag { field, span });
            }
            let after = lo + 3;
            if let Tok::Punct(p) = self.tokens[after].tok
                && let Some(op) = Op::parse(p)
            {
                let value = self.constant(after + 1, hi)?;
                return Some(Node::Cmp {
                    field,
                    op,
                    value,
                    span,
                });
            }
            if matches!(&self.tokens[after].tok, Tok::Ident(k) if k == "in")
                && self.tokens.get(after + 1)?.tok == Tok::Punct("[")
                && self.matching(after + 1, hi) == Some(hi - 1)
            {
                let items = self.split(after + 2, hi - 1, ",")?;
                let values = items
                    .into_iter()
                    .map(|(a, b)| self.constant(a, b))
                    .collect::<Option<Vec<_>>>()?;
                return Some(Node::In {
                    field,
                    values,
                    span,
                });
            }
            return None;
        }
        // constant OP c.f
        let op_at = (lo + 1..hi)
            .find(|&i| matches!(self.tokens[i].tok, Tok::Punct(p) if Op::parse(p).is_some()))?;
        let value = self.constant(lo, op_at)?;
        let field = self.field_at(op_at + 1, hi)?;
        if op_at + 4 != hi {
            return None;
        }
        let Tok::Punct(p) = self.tokens[op_at].tok else {
            return None;
        };
        Some(Node::Cmp {
            field,
            op: Op::parse(p)?.flipped(),
            value,
            span,
        })
    }
}
