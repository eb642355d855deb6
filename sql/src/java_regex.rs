//! Java regular expressions (`java.util.regex.Pattern`) on top of the `regex`
//! crate.
//!
//! Hive's `RegexSerDe` compiles its `input.regex` table property with
//! `Pattern.compile(regex, Pattern.DOTALL)` and keeps a row only when
//! `Matcher.matches()` succeeds, that is when the whole line matches. This
//! module translates such a Java pattern into a `regex` crate pattern with the
//! same meaning, so that the same table definitions give the same rows:
//!
//! - Java's predefined classes are ASCII-only by default: `\s` is
//!   `[ \t\n\x0B\f\r]`, `\d` is `[0-9]`, `\w` is `[a-zA-Z_0-9]`, while the
//!   `regex` crate's are Unicode-aware.
//! - Java's `.` excludes the line terminators `\n \r \u0085 \u2028 \u2029`
//!   unless `DOTALL` is set (`regex` excludes only `\n`).
//! - Java allows escaping any non-alphanumeric character (`\%`, `\;`, `\/`),
//!   and treats `]` and `}` as literals outside classes.
//! - Java's `$` also matches before a final line terminator; under full-match
//!   semantics and at the end of the pattern it is equivalent to `\z`.
//! - The `regex` crate has no look-around. The one form found in practice,
//!   a negative look-ahead of a literal at the very start (`^(?!#)`, skip
//!   comment lines), is supported by checking the prefix separately.
//!
//! Capture groups keep their numbers. Greedy and lazy quantifiers keep their
//! Java meaning because the `regex` crate reports the captures of the
//! leftmost-first (backtracking-priority) match. Constructs whose Java meaning
//! cannot be reproduced (other look-around, back-references, atomic groups,
//! possessive quantifiers, inline flags, `\b`, `\G`, nested classes and class
//! intersections, ...) are rejected with an [`Error::Unsupported`] naming the
//! construct and its position.

use regex::{CaptureLocations, Captures, Regex};

/// Errors from translating or compiling a Java regular expression.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A valid Java construct that has no equivalent here.
    #[error("unsupported Java regex construct {construct} at position {position} of {pattern:?}")]
    Unsupported {
        /// The construct, e.g. "look-behind `(?<=`".
        construct: String,
        /// Character position (0-based) of the construct in the pattern.
        position: usize,
        /// The Java pattern.
        pattern: String,
    },
    /// The pattern is not a valid Java regular expression.
    #[error("invalid Java regex at position {position} of {pattern:?}: {message}")]
    Syntax {
        /// What is wrong.
        message: String,
        /// Character position (0-based) of the problem in the pattern.
        position: usize,
        /// The Java pattern.
        pattern: String,
    },
    /// The translated pattern was rejected by the `regex` crate (for example
    /// because it exceeds the compiled size limit).
    #[error("translation {translated:?} of Java regex {pattern:?} does not compile: {source}")]
    Compile {
        /// The Java pattern.
        pattern: String,
        /// The translated `regex` crate pattern.
        translated: String,
        /// The `regex` crate's error.
        #[source]
        source: regex::Error,
    },
}

/// The `java.util.regex.Pattern` flags that change the translation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JavaFlags {
    /// `Pattern.DOTALL`: `.` matches every character, line terminators
    /// included.
    pub dotall: bool,
    /// `Pattern.CASE_INSENSITIVE`. Java folds only US-ASCII letters unless
    /// `UNICODE_CASE` is also given; the `regex` crate folds Unicode
    /// letters too, so non-ASCII letters may match where Java's would not.
    pub case_insensitive: bool,
}

impl JavaFlags {
    /// The flags Hive's `RegexSerDe` compiles `input.regex` with
    /// (`Pattern.DOTALL`, plus `CASE_INSENSITIVE` when the table sets
    /// `input.regex.case.insensitive` to `true`).
    pub const HIVE: JavaFlags = JavaFlags {
        dotall: true,
        case_insensitive: false,
    };
}

/// The result of [`translate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// A `regex` crate pattern anchored at both ends (`\A(?:...)\z`): it
    /// matches exactly the inputs the Java pattern `matches()`, apart from
    /// the [`forbidden_prefix`](Self::forbidden_prefix) check.
    pub pattern: String,
    /// From a leading `^(?!LITERAL)`: inputs starting with this literal do
    /// not match.
    pub forbidden_prefix: Option<String>,
    /// Number of capture groups (group 0 excluded), numbered as in Java.
    pub group_count: usize,
}

/// Translates a Java regular expression into a `regex` crate pattern with
/// the semantics of Java's `Matcher.matches()` (the whole input must match).
///
/// See the module documentation for what is translated and what is rejected.
pub fn translate(java_pattern: &str, flags: JavaFlags) -> Result<Translation, Error> {
    Translator::new(java_pattern, flags).run()
}

/// A compiled Java regular expression with full-match (`Matcher.matches()`)
/// semantics.
#[derive(Debug, Clone)]
pub struct JavaRegex {
    java_pattern: String,
    regex: Regex,
    forbidden_prefix: Option<String>,
    group_count: usize,
    case_insensitive: bool,
}

impl JavaRegex {
    /// Compiles `java_pattern` with default flags (as `Pattern.compile(p)`).
    pub fn new(java_pattern: &str) -> Result<Self, Error> {
        Self::with_flags(java_pattern, JavaFlags::default())
    }

    /// Compiles `java_pattern` with `flags` (as `Pattern.compile(p, flags)`).
    pub fn with_flags(java_pattern: &str, flags: JavaFlags) -> Result<Self, Error> {
        let translation = translate(java_pattern, flags)?;
        let regex = Regex::new(&translation.pattern).map_err(|source| Error::Compile {
            pattern: java_pattern.to_owned(),
            translated: translation.pattern.clone(),
            source,
        })?;
        Ok(JavaRegex {
            java_pattern: java_pattern.to_owned(),
            regex,
            forbidden_prefix: translation.forbidden_prefix,
            group_count: translation.group_count,
            case_insensitive: flags.case_insensitive,
        })
    }

    /// The Java pattern this was compiled from.
    pub fn java_pattern(&self) -> &str {
        &self.java_pattern
    }

    /// The compiled translation (anchored at both ends). It does not apply
    /// the [`forbidden_prefix`](Self::forbidden_prefix).
    pub fn as_regex(&self) -> &Regex {
        &self.regex
    }

    /// The literal a matching input must not start with, if any.
    pub fn forbidden_prefix(&self) -> Option<&str> {
        self.forbidden_prefix.as_deref()
    }

    /// Number of capture groups, group 0 excluded (Java's `groupCount()`).
    pub fn group_count(&self) -> usize {
        self.group_count
    }

    fn prefix_ok(&self, input: &str) -> bool {
        self.forbidden_prefix
            .as_deref()
            .is_none_or(|prefix| match input.get(..prefix.len()) {
                Some(head) if self.case_insensitive => !head.eq_ignore_ascii_case(prefix),
                Some(head) => head != prefix,
                None => true,
            })
    }

    /// Whether the whole input matches (Java's `matcher(input).matches()`).
    pub fn is_match(&self, input: &str) -> bool {
        self.prefix_ok(input) && self.regex.is_match(input)
    }

    /// The groups of the match of the whole input, `None` when it does not
    /// match. A group that did not participate is `None` in the captures
    /// (Java's `group(i)` returning `null`).
    pub fn captures<'h>(&self, input: &'h str) -> Option<Captures<'h>> {
        if self.prefix_ok(input) {
            self.regex.captures(input)
        } else {
            None
        }
    }

    /// Allocation-free variant of [`captures`](Self::captures): fills `locs`
    /// (from `self.as_regex().capture_locations()`) and returns whether the
    /// whole input matched.
    pub fn captures_read(&self, locs: &mut CaptureLocations, input: &str) -> bool {
        self.prefix_ok(input) && self.regex.captures_read(locs, input).is_some()
    }
}

/// Whitespace of Java's `\s` (without `UNICODE_CHARACTER_CLASS`).
const SPACE_ITEMS: &str = r"\t\n\x0B\x0C\r ";
/// Java's `\w`.
const WORD_ITEMS: &str = "a-zA-Z_0-9";
/// Java's `\h` (horizontal whitespace).
const HSPACE_ITEMS: &str = r" \t\x{A0}\x{1680}\x{180E}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}";
/// Java's `\v` (vertical whitespace, Java 8 and later).
const VSPACE_ITEMS: &str = r"\n\x0B\x0C\r\x{85}\x{2028}\x{2029}";
/// Characters Java's `.` excludes without `DOTALL`.
const LINE_TERMINATORS: &str = r"\n\r\x{85}\x{2028}\x{2029}";

/// One escape sequence, as far as the translation is concerned.
enum Escape {
    /// A single character.
    Char(char),
    /// A set of characters: class items for inside `[...]` and whether the
    /// set is the complement of those items.
    Set { items: String, negated: bool },
    /// A Rust zero-width assertion (`\A`, `\z`).
    Assertion(&'static str),
    /// `\Q`: start of a quoted literal sequence.
    Quote,
    /// `\Z`: end of input before an optional final line terminator.
    EndBeforeTerminator,
}

/// What the translator knows about an atom (a quantifier's operand).
#[derive(Clone, Copy)]
struct Atom {
    /// Whether it can match the empty string.
    nullable: bool,
    /// Whether it is or contains a capture group.
    has_capture: bool,
}

/// An open group (the bottom frame is the whole pattern).
struct Frame {
    /// Whether a finished alternative can match the empty string.
    alt_nullable: bool,
    /// Whether the current alternative so far can match the empty string.
    seq_nullable: bool,
    /// Whether it contains a capture group.
    has_capture: bool,
    /// Whether it is a capture group.
    is_capture: bool,
}

impl Frame {
    fn new(is_capture: bool) -> Self {
        Frame {
            alt_nullable: false,
            seq_nullable: true,
            has_capture: false,
            is_capture,
        }
    }
}

struct Translator<'p> {
    pattern: &'p str,
    chars: Vec<char>,
    pos: usize,
    flags: JavaFlags,
    out: String,
    groups: usize,
    /// Open groups, the whole pattern at the bottom.
    frames: Vec<Frame>,
    /// The last atom while a quantifier may still follow it.
    pending: Option<Atom>,
}

impl<'p> Translator<'p> {
    fn new(pattern: &'p str, flags: JavaFlags) -> Self {
        Translator {
            pattern,
            chars: pattern.chars().collect(),
            pos: 0,
            flags,
            out: String::with_capacity(pattern.len() * 2 + 16),
            groups: 0,
            frames: vec![Frame::new(false)],
            pending: None,
        }
    }

    /// Adds the pending atom to the current alternative.
    fn commit(&mut self) {
        if let (Some(atom), Some(frame)) = (self.pending.take(), self.frames.last_mut()) {
            frame.seq_nullable &= atom.nullable;
            frame.has_capture |= atom.has_capture;
        }
    }

    /// A new atom that a quantifier may follow.
    fn atom(&mut self, nullable: bool, has_capture: bool) {
        self.commit();
        self.pending = Some(Atom {
            nullable,
            has_capture,
        });
    }

    /// A character-consuming atom without groups.
    fn simple_atom(&mut self) {
        self.atom(false, false);
    }

    /// A zero-width assertion, which no quantifier may follow.
    fn assertion(&mut self) {
        self.commit();
    }

    fn open(&mut self, is_capture: bool) {
        self.commit();
        if is_capture {
            self.groups += 1;
        }
        self.frames.push(Frame::new(is_capture));
    }

    fn unsupported(&self, construct: impl Into<String>, position: usize) -> Error {
        Error::Unsupported {
            construct: construct.into(),
            position,
            pattern: self.pattern.to_owned(),
        }
    }

    fn syntax(&self, message: impl Into<String>, position: usize) -> Error {
        Error::Syntax {
            message: message.into(),
            position,
            pattern: self.pattern.to_owned(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(k, c)| self.chars.get(self.pos + k) == Some(&c))
    }

    fn run(mut self) -> Result<Translation, Error> {
        let forbidden_prefix = self.leading_negative_lookahead()?;
        if self.flags.case_insensitive {
            self.out.push_str("(?i)");
        }
        self.out.push_str(r"\A(?:");
        while let Some(c) = self.peek() {
            let start = self.pos;
            self.pos += 1;
            match c {
                '\\' => self.escape_outside_class(start)?,
                '[' => {
                    let class = self.class(start)?;
                    self.out.push_str(&class);
                    self.simple_atom();
                }
                '(' => self.open_group(start)?,
                ')' => {
                    self.commit();
                    if self.frames.len() == 1 {
                        return Err(self.syntax("unmatched closing ')'", start));
                    }
                    if let Some(frame) = self.frames.pop() {
                        self.atom(
                            frame.alt_nullable || frame.seq_nullable,
                            frame.has_capture || frame.is_capture,
                        );
                    }
                    self.out.push(')');
                }
                '|' => {
                    self.commit();
                    if let Some(frame) = self.frames.last_mut() {
                        frame.alt_nullable |= frame.seq_nullable;
                        frame.seq_nullable = true;
                    }
                    self.out.push('|');
                }
                '^' => {
                    self.out.push('^');
                    self.assertion();
                }
                '$' => self.end_anchor(start, "`$`")?,
                '.' => {
                    if self.flags.dotall {
                        self.out.push_str("(?s:.)");
                    } else {
                        self.out.push_str("[^");
                        self.out.push_str(LINE_TERMINATORS);
                        self.out.push(']');
                    }
                    self.simple_atom();
                }
                '*' | '+' | '?' | '{' => self.quantifier(c, start)?,
                _ => {
                    push_literal(&mut self.out, c);
                    self.simple_atom();
                }
            }
        }
        if self.frames.len() != 1 {
            return Err(self.syntax("unclosed group", self.chars.len()));
        }
        self.out.push_str(r")\z");
        Ok(Translation {
            pattern: self.out,
            forbidden_prefix,
            group_count: self.groups,
        })
    }

    /// Consumes `^(?!LITERAL)` or `(?!LITERAL)` at the very start.
    fn leading_negative_lookahead(&mut self) -> Result<Option<String>, Error> {
        let anchored = self.peek() == Some('^');
        let at = usize::from(anchored);
        let is_lookahead = self.chars.get(at..at + 3) == Some(&['(', '?', '!'][..]);
        if !is_lookahead {
            return Ok(None);
        }
        let mut i = at + 3;
        let mut literal = String::new();
        loop {
            match self.chars.get(i).copied() {
                None => return Err(self.syntax("unclosed group", self.chars.len())),
                Some(')') => break,
                Some('\\') => match self.chars.get(i + 1).copied() {
                    Some(e) if !e.is_ascii_alphanumeric() => {
                        literal.push(e);
                        i += 2;
                    }
                    _ => {
                        return Err(self.unsupported(
                            "negative look-ahead `(?!` of anything but a plain literal",
                            at,
                        ));
                    }
                },
                Some(c) if is_java_meta(c) => {
                    return Err(self.unsupported(
                        "negative look-ahead `(?!` of anything but a plain literal",
                        at,
                    ));
                }
                Some(c) => {
                    literal.push(c);
                    i += 1;
                }
            }
        }
        if literal.is_empty() {
            return Err(self.unsupported("empty negative look-ahead `(?!)`", at));
        }
        if matches!(self.chars.get(i + 1), Some('*' | '+' | '?' | '{')) {
            return Err(self.unsupported("quantified look-ahead", i + 1));
        }
        self.pos = i + 1;
        Ok(Some(literal))
    }

    /// `$` or `\Z`: supported only where nothing but `)` follows, where under
    /// full-match semantics they mean the end of the input.
    fn end_anchor(&mut self, start: usize, what: &str) -> Result<(), Error> {
        if self.chars[self.pos..].iter().any(|&c| c != ')') {
            return Err(self.unsupported(
                format!("{what} anywhere but at the end of the pattern"),
                start,
            ));
        }
        self.out.push_str(r"\z");
        self.assertion();
        Ok(())
    }

    fn open_group(&mut self, start: usize) -> Result<(), Error> {
        if self.peek() != Some('?') {
            self.open(true);
            self.out.push('(');
            return Ok(());
        }
        let construct = if self.starts_with("?:") {
            self.pos += 2;
            self.open(false);
            self.out.push_str("(?:");
            return Ok(());
        } else if self.starts_with("?=") {
            "look-ahead `(?=`"
        } else if self.starts_with("?!") {
            "negative look-ahead `(?!` (only a leading `^(?!literal)` is supported)"
        } else if self.starts_with("?<=") {
            "look-behind `(?<=`"
        } else if self.starts_with("?<!") {
            "negative look-behind `(?<!`"
        } else if self.starts_with("?>") {
            "atomic group `(?>`"
        } else if self.starts_with("?<") {
            self.pos += 2;
            let name_start = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
                self.pos += 1;
            }
            let name: String = self.chars[name_start..self.pos].iter().collect();
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic());
            if !valid || self.peek() != Some('>') {
                return Err(self.syntax("invalid named group", start));
            }
            self.pos += 1;
            self.open(true);
            self.out.push_str("(?P<");
            self.out.push_str(&name);
            self.out.push('>');
            return Ok(());
        } else {
            "inline flags `(?...)`"
        };
        Err(self.unsupported(construct, start))
    }

    fn quantifier(&mut self, c: char, start: usize) -> Result<(), Error> {
        let Some(atom) = self.pending.take() else {
            return Err(
                self.unsupported(format!("quantifier `{c}` without a preceding atom"), start)
            );
        };
        let (min, max) = match c {
            '*' => (0, None),
            '+' => (1, None),
            '?' => (0, Some(1)),
            _ => self.interval(start)?,
        };
        // Java and the `regex` crate disagree on the captures of an
        // iteration that matches the empty string (Java takes it as the last
        // iteration, `regex` does not).
        if atom.nullable && atom.has_capture && max.is_none_or(|max| max > 1) {
            return Err(self.unsupported(
                "repetition of a group that can match the empty string and has capture groups",
                start,
            ));
        }
        if c == '{' {
            let mut interval = format!("{{{min}");
            if max != Some(min) {
                interval.push(',');
                if let Some(max) = max {
                    interval.push_str(&max.to_string());
                }
            }
            interval.push('}');
            self.out.push_str(&interval);
        } else {
            self.out.push(c);
        }
        match self.peek() {
            Some('?') => {
                self.pos += 1;
                self.out.push('?');
            }
            Some('+') => return Err(self.unsupported("possessive quantifier", start)),
            _ => {}
        }
        self.pending = Some(Atom {
            nullable: atom.nullable || min == 0,
            has_capture: atom.has_capture,
        });
        self.commit();
        Ok(())
    }

    /// Parses `n}`, `n,}` or `n,m}` after `{` into (min, max), `None` for no
    /// maximum.
    fn interval(&mut self, start: usize) -> Result<(u32, Option<u32>), Error> {
        let min = self
            .number()
            .ok_or_else(|| self.syntax("illegal repetition", start))?;
        let max = match self.peek() {
            Some('}') => Some(min),
            Some(',') => {
                self.pos += 1;
                self.number()
            }
            _ => return Err(self.syntax("illegal repetition", start)),
        };
        if self.peek() != Some('}') {
            return Err(self.syntax("unclosed counted closure", start));
        }
        self.pos += 1;
        if max.is_some_and(|max| max < min) {
            return Err(self.syntax("illegal repetition range", start));
        }
        Ok((min, max))
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            return None;
        }
        self.chars[start..self.pos]
            .iter()
            .collect::<String>()
            .parse()
            .ok()
    }

    fn escape_outside_class(&mut self, start: usize) -> Result<(), Error> {
        match self.escape(start, false)? {
            Escape::Char(c) => {
                push_literal(&mut self.out, c);
                self.simple_atom();
            }
            Escape::Set { items, negated } => {
                push_set(&mut self.out, &items, negated);
                self.simple_atom();
            }
            Escape::Assertion(a) => {
                self.out.push_str(a);
                self.assertion();
            }
            Escape::EndBeforeTerminator => self.end_anchor(start, r"`\Z`")?,
            Escape::Quote => {
                // Java removes \Q...\E before parsing: the quoted characters
                // become literals one by one (a following quantifier applies
                // to the last one).
                while self.pos < self.chars.len() && !self.starts_with(r"\E") {
                    push_literal(&mut self.out, self.chars[self.pos]);
                    self.pos += 1;
                    self.simple_atom();
                }
                if self.starts_with(r"\E") {
                    self.pos += 2;
                }
            }
        }
        Ok(())
    }

    /// Parses the escape whose backslash is at `start` (`self.pos` is just
    /// after it).
    fn escape(&mut self, start: usize, in_class: bool) -> Result<Escape, Error> {
        let Some(c) = self.peek() else {
            return Err(self.syntax("trailing backslash", start));
        };
        self.pos += 1;
        let set = |items: &str, negated: bool| Escape::Set {
            items: items.to_owned(),
            negated,
        };
        let escape = match c {
            't' => Escape::Char('\t'),
            'n' => Escape::Char('\n'),
            'r' => Escape::Char('\r'),
            'f' => Escape::Char('\x0C'),
            'a' => Escape::Char('\x07'),
            'e' => Escape::Char('\x1B'),
            'd' => set("0-9", false),
            'D' => set("0-9", true),
            's' => set(SPACE_ITEMS, false),
            'S' => set(SPACE_ITEMS, true),
            'w' => set(WORD_ITEMS, false),
            'W' => set(WORD_ITEMS, true),
            'h' => set(HSPACE_ITEMS, false),
            'H' => set(HSPACE_ITEMS, true),
            'v' => set(VSPACE_ITEMS, false),
            'V' => set(VSPACE_ITEMS, true),
            'p' | 'P' => self.property(start, c == 'P')?,
            '0' => {
                let mut value = 0u32;
                let mut digits = 0;
                while digits < 3 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        // \0mnn allows m only up to 3.
                        Some(d) if digits < 2 || value <= 0o37 => {
                            value = value * 8 + d;
                            digits += 1;
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                if digits == 0 {
                    return Err(self.syntax("illegal octal escape sequence", start));
                }
                Escape::Char(self.code_point(value, start)?)
            }
            'x' => {
                if self.peek() == Some('{') {
                    self.pos += 1;
                    let digits_start = self.pos;
                    while self.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
                        self.pos += 1;
                    }
                    let hex: String = self.chars[digits_start..self.pos].iter().collect();
                    if hex.is_empty() || self.peek() != Some('}') {
                        return Err(self.syntax("illegal hexadecimal escape sequence", start));
                    }
                    self.pos += 1;
                    let value = u32::from_str_radix(&hex, 16)
                        .map_err(|_| self.syntax("hexadecimal code point too large", start))?;
                    Escape::Char(self.code_point(value, start)?)
                } else {
                    let value = self.hex_digits(2, start)?;
                    Escape::Char(self.code_point(value, start)?)
                }
            }
            'u' => {
                let value = self.hex_digits(4, start)?;
                if (0xD800..0xDC00).contains(&value) && self.starts_with(r"\u") {
                    // A surrogate pair written as two escapes is one code point.
                    let save = self.pos;
                    self.pos += 2;
                    let low = self.hex_digits(4, start)?;
                    if (0xDC00..0xE000).contains(&low) {
                        let value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00);
                        Escape::Char(self.code_point(value, start)?)
                    } else {
                        self.pos = save;
                        Escape::Char(self.code_point(value, start)?)
                    }
                } else {
                    Escape::Char(self.code_point(value, start)?)
                }
            }
            'c' => {
                let Some(x) = self.peek() else {
                    return Err(self.syntax("illegal control escape sequence", start));
                };
                self.pos += 1;
                Escape::Char(self.code_point(u32::from(x) ^ 64, start)?)
            }
            'A' if !in_class => Escape::Assertion(r"\A"),
            'z' if !in_class => Escape::Assertion(r"\z"),
            'Z' if !in_class => Escape::EndBeforeTerminator,
            'Q' if !in_class => Escape::Quote,
            'b' | 'B' => return Err(self.unsupported(format!("word boundary `\\{c}`"), start)),
            'G' => return Err(self.unsupported(r"end-of-previous-match `\G`", start)),
            'R' => return Err(self.unsupported(r"linebreak matcher `\R`", start)),
            'X' => return Err(self.unsupported(r"grapheme cluster `\X`", start)),
            'N' => return Err(self.unsupported(r"named character `\N{...}`", start)),
            'k' => return Err(self.unsupported(r"named back-reference `\k<...>`", start)),
            '1'..='9' => return Err(self.unsupported(format!("back-reference `\\{c}`"), start)),
            c if c.is_ascii_alphabetic() => {
                let context = if in_class {
                    " in a character class"
                } else {
                    ""
                };
                return Err(self.syntax(format!("illegal escape sequence `\\{c}`{context}"), start));
            }
            c => Escape::Char(c),
        };
        Ok(escape)
    }

    fn hex_digits(&mut self, n: usize, start: usize) -> Result<u32, Error> {
        let mut value = 0;
        for _ in 0..n {
            let Some(d) = self.peek().and_then(|d| d.to_digit(16)) else {
                return Err(self.syntax("illegal hexadecimal escape sequence", start));
            };
            value = value * 16 + d;
            self.pos += 1;
        }
        Ok(value)
    }

    fn code_point(&self, value: u32, start: usize) -> Result<char, Error> {
        char::from_u32(value).ok_or_else(|| {
            self.unsupported(
                format!("escape of code point {value:#X} (not a Unicode scalar value)"),
                start,
            )
        })
    }

    /// `\p{Name}`, `\pL`, `\P{...}` (after the `p`/`P`).
    fn property(&mut self, start: usize, negated: bool) -> Result<Escape, Error> {
        let name: String = if self.peek() == Some('{') {
            self.pos += 1;
            let name_start = self.pos;
            while self.peek().is_some_and(|c| c != '}') {
                self.pos += 1;
            }
            if self.peek() != Some('}') {
                return Err(self.syntax("unclosed character family", start));
            }
            let name = self.chars[name_start..self.pos].iter().collect();
            self.pos += 1;
            name
        } else {
            let Some(c) = self.peek() else {
                return Err(self.syntax("illegal character family", start));
            };
            self.pos += 1;
            c.to_string()
        };
        let posix = match name.as_str() {
            "Lower" => Some("a-z"),
            "Upper" => Some("A-Z"),
            "ASCII" => Some(r"\x00-\x7F"),
            "Alpha" => Some("a-zA-Z"),
            "Digit" => Some("0-9"),
            "Alnum" => Some("a-zA-Z0-9"),
            "Punct" => Some(r"!-/:-@\[-`{-~"),
            "Graph" => Some(r"!-~"),
            "Print" => Some(r" -~"),
            "Blank" => Some(r" \t"),
            "Cntrl" => Some(r"\x00-\x1F\x7F"),
            "XDigit" => Some("0-9a-fA-F"),
            "Space" => Some(SPACE_ITEMS),
            _ => None,
        };
        if let Some(items) = posix {
            return Ok(Escape::Set {
                items: items.to_owned(),
                negated,
            });
        }
        let category = name.strip_prefix("Is").unwrap_or(&name);
        const CATEGORIES: &[&str] = &[
            "L", "LC", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No",
            "P", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So", "Z", "Zs",
            "Zl", "Zp", "C", "Cc", "Cf", "Co", "Cn",
        ];
        if CATEGORIES.contains(&category) {
            return Ok(Escape::Set {
                items: format!(r"\p{{{category}}}"),
                negated,
            });
        }
        Err(self.unsupported(format!("character property `\\p{{{name}}}`"), start))
    }

    /// Translates the class whose `[` is at `start` into a Rust class.
    fn class(&mut self, start: usize) -> Result<String, Error> {
        let mut out = String::from("[");
        if self.peek() == Some('^') {
            self.pos += 1;
            out.push('^');
        }
        let mut items = 0usize;
        loop {
            let at = self.pos;
            let Some(c) = self.peek() else {
                return Err(self.syntax("unclosed character class", start));
            };
            self.pos += 1;
            let low = match c {
                // `]` first in a class is a literal.
                ']' if items > 0 => break,
                '[' => return Err(self.unsupported("nested character class", at)),
                '&' if self.peek() == Some('&') => {
                    return Err(self.unsupported("character class intersection `&&`", at));
                }
                '\\' => match self.escape(at, true)? {
                    Escape::Char(c) => c,
                    Escape::Set {
                        items: set,
                        negated,
                    } => {
                        push_set(&mut out, &set, negated);
                        items += 1;
                        continue;
                    }
                    Escape::Assertion(_) | Escape::EndBeforeTerminator | Escape::Quote => {
                        return Err(self.unsupported("assertion in a character class", at));
                    }
                },
                c => c,
            };
            items += 1;
            // A range `low-high`, unless the `-` is last or before `[`.
            if self.peek() == Some('-') && !matches!(self.peek_at(1), None | Some(']' | '[')) {
                let high_at = self.pos + 1;
                self.pos += 2;
                let high = match self.chars[high_at] {
                    '\\' => match self.escape(high_at, true)? {
                        Escape::Char(c) => c,
                        _ => return Err(self.syntax("illegal character range", at)),
                    },
                    c => c,
                };
                if high < low {
                    return Err(self.syntax("illegal character range", at));
                }
                push_class_char(&mut out, low);
                out.push('-');
                push_class_char(&mut out, high);
            } else {
                push_class_char(&mut out, low);
            }
        }
        out.push(']');
        Ok(out)
    }
}

/// Java's metacharacters outside classes.
fn is_java_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '^' | '$' | '.' | '|' | '?' | '*' | '+' | '(' | ')' | '[' | '{'
    )
}

fn needs_hex(c: char) -> bool {
    c.is_control() || (c.is_whitespace() && c != ' ')
}

fn push_hex(out: &mut String, c: char) {
    out.push_str(&format!(r"\x{{{:X}}}", u32::from(c)));
}

/// Pushes `c` as a literal outside a class.
fn push_literal(out: &mut String, c: char) {
    if needs_hex(c) {
        push_hex(out, c);
    } else {
        let mut buf = [0u8; 4];
        out.push_str(&regex::escape(c.encode_utf8(&mut buf)));
    }
}

/// Pushes `c` as a literal inside a class (escaping `-`, `[`, `&`, `~`, ...).
fn push_class_char(out: &mut String, c: char) {
    push_literal(out, c);
}

/// Pushes a predefined set: `[items]` / `[^items]` (also valid nested in a
/// class, where it means the union).
fn push_set(out: &mut String, items: &str, negated: bool) {
    out.push('[');
    if negated {
        out.push('^');
    }
    out.push_str(items);
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn java(pattern: &str) -> JavaRegex {
        JavaRegex::new(pattern).unwrap()
    }

    fn groups(re: &JavaRegex, input: &str) -> Option<Vec<Option<String>>> {
        re.captures(input).map(|c| {
            (1..=re.group_count())
                .map(|i| c.get(i).map(|m| m.as_str().to_owned()))
                .collect()
        })
    }

    #[test]
    fn full_match_semantics() {
        let re = java("a+");
        assert!(re.is_match("aaa"));
        assert!(!re.is_match("aaab"));
        assert!(!re.is_match("baaa"));
        assert!(!re.is_match(""));
        let re = java("a|ab");
        // Java's matches() backtracks into the second alternative.
        assert!(re.is_match("ab"));
        assert!(java("").is_match(""));
    }

    #[test]
    fn ascii_predefined_classes() {
        let re = java(r"\s");
        for c in ['\t', '\n', '\x0B', '\x0C', '\r', ' '] {
            assert!(re.is_match(&c.to_string()), "{c:?}");
        }
        for c in ['\u{A0}', '\u{85}', '\u{2028}', '\u{3000}', 'a'] {
            assert!(!re.is_match(&c.to_string()), "{c:?}");
        }
        let re = java(r"\S");
        assert!(re.is_match("\u{A0}"));
        assert!(!re.is_match("\t"));
        assert!(java(r"\d").is_match("7"));
        assert!(!java(r"\d").is_match("\u{663}"));
        assert!(java(r"\D").is_match("\u{663}"));
        assert!(java(r"\w+").is_match("az_AZ09"));
        assert!(!java(r"\w").is_match("é"));
        assert!(java(r"\W").is_match("é"));
        assert!(java(r"[\s;]+").is_match(" ;\t"));
        assert!(!java(r"[^\s]").is_match("\x0B"));
        assert!(java(r"[\S]").is_match("x"));
        assert!(!java(r"[\S]").is_match(" "));
    }

    #[test]
    fn dot_and_dotall() {
        let re = java("a.b");
        assert!(re.is_match("axb"));
        assert!(re.is_match("a\tb"));
        for t in ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'] {
            assert!(!re.is_match(&format!("a{t}b")), "{t:?}");
        }
        let re = JavaRegex::with_flags("a.b", JavaFlags::HIVE).unwrap();
        for t in ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'] {
            assert!(re.is_match(&format!("a{t}b")), "{t:?}");
        }
        // `.` inside a class is a literal.
        let re = java("[.]");
        assert!(re.is_match("."));
        assert!(!re.is_match("x"));
    }

    #[test]
    fn escaped_punctuation() {
        let re = java(r"\%20\;\/\(\)\[\]\{\}\.\*\#\-\&\~\ \\");
        assert!(re.is_match(r"%20;/()[]{}.*#-&~ \"));
        let re = java(r"[^\(]+[\(]([^\;]+)[\/]");
        assert_eq!(groups(&re, "ab(cd/"), Some(vec![Some("cd".into())]));
        // Unescaped `]` and `}` outside classes are literals in Java.
        assert!(java("a]}").is_match("a]}"));
        assert!(java("[]a]+").is_match("]a"));
        assert!(java("[a-]+").is_match("-a"));
        assert!(java("[-a]+").is_match("-a"));
        assert!(java("[a&b]+").is_match("&ab"));
        assert!(java("[a~~b]+").is_match("~ab"));
        assert!(java("[a-c-e]+").is_match("b-e"));
        assert!(!java("[a-c-e]").is_match("d"));
    }

    #[test]
    fn escapes_for_characters() {
        assert!(java(r"\t\n\r\f\a\e").is_match("\t\n\r\x0C\x07\x1B"));
        assert!(java(r"\x41\u0042\x{1F600}\0103\cA").is_match("AB\u{1F600}C\x01"));
        assert!(java(r"\uD83D\uDE00").is_match("\u{1F600}"));
        assert!(java(r"[\x41-\x43]+").is_match("ABC"));
        assert!(java(r"\QA.*\E+").is_match("A.**"));
        assert!(!java(r"\QA.*\E").is_match("AB"));
        assert!(java(r"\p{Alpha}+\P{Alpha}\p{L}\pL").is_match("ab1éé"));
        assert!(java(r"\p{IsLu}").is_match("É"));
    }

    #[test]
    fn quantifiers_and_groups() {
        let re = java(r"(a{2,3}?)(a*)");
        assert_eq!(
            groups(&re, "aaaa"),
            Some(vec![Some("aa".into()), Some("aa".into())])
        );
        let re = java(r"(?:x)(?<name>y)(z)?");
        assert_eq!(re.group_count(), 2);
        assert_eq!(groups(&re, "xy"), Some(vec![Some("y".into()), None]));
        assert!(java("a{2}").is_match("aa"));
        assert!(java("a{2,}").is_match("aaaa"));
        // Repeating a group that can match the empty string is fine without
        // captures inside, or at most once.
        assert!(java("(?:a*)*(a?)").is_match("aa"));
        assert_eq!(
            groups(&java("(a*)?b?"), ""),
            Some(vec![Some(String::new())])
        );
    }

    #[test]
    fn anchors() {
        assert!(java("^ab$").is_match("ab"));
        assert!(!java("^ab$").is_match("ab\n"));
        assert!(java(r"(a|b$)").is_match("b"));
        assert!(java(r"\Aab\z").is_match("ab"));
        assert!(java(r"ab\Z").is_match("ab"));
    }

    #[test]
    fn leading_negative_lookahead() {
        let re = java(r"^(?!#)(.*)");
        assert_eq!(re.forbidden_prefix(), Some("#"));
        assert!(re.is_match("x#"));
        assert!(re.is_match(""));
        assert!(!re.is_match("#x"));
        assert!(re.captures("#x").is_none());
        let re = java(r"(?!\#\#)[#a]*");
        assert_eq!(re.forbidden_prefix(), Some("##"));
        assert!(re.is_match("#a#"));
        assert!(!re.is_match("##a"));
        let mut locs = re.as_regex().capture_locations();
        assert!(re.captures_read(&mut locs, "#a"));
        assert!(!re.captures_read(&mut locs, "##"));
    }

    fn unsupported_at(pattern: &str) -> (String, usize) {
        match translate(pattern, JavaFlags::default()) {
            Err(Error::Unsupported {
                construct,
                position,
                ..
            }) => (construct, position),
            other => panic!("{pattern}: expected unsupported, got {other:?}"),
        }
    }

    #[test]
    fn unsupported_constructs_are_named() {
        let cases = [
            ("a(?=b)", 1, "look-ahead"),
            ("a(?!b)", 1, "negative look-ahead"),
            ("^(?!a.)", 1, "negative look-ahead"),
            ("(?<=a)b", 0, "look-behind"),
            ("(?<!a)b", 0, "negative look-behind"),
            ("(?>a)", 0, "atomic"),
            ("(?i)a", 0, "inline flags"),
            ("a*+", 1, "possessive"),
            (r"(a)\1", 3, "back-reference"),
            (r"\bx", 0, "word boundary"),
            ("[a[b]]", 2, "nested"),
            ("[a&&b]", 2, "intersection"),
            ("a$b", 1, "`$`"),
            (r"\p{InGreek}", 0, "InGreek"),
            ("*a", 0, "quantifier"),
            ("(a*)*", 4, "empty string"),
            ("(?:x|(a)?)+", 10, "empty string"),
            ("((a)|b?){2}", 8, "empty string"),
        ];
        for (pattern, position, word) in cases {
            let (construct, at) = unsupported_at(pattern);
            assert_eq!(at, position, "{pattern}: {construct}");
            assert!(construct.contains(word), "{pattern}: {construct}");
        }
    }

    #[test]
    fn syntax_errors() {
        for pattern in [
            "(a", "a)", "[a", r"\", "a{x}", "a{3,2}", "[z-a]", r"\y", r"\x4",
        ] {
            assert!(
                matches!(
                    translate(pattern, JavaFlags::default()),
                    Err(Error::Syntax { .. })
                ),
                "{pattern}"
            );
        }
        let message = translate("(a", JavaFlags::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("unclosed group"), "{message}");
    }

    #[test]
    fn translation_of_hive_cloudfront_regex() {
        let t = translate(
            r"^(?!#)([^ ]+)\s+([^\(]+)[\(]([^\;]+).*\%20([^\/]+)[\/](.*)$",
            JavaFlags::HIVE,
        )
        .unwrap();
        assert_eq!(t.forbidden_prefix.as_deref(), Some("#"));
        assert_eq!(t.group_count, 5);
        assert_eq!(
            t.pattern,
            r"\A(?:([^ ]+)[\t\n\x0B\x0C\r ]+([^\(]+)[\(]([^;]+)(?s:.)*%20([^/]+)[/]((?s:.)*)\z)\z"
        );
    }
}
