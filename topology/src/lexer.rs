//! Turns `.vbet` source into tokens. Strings, heredocs and identifiers may
//! hold `${expr}` interpolations; the lexer records where each one is and
//! the parser parses it.

use crate::diagnostics::{ErrorKind, Problem, Span};

/// A piece of a string, heredoc or identifier.
#[derive(Debug, Clone, PartialEq)]
pub enum RawPart {
    /// Literal text (escapes already applied).
    Lit(String),
    /// The source span of an interpolated expression (inside `${` `}`).
    Expr(Span),
}

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A name, possibly with interpolations: `r1`, `peer${i}`.
    Ident(Vec<RawPart>),
    /// An integer.
    Int(i64),
    /// A decimal number.
    Float(f64),
    /// A quoted string or a heredoc.
    Str(Vec<RawPart>),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `=`
    Eq,
    /// `;`
    Semi,
    /// `..`
    DotDot,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `%`
    Percent,
    /// A character the lexer refused (already reported).
    Bad,
    /// End of input.
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(parts) => match parts.as_slice() {
                [RawPart::Lit(s)] => format!("`{s}`"),
                _ => "a name".into(),
            },
            Tok::Int(i) => format!("`{i}`"),
            Tok::Float(f) => format!("`{f}`"),
            Tok::Str(_) => "a string".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBrace => "`{`".into(),
            Tok::RBrace => "`}`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Eq => "`=`".into(),
            Tok::Semi => "`;`".into(),
            Tok::DotDot => "`..`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Star => "`*`".into(),
            Tok::Slash => "`/`".into(),
            Tok::Percent => "`%`".into(),
            Tok::Bad => "a bad character".into(),
            Tok::Eof => "the end of the file".into(),
        }
    }

    /// The plain name, if this is an identifier without interpolation.
    pub fn plain_ident(&self) -> Option<&str> {
        match self {
            Tok::Ident(parts) => match parts.as_slice() {
                [RawPart::Lit(s)] => Some(s),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A token and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Its place in the source.
    pub span: Span,
    /// Whether a line break precedes it (statements may end at one).
    pub line_start: bool,
}

/// A heredoc waiting for its body on the next line.
struct PendingHeredoc {
    token: usize,
    marker: String,
    raw: bool,
}

/// Lexes `src` (file number `file`, starting at byte `base` of that file).
pub struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    base: usize,
    file: u32,
    tokens: Vec<Token>,
    problems: Vec<Problem>,
    pending: Vec<PendingHeredoc>,
    line_start: bool,
}

impl<'a> Lexer<'a> {
    /// A lexer over `src`, whose byte 0 is byte `base` of file `file`.
    pub fn new(src: &'a str, file: u32, base: usize) -> Self {
        Lexer {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            base,
            file,
            tokens: Vec::new(),
            problems: Vec::new(),
            pending: Vec::new(),
            line_start: true,
        }
    }

    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file, self.base + start, self.base + end)
    }

    fn error(&mut self, start: usize, end: usize, kind: ErrorKind) {
        let span = self.span(start, end.max(start));
        self.problems.push(Problem::new(kind, span));
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<u8> {
        self.bytes.get(self.pos + n).copied()
    }

    /// Lexes everything: the tokens (ending with `Eof`) and the problems found.
    pub fn run(mut self) -> (Vec<Token>, Vec<Problem>) {
        loop {
            self.skip_space();
            let start = self.pos;
            let Some(c) = self.peek() else {
                self.push(Tok::Eof, start, start);
                break;
            };
            match c {
                b'(' => self.single(Tok::LParen),
                b')' => self.single(Tok::RParen),
                b'{' => self.single(Tok::LBrace),
                b'}' => self.single(Tok::RBrace),
                b'[' => self.single(Tok::LBracket),
                b']' => self.single(Tok::RBracket),
                b',' => self.single(Tok::Comma),
                b'=' => self.single(Tok::Eq),
                b';' => self.single(Tok::Semi),
                b'+' => self.single(Tok::Plus),
                b'-' => self.single(Tok::Minus),
                b'*' => self.single(Tok::Star),
                b'/' => self.single(Tok::Slash),
                b'%' => self.single(Tok::Percent),
                b'.' if self.peek_at(1) == Some(b'.') => {
                    self.pos += 2;
                    self.push(Tok::DotDot, start, self.pos);
                }
                b'"' => self.string(),
                b'<' if self.peek_at(1) == Some(b'<') => self.heredoc_start(),
                b'0'..=b'9' => self.number(),
                c if c == b'_' || c == b'$' || c.is_ascii_alphabetic() => self.ident(),
                _ => {
                    let ch = self.src[self.pos..].chars().next().unwrap_or('?');
                    self.pos += ch.len_utf8();
                    self.error(start, self.pos, ErrorKind::UnexpectedChar(ch));
                    self.push(Tok::Bad, start, self.pos);
                }
            }
        }
        for p in std::mem::take(&mut self.pending) {
            let span = self.tokens[p.token].span;
            self.problems
                .push(Problem::new(ErrorKind::UnterminatedHeredoc(p.marker), span));
        }
        (self.tokens, self.problems)
    }

    fn push(&mut self, tok: Tok, start: usize, end: usize) {
        let span = self.span(start, end);
        self.tokens.push(Token {
            tok,
            span,
            line_start: self.line_start,
        });
        self.line_start = false;
    }

    fn single(&mut self, tok: Tok) {
        let start = self.pos;
        self.pos += 1;
        self.push(tok, start, self.pos);
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b'\n' => {
                    self.pos += 1;
                    self.line_start = true;
                    if !self.pending.is_empty() {
                        self.heredoc_bodies();
                    }
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'#' => self.skip_line(),
                b'/' if self.peek_at(1) == Some(b'/') => self.skip_line(),
                _ => break,
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek() {
            if c == b'\n' {
                break;
            }
            self.pos += 1;
        }
    }

    fn number(&mut self) {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let mut float = false;
        if self.peek() == Some(b'.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            float = true;
            self.pos += 1;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        let text = &self.src[start..self.pos];
        let tok = if float {
            text.parse().ok().map(Tok::Float)
        } else {
            text.parse().ok().map(Tok::Int)
        };
        match tok {
            Some(t) => self.push(t, start, self.pos),
            None => {
                self.error(start, self.pos, ErrorKind::BadNumber(text.into()));
                self.push(Tok::Int(0), start, self.pos);
            }
        }
    }

    /// Scans `${ ... }` starting at `self.pos` (on the `$`); returns the inner span.
    fn interpolation(&mut self) -> Option<Span> {
        let start = self.pos;
        self.pos += 2;
        let inner = self.pos;
        let mut depth = 1usize;
        while let Some(c) = self.peek() {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        let span = self.span(inner, self.pos);
                        self.pos += 1;
                        return Some(span);
                    }
                }
                b'\n' => break,
                b'"' => {
                    // A string inside the interpolation: skip it whole.
                    self.pos += 1;
                    while let Some(c) = self.peek() {
                        match c {
                            b'"' | b'\n' => break,
                            b'\\' => self.pos += 2,
                            _ => self.pos += 1,
                        }
                    }
                    if self.peek() != Some(b'"') {
                        break;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        self.pos = self.pos.min(self.bytes.len());
        self.error(start, self.pos, ErrorKind::UnterminatedInterpolation);
        None
    }

    fn ident(&mut self) {
        let start = self.pos;
        let mut parts = Vec::new();
        let mut lit = String::new();
        while let Some(c) = self.peek() {
            if c == b'$' && self.peek_at(1) == Some(b'{') {
                if !lit.is_empty() {
                    parts.push(RawPart::Lit(std::mem::take(&mut lit)));
                }
                if let Some(span) = self.interpolation() {
                    parts.push(RawPart::Expr(span));
                }
            } else if c == b'_' || c.is_ascii_alphanumeric() {
                lit.push(c as char);
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start {
            // A lone `$`.
            self.pos += 1;
            self.error(start, self.pos, ErrorKind::UnexpectedChar('$'));
            return;
        }
        if !lit.is_empty() {
            parts.push(RawPart::Lit(lit));
        }
        self.push(Tok::Ident(parts), start, self.pos);
    }

    fn string(&mut self) {
        let start = self.pos;
        self.pos += 1;
        let mut parts = Vec::new();
        let mut lit = String::new();
        loop {
            let Some(c) = self.peek() else {
                self.error(start, self.pos, ErrorKind::UnterminatedString);
                break;
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\n' => {
                    self.error(start, self.pos, ErrorKind::UnterminatedString);
                    break;
                }
                b'\\' => {
                    let esc_start = self.pos;
                    self.pos += 1;
                    let Some(e) = self.src[self.pos..].chars().next() else {
                        continue;
                    };
                    self.pos += e.len_utf8();
                    match e {
                        'n' => lit.push('\n'),
                        't' => lit.push('\t'),
                        'r' => lit.push('\r'),
                        '0' => lit.push('\0'),
                        '\\' | '"' | '$' => lit.push(e),
                        _ => self.error(esc_start, self.pos, ErrorKind::BadEscape(e)),
                    }
                }
                b'$' if self.peek_at(1) == Some(b'{') => {
                    if !lit.is_empty() {
                        parts.push(RawPart::Lit(std::mem::take(&mut lit)));
                    }
                    if let Some(span) = self.interpolation() {
                        parts.push(RawPart::Expr(span));
                    }
                }
                _ => {
                    let ch = self.src[self.pos..].chars().next().unwrap_or('?');
                    lit.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
        if !lit.is_empty() || parts.is_empty() {
            parts.push(RawPart::Lit(lit));
        }
        self.push(Tok::Str(parts), start, self.pos);
    }

    fn heredoc_start(&mut self) {
        let start = self.pos;
        self.pos += 2;
        let raw = self.peek() == Some(b'\'');
        if raw {
            self.pos += 1;
        }
        let m_start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c == b'_' || c.is_ascii_alphanumeric())
        {
            self.pos += 1;
        }
        let marker = self.src[m_start..self.pos].to_string();
        if raw {
            if self.peek() == Some(b'\'') {
                self.pos += 1;
            } else {
                self.error(start, self.pos, ErrorKind::BadHeredoc);
            }
        }
        if marker.is_empty() {
            self.error(start, self.pos, ErrorKind::BadHeredoc);
            self.push(Tok::Str(vec![RawPart::Lit(String::new())]), start, self.pos);
            return;
        }
        let token = self.tokens.len();
        self.push(Tok::Str(Vec::new()), start, self.pos);
        self.pending.push(PendingHeredoc { token, marker, raw });
    }

    /// Reads the bodies of pending heredocs, starting at the current line.
    fn heredoc_bodies(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            let body_start = self.pos;
            let mut lines: Vec<(usize, usize)> = Vec::new();
            let mut indent = None;
            while self.pos < self.bytes.len() {
                let ls = self.pos;
                let le = self.src[ls..]
                    .find('\n')
                    .map_or(self.bytes.len(), |i| ls + i);
                self.pos = (le + 1).min(self.bytes.len());
                let line = &self.src[ls..le];
                if line.trim() == p.marker {
                    indent = Some(line.len() - line.trim_start().len());
                    break;
                }
                lines.push((ls, le));
            }
            let Some(indent) = indent else {
                let span = self.tokens[p.token].span;
                self.problems
                    .push(Problem::new(ErrorKind::UnterminatedHeredoc(p.marker), span));
                self.pos = self.bytes.len();
                return;
            };
            let mut parts = Vec::new();
            let mut lit = String::new();
            for (ls, le) in lines {
                let line = &self.src[ls..le];
                let strip = line
                    .bytes()
                    .take(indent)
                    .take_while(|b| *b == b' ' || *b == b'\t')
                    .count();
                let ls = ls + strip;
                if p.raw {
                    lit.push_str(&self.src[ls..le]);
                } else {
                    self.heredoc_line(ls, le, &mut parts, &mut lit);
                }
                lit.push('\n');
            }
            if !lit.is_empty() || parts.is_empty() {
                parts.push(RawPart::Lit(lit));
            }
            let tok = &mut self.tokens[p.token];
            tok.tok = Tok::Str(parts);
            let _ = body_start;
        }
    }

    fn heredoc_line(&mut self, ls: usize, le: usize, parts: &mut Vec<RawPart>, lit: &mut String) {
        let saved = self.pos;
        self.pos = ls;
        while self.pos < le {
            if self.src[self.pos..le].starts_with("$${") {
                lit.push_str("${");
                self.pos += 3;
            } else if self.src[self.pos..le].starts_with("${") {
                if !lit.is_empty() {
                    parts.push(RawPart::Lit(std::mem::take(lit)));
                }
                if let Some(span) = self.interpolation() {
                    parts.push(RawPart::Expr(span));
                }
            } else {
                let ch = self.src[self.pos..].chars().next().unwrap_or('?');
                lit.push(ch);
                self.pos += ch.len_utf8();
            }
        }
        self.pos = saved;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        let (t, p) = Lexer::new(src, 0, 0).run();
        assert!(p.is_empty(), "{p:?}");
        t.into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn punctuation_numbers_and_names() {
        let t = toks("r1 = NIC(r1, 2) 1..16 1.5 # comment\n// another");
        assert_eq!(t[0].plain_ident(), Some("r1"));
        assert_eq!(t[1], Tok::Eq);
        assert_eq!(t[6], Tok::Int(2));
        assert_eq!(&t[8..11], &[Tok::Int(1), Tok::DotDot, Tok::Int(16)]);
        assert_eq!(t[11], Tok::Float(1.5));
        assert_eq!(t[12], Tok::Eof);
    }

    #[test]
    fn strings_and_interpolation() {
        let t = toks(r#""a\"b${i+1}c""#);
        let Tok::Str(parts) = &t[0] else { panic!() };
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], RawPart::Lit("a\"b".into()));
        assert!(matches!(parts[1], RawPart::Expr(s) if s.start == 7 && s.end == 10));
        let t = toks("peer${i}");
        let Tok::Ident(parts) = &t[0] else { panic!() };
        assert_eq!(parts.len(), 2);
    }

    #[test]
    fn heredocs() {
        let src = "file(r1, \"/x\", <<EOF)\n    a ${n}\n      b $${x}\n    EOF\nnext";
        let t = toks(src);
        let Tok::Str(parts) = &t[6] else { panic!() };
        assert_eq!(parts[0], RawPart::Lit("a ".into()));
        assert_eq!(parts[2], RawPart::Lit("\n  b ${x}\n".into()));
        assert_eq!(t[7], Tok::RParen);
        assert_eq!(t[8].plain_ident(), Some("next"));
        let t = toks("x(<<'END'\n${raw}\nEND\n)");
        assert_eq!(t[2], Tok::Str(vec![RawPart::Lit("${raw}\n".into())]));
    }

    #[test]
    fn lexical_errors() {
        let (_, p) = Lexer::new("\"open\n@ <<EOF\nx", 0, 0).run();
        assert_eq!(p.len(), 3);
    }
}
