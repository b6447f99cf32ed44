//! Parses `.vbet` tokens into statements. After an error it skips to the
//! next line and goes on, so one run reports every syntax error.
//!
//! ```text
//! program := stmt*
//! stmt    := "include" STRING | "for" NAME "in" iter block
//!          | NAME "=" expr | expr | ";"
//! iter    := expr ".." expr | expr
//! block   := "{" stmt* "}"
//! expr    := term (("+" | "-") term)*
//! term    := unary (("*" | "/" | "%") unary)*
//! unary   := "-" unary | primary
//! primary := INT | FLOAT | STRING | HEREDOC | NAME | NAME "(" args ")"
//!          | "[" [expr ("," expr)*] "]" | "{" expr "}" | "(" expr ")"
//! args    := [arg ("," arg)* [","]];  arg := NAME "=" expr | expr
//! ```

use crate::ast::{Attr, BinOp, Call, Expr, ExprKind, Iter, Part, Stmt, Template};
use crate::diagnostics::{ErrorKind, Problem, Span};
use crate::lexer::{Lexer, RawPart, Tok, Token};

/// How deep expressions may nest before the parser gives up (keeps the stack bounded).
const MAX_DEPTH: usize = 64;

/// Parses file number `file` whose text is `src`: the statements and every problem found.
pub fn parse(src: &str, file: u32) -> (Vec<Stmt>, Vec<Problem>) {
    let (tokens, problems) = Lexer::new(src, file, 0).run();
    let mut p = Parser {
        src,
        file,
        tokens,
        pos: 0,
        problems,
        depth: 0,
        failed: false,
    };
    let stmts = p.stmts(false);
    (stmts, p.problems)
}

struct Parser<'a> {
    src: &'a str,
    file: u32,
    tokens: Vec<Token>,
    pos: usize,
    problems: Vec<Problem>,
    depth: usize,
    failed: bool,
}

impl Parser<'_> {
    fn tok(&self) -> &Tok {
        &self.tokens[self.pos].tok
    }

    fn tok_at(&self, n: usize) -> &Tok {
        let i = (self.pos + n).min(self.tokens.len() - 1);
        &self.tokens[i].tok
    }

    fn span(&self) -> Span {
        self.tokens[self.pos].span
    }

    fn prev_span(&self) -> Span {
        self.tokens[self.pos.saturating_sub(1)].span
    }

    fn bump(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn fail(&mut self, expected: &str) {
        if !self.failed && *self.tok() != Tok::Bad {
            let found = self.tok().describe();
            let span = self.span();
            self.problems.push(Problem::new(
                ErrorKind::Expected {
                    expected: expected.into(),
                    found,
                },
                span,
            ));
        }
        self.failed = true;
    }

    fn expect(&mut self, tok: Tok, expected: &str) -> bool {
        if *self.tok() == tok {
            self.bump();
            true
        } else {
            self.fail(expected);
            false
        }
    }

    /// Skips to the first token of a later line (or a closing brace or the end).
    fn sync(&mut self, stmt_start: usize) {
        self.failed = false;
        if *self.tok() == Tok::Eof {
            return;
        }
        if self.pos > stmt_start && self.tokens[self.pos].line_start {
            return;
        }
        self.bump();
        while !self.tokens[self.pos].line_start && !matches!(self.tok(), Tok::Eof) {
            self.bump();
        }
    }

    fn stmts(&mut self, in_block: bool) -> Vec<Stmt> {
        let mut out = Vec::new();
        loop {
            match self.tok() {
                Tok::Eof => {
                    if in_block {
                        self.fail("`}` closing the block");
                    }
                    break;
                }
                Tok::RBrace if in_block => break,
                Tok::Semi => {
                    self.bump();
                    continue;
                }
                _ => {}
            }
            let before = self.pos;
            let stmt = self.stmt();
            if self.failed {
                self.sync(before);
            } else if let Some(s) = stmt {
                out.push(s);
            }
            if self.pos == before && !self.failed {
                // No progress: never loop forever.
                self.fail("a statement");
                self.sync(before);
            }
        }
        out
    }

    fn stmt(&mut self) -> Option<Stmt> {
        let start = self.span();
        match self.tok().plain_ident() {
            Some("include") if matches!(self.tok_at(1), Tok::Str(_)) => {
                self.bump();
                let t = self.bump();
                let Tok::Str(parts) = t.tok else { return None };
                let path = self.template(parts, t.span);
                return Some(Stmt::Include {
                    path,
                    span: start.to(t.span),
                });
            }
            Some("for") if self.tok_at(1).plain_ident().is_some() => {
                self.bump();
                let v = self.bump();
                let var = v.tok.plain_ident().unwrap_or_default().to_string();
                if self.tok().plain_ident() != Some("in") {
                    self.fail("`in`");
                    return None;
                }
                self.bump();
                let first = self.expr();
                let iter = if *self.tok() == Tok::DotDot {
                    self.bump();
                    Iter::Range(first, self.expr())
                } else {
                    Iter::List(first)
                };
                if !self.expect(Tok::LBrace, "`{` opening the loop body") {
                    return None;
                }
                let body = self.stmts(true);
                self.expect(Tok::RBrace, "`}` closing the loop body");
                return Some(Stmt::For {
                    var,
                    var_span: v.span,
                    iter,
                    body,
                });
            }
            _ => {}
        }
        if let (Tok::Ident(_), Tok::Eq) = (self.tok(), self.tok_at(1)) {
            let t = self.bump();
            self.bump();
            let Tok::Ident(parts) = t.tok else {
                return None;
            };
            let name = self.template(parts, t.span);
            let value = self.expr();
            return Some(Stmt::Assign { name, value });
        }
        let e = self.expr();
        Some(Stmt::Expr(e))
    }

    fn expr(&mut self) -> Expr {
        self.depth += 1;
        let e = if self.depth > MAX_DEPTH {
            if !self.failed {
                let span = self.span();
                self.problems.push(Problem::new(ErrorKind::TooDeep, span));
            }
            self.failed = true;
            Expr {
                kind: ExprKind::Error,
                span: self.span(),
            }
        } else {
            self.sum()
        };
        self.depth -= 1;
        e
    }

    fn sum(&mut self) -> Expr {
        let mut left = self.product();
        loop {
            let op = match self.tok() {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return left,
            };
            self.bump();
            let right = self.product();
            let span = left.span.to(right.span);
            left = Expr {
                kind: ExprKind::Binary(op, Box::new(left), Box::new(right)),
                span,
            };
        }
    }

    fn product(&mut self) -> Expr {
        let mut left = self.unary();
        loop {
            let op = match self.tok() {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                Tok::Percent => BinOp::Rem,
                _ => return left,
            };
            self.bump();
            let right = self.unary();
            let span = left.span.to(right.span);
            left = Expr {
                kind: ExprKind::Binary(op, Box::new(left), Box::new(right)),
                span,
            };
        }
    }

    fn unary(&mut self) -> Expr {
        if *self.tok() == Tok::Minus {
            let start = self.bump().span;
            let inner = self.nested(|p| p.unary());
            let span = start.to(inner.span);
            return Expr {
                kind: ExprKind::Neg(Box::new(inner)),
                span,
            };
        }
        self.primary()
    }

    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Expr) -> Expr {
        self.depth += 1;
        let e = if self.depth > MAX_DEPTH {
            self.expr()
        } else {
            f(self)
        };
        self.depth -= 1;
        e
    }

    fn primary(&mut self) -> Expr {
        let start = self.span();
        let error = Expr {
            kind: ExprKind::Error,
            span: start,
        };
        if self.failed {
            return error;
        }
        match self.tok().clone() {
            Tok::Int(i) => {
                self.bump();
                Expr {
                    kind: ExprKind::Int(i),
                    span: start,
                }
            }
            Tok::Float(f) => {
                self.bump();
                Expr {
                    kind: ExprKind::Float(f),
                    span: start,
                }
            }
            Tok::Str(parts) => {
                self.bump();
                let t = self.template(parts, start);
                Expr {
                    kind: ExprKind::Str(t),
                    span: start,
                }
            }
            Tok::Ident(parts) => {
                self.bump();
                if *self.tok() == Tok::LParen {
                    let Some(func) = self.tokens[self.pos - 1]
                        .tok
                        .plain_ident()
                        .map(String::from)
                    else {
                        self.fail("a function name without `${}`");
                        return error;
                    };
                    return self.call(func, start);
                }
                let t = self.template(parts, start);
                Expr {
                    kind: ExprKind::Name(t),
                    span: start,
                }
            }
            Tok::LBracket => {
                self.bump();
                let mut items = Vec::new();
                while *self.tok() != Tok::RBracket {
                    items.push(self.expr());
                    if self.failed {
                        return error;
                    }
                    if *self.tok() == Tok::Comma {
                        self.bump();
                    } else {
                        break;
                    }
                }
                self.expect(Tok::RBracket, "`]` or `,`");
                Expr {
                    kind: ExprKind::List(items),
                    span: start.to(self.prev_span()),
                }
            }
            Tok::LBrace | Tok::LParen => {
                let close = if *self.tok() == Tok::LBrace {
                    Tok::RBrace
                } else {
                    Tok::RParen
                };
                let what = if close == Tok::RBrace { "`}`" } else { "`)`" };
                self.bump();
                let inner = self.expr();
                self.expect(close, what);
                Expr {
                    kind: ExprKind::Group(Box::new(inner)),
                    span: start.to(self.prev_span()),
                }
            }
            _ => {
                self.fail("an expression");
                error
            }
        }
    }

    fn call(&mut self, func: String, func_span: Span) -> Expr {
        self.bump(); // (
        let mut args = Vec::new();
        let mut attrs = Vec::new();
        while *self.tok() != Tok::RParen {
            if let (Some(key), Tok::Eq) = (self.tok().plain_ident(), self.tok_at(1)) {
                let key = key.to_string();
                let key_span = self.bump().span;
                self.bump();
                let value = self.expr();
                attrs.push(Attr {
                    key,
                    key_span,
                    value,
                });
            } else {
                args.push(self.expr());
            }
            if self.failed {
                return Expr {
                    kind: ExprKind::Error,
                    span: func_span,
                };
            }
            if *self.tok() == Tok::Comma {
                self.bump();
            } else {
                break;
            }
        }
        self.expect(Tok::RParen, "`)` or `,`");
        let span = func_span.to(self.prev_span());
        Expr {
            kind: ExprKind::Call(Call {
                func,
                func_span,
                args,
                attrs,
            }),
            span,
        }
    }

    /// Parses the interpolations of a string or name.
    fn template(&mut self, raw: Vec<RawPart>, span: Span) -> Template {
        let mut parts = Vec::new();
        for r in raw {
            match r {
                RawPart::Lit(s) => parts.push(Part::Lit(s)),
                RawPart::Expr(inner) => {
                    if let Some(e) = self.interpolated(inner) {
                        parts.push(Part::Expr(e));
                    }
                }
            }
        }
        Template { parts, span }
    }

    fn interpolated(&mut self, inner: Span) -> Option<Expr> {
        let text = self.src.get(inner.start..inner.end)?;
        let (tokens, problems) = Lexer::new(text, self.file, inner.start).run();
        let had = problems.len();
        self.problems.extend(problems);
        if had > 0 {
            return None;
        }
        if self.depth > MAX_DEPTH {
            self.problems.push(Problem::new(ErrorKind::TooDeep, inner));
            return None;
        }
        let mut sub = Parser {
            src: self.src,
            file: self.file,
            tokens,
            pos: 0,
            problems: Vec::new(),
            depth: self.depth + 1,
            failed: false,
        };
        if *sub.tok() == Tok::Eof {
            sub.fail("an expression inside `${}`");
        }
        let e = sub.expr();
        if !sub.failed && *sub.tok() != Tok::Eof {
            sub.fail("`}` ending the interpolation");
        }
        let failed = sub.failed;
        self.problems.extend(sub.problems);
        (!failed).then_some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Vec<Stmt> {
        let (s, p) = parse(src, 0);
        assert!(p.is_empty(), "{src}: {p:?}");
        s
    }

    #[test]
    fn paper_statements_parse() {
        let s = ok(
            "switch1 = {attach(alloc(switch), alloc(NIC), alloc(NIC), alloc(NIC))}\n\
                    host1 = attach(alloc(host), alloc(NIC)) host2 = attach(alloc(host), alloc(NIC))\n\
                    plug(cable1, NIC(switch1)) plug(cable2, NIC(switch1))\n\
                    link(NIC(r1,2), NIC(r2, 1))\n\
                    link(alloc(switch), server, NIC(fw1, 1), NIC(fw2,1))",
        );
        assert_eq!(s.len(), 7);
        assert!(matches!(
            &s[0],
            Stmt::Assign {
                value: Expr {
                    kind: ExprKind::Group(_),
                    ..
                },
                ..
            }
        ));
    }

    #[test]
    fn extensions_parse() {
        let s = ok(
            "include \"common.vbet\"\nn = 16\nfor i in 1..n { peer${i} = alloc(host, nics=1); set(NIC(peer${i},1), addr=\"10.0.0.${i + 1}/24\") }\nfor x in [1, 2] {}\n",
        );
        assert_eq!(s.len(), 4);
        let Stmt::For { body, .. } = &s[2] else {
            panic!()
        };
        assert_eq!(body.len(), 2);
    }

    #[test]
    fn arithmetic_precedence() {
        let s = ok("x = 1 + 2 * -3 % 4");
        let Stmt::Assign { value, .. } = &s[0] else {
            panic!()
        };
        assert!(
            matches!(&value.kind, ExprKind::Binary(BinOp::Add, _, r) if matches!(r.kind, ExprKind::Binary(BinOp::Rem, _, _)))
        );
    }

    #[test]
    fn errors_are_all_reported() {
        let (_, p) = parse("a = (1\nb = ]\nc = alloc(host)\nplug(c,, d)\n", 0);
        assert_eq!(p.len(), 3, "{p:?}");
        let (_, p) = parse("for i in 1..3 { x = \n", 0);
        assert!(!p.is_empty());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let src = "x = ".to_string() + &"(".repeat(10_000) + &")".repeat(10_000);
        let (_, p) = parse(&src, 0);
        assert!(p.iter().any(|p| p.kind == ErrorKind::TooDeep));
        let src = "x = ".to_string() + &"-".repeat(10_000) + "1";
        let (_, p) = parse(&src, 0);
        assert!(p.iter().any(|p| p.kind == ErrorKind::TooDeep));
    }
}
