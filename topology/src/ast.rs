//! The syntax tree of a `.vbet` file, with a span on everything.

use crate::diagnostics::Span;

/// A piece of a string or name.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Literal text.
    Lit(String),
    /// `${expr}`.
    Expr(Expr),
}

/// A string or name that may hold interpolations: `"10.0.${i}.1/24"`, `peer${i}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Its pieces in order.
    pub parts: Vec<Part>,
    /// Where it is.
    pub span: Span,
}

impl Template {
    /// The text, if it holds no interpolation.
    pub fn plain(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Lit(s)] => Some(s),
            [] => Some(""),
            _ => None,
        }
    }
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+` (also joins strings)
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it is.
    pub span: Span,
}

/// The forms of expression.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// `42`
    Int(i64),
    /// `1.5`
    Float(f64),
    /// `"text ${x}"` or a heredoc.
    Str(Template),
    /// A name: a variable, an entity or a kind.
    Name(Template),
    /// `f(arg, key=value)`.
    Call(Call),
    /// `[a, b]`.
    List(Vec<Expr>),
    /// `{expr}` or `(expr)`: grouping.
    Group(Box<Expr>),
    /// `-expr`.
    Neg(Box<Expr>),
    /// `a + b` etc.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// A placeholder where the parser found an error.
    Error,
}

/// A call of a built-in function.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The function's name.
    pub func: String,
    /// Where the name is.
    pub func_span: Span,
    /// Positional arguments.
    pub args: Vec<Expr>,
    /// `key=value` arguments (attributes).
    pub attrs: Vec<Attr>,
}

/// A `key=value` argument.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    /// The key.
    pub key: String,
    /// Where the key is.
    pub key_span: Span,
    /// The value.
    pub value: Expr,
}

/// What a `for` loop runs over.
#[derive(Debug, Clone, PartialEq)]
pub enum Iter {
    /// `a..b`, both ends included.
    Range(Expr, Expr),
    /// A list expression.
    List(Expr),
}

/// A statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// `name = expr`.
    Assign {
        /// The name bound.
        name: Template,
        /// The value.
        value: Expr,
    },
    /// An expression evaluated for its effect (`plug(...)`, `link(...)`).
    Expr(Expr),
    /// `for var in iter { body }`.
    For {
        /// The loop variable.
        var: String,
        /// Where the variable is.
        var_span: Span,
        /// What it runs over.
        iter: Iter,
        /// The statements repeated.
        body: Vec<Stmt>,
    },
    /// `include "file"`.
    Include {
        /// The path, relative to the including file.
        path: Template,
        /// The whole statement.
        span: Span,
    },
}
