//! ZooKeeper 3.8's Kerberos name rules (`zookeeper.security.auth_to_local`, zoo.cfg
//! `security.auth_to_local`), as its `KerberosName` reads and applies them: a Kerberos
//! principal `service[/host]@REALM` is turned into a short name by the first rule that
//! applies to it.
//!
//! The rules text, as ZooKeeper 3.8 reads it (`KerberosName.parseRules`): trimmed as Java's
//! `String.trim` trims, then one rule after another, each optionally preceded by whitespace
//! (none is needed between rules):
//!
//! * `DEFAULT`: a principal of the default realm with one or two components gives its first
//!   component.
//! * `RULE:[N:format]`, then optionally `(regex)`, then optionally `s/pattern/replacement/`
//!   with an optional `g`. The rule is for principals of `N` components; `format` makes a
//!   string of them (`$0` the realm, `$1` the first component, `$2` the second); the rule
//!   applies when `regex` matches that whole string (or there is no regex); the short name is
//!   the string with the first match of `pattern` (every match, with `g`) replaced by
//!   `replacement`. `format` cannot hold `]`, `regex` cannot hold `)`, `pattern` and
//!   `replacement` cannot hold `/`. ZooKeeper 3.8 has no `/L` (lower-case) suffix: it is
//!   refused, as by ZooKeeper.
//!
//! A principal no rule applies to is an error ("no rules applied"); so is a short name that
//! holds `/` or `@` ("non-simple name"), which ends the search like a rule's error. A name
//! without `@` is returned as it is. As in ZooKeeper, what a rule's `format` or
//! `replacement` gets wrong (`$` without a number, a component the principal does not have, a
//! group the pattern does not have) is an error when the rule is applied, not when it is read;
//! [`NameRules::warnings`] lists them for the log at startup.
//!
//! Regular expressions are Java's as far as the `regex` crate goes: `\d \w \s \h \v` (and
//! their negations) are Java's ASCII classes, `\Q…\E`, `\e`, `\cX`, octal `\0…`, Java's
//! POSIX classes `\p{Lower}` etc., a backslash before any other non-letter is that character,
//! the inline flags `i m s x` (`d` and `u` are dropped; `U` is refused), and the replacement
//! is Java's (`$n`, `${name}`, `\` escaping the next character). What the crate lacks —
//! back-references, look-around, possessive quantifiers, atomic groups, `\Z`, `\G`, `\R` — is
//! refused when the rules are read. Remaining differences concern only characters that
//! Kerberos principals do not hold: `.` excludes only `\n` (Java: also `\r`, U+0085, U+2028,
//! U+2029), `(?i)` folds case beyond ASCII.

use std::fmt;

use regex::{Captures, Regex, RegexBuilder};

/// The longest rules text read.
pub const MAX_RULES_TEXT: usize = 64 * 1024;
/// The most rules read.
pub const MAX_RULES: usize = 128;
/// The longest principal, and the longest string a rule may make.
pub const MAX_NAME: usize = 16 * 1024;
/// The most memory a compiled regular expression may take.
const REGEX_SIZE_LIMIT: usize = 1024 * 1024;
/// The most memory a regular expression's matching cache may take.
const REGEX_CACHE_LIMIT: usize = 256 * 1024;

/// Rules text that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

/// Why a principal has no short name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A name with `@` that is not `service[/host]@REALM`.
    #[error("malformed Kerberos name: {0}")]
    Malformed(String),
    /// No rule applies to the principal.
    #[error("no rules applied to {0}")]
    NoRuleApplied(String),
    /// A rule made a name holding `/` or `@`.
    #[error("non-simple name {name} after auth_to_local rule {rule}")]
    NonSimple {
        /// What the rule made.
        name: String,
        /// The rule.
        rule: String,
    },
    /// A rule's format or replacement fails for this principal.
    #[error("auth_to_local rule {rule}: {why}")]
    BadRule {
        /// The rule.
        rule: String,
        /// What is wrong.
        why: String,
    },
    /// A principal, or a name a rule makes, longer than [`MAX_NAME`].
    #[error("a name longer than {MAX_NAME} bytes")]
    TooLong,
}

/// A principal's parts, as ZooKeeper's `KerberosName` splits `service[/host]@REALM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KerberosName<'a> {
    service: &'a str,
    host: Option<&'a str>,
    realm: Option<&'a str>,
}

impl<'a> KerberosName<'a> {
    /// Splits a name: `service[/host]@REALM` (none of the parts holding `/` or `@`), or a
    /// name without `@`, which is all service. Anything else with `@` is malformed.
    pub fn parse(name: &'a str) -> Result<KerberosName<'a>, NameError> {
        if name.len() > MAX_NAME {
            return Err(NameError::TooLong);
        }
        let Some((front, realm)) = name.split_once('@') else {
            return Ok(KerberosName { service: name, host: None, realm: None });
        };
        let (service, host) = match front.split_once('/') {
            Some((s, h)) => (s, Some(h)),
            None => (front, None),
        };
        if realm.contains(['/', '@']) || host.is_some_and(|h| h.contains('/')) {
            return Err(NameError::Malformed(name.to_string()));
        }
        Ok(KerberosName { service, host, realm: Some(realm) })
    }

    /// The first component.
    pub fn service(&self) -> &'a str {
        self.service
    }

    /// The second component, if any.
    pub fn host(&self) -> Option<&'a str> {
        self.host
    }

    /// The realm, if any.
    pub fn realm(&self) -> Option<&'a str> {
        self.realm
    }
}

impl fmt::Display for KerberosName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.service)?;
        if let Some(h) = self.host {
            write!(f, "/{h}")?;
        }
        if let Some(r) = self.realm {
            write!(f, "@{r}")?;
        }
        Ok(())
    }
}

/// Parsed name rules.
#[derive(Debug, Clone)]
pub struct NameRules {
    text: String,
    rules: Vec<Rule>,
}

impl PartialEq for NameRules {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for NameRules {}

impl Default for NameRules {
    /// `DEFAULT` alone, ZooKeeper's default.
    fn default() -> Self {
        NameRules { text: "DEFAULT".into(), rules: vec![Rule::Default] }
    }
}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Custom(Box<Custom>),
}

#[derive(Debug, Clone)]
struct Custom {
    /// The rule as written, for messages.
    text: String,
    /// The number of components it is for.
    components: usize,
    /// The format's pieces, or why it fails whenever the rule is tried.
    format: Result<Vec<FormatPiece>, String>,
    /// The regular expression the formatted string must match whole.
    matches: Option<Regex>,
    substitution: Option<Substitution>,
}

#[derive(Debug, Clone)]
enum FormatPiece {
    Text(String),
    Param(usize),
}

#[derive(Debug, Clone)]
struct Substitution {
    from: Regex,
    /// The replacement's pieces, or why it fails whenever `from` matches.
    to: Result<Vec<Replacement>, String>,
    global: bool,
}

#[derive(Debug, Clone)]
enum Replacement {
    Text(String),
    Group(usize),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Default => f.write_str("DEFAULT"),
            Rule::Custom(c) => f.write_str(&c.text),
        }
    }
}

/// Java's `\s`: what may come before a rule.
fn is_java_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r')
}

/// `s` (its start, if long) in backquotes, for messages; control characters escaped.
fn quoted(s: &str) -> String {
    const MAX: usize = 60;
    let mut out = String::from("`");
    for (n, c) in s.chars().enumerate() {
        if n == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('`');
    out
}

impl NameRules {
    /// Reads rules text as ZooKeeper 3.8 does; an error says which rule cannot be read and why.
    pub fn parse(text: &str) -> Result<NameRules, ParseError> {
        if text.len() > MAX_RULES_TEXT {
            return Err(ParseError(format!(
                "{} bytes of rules; at most {MAX_RULES_TEXT} are read",
                text.len()
            )));
        }
        let mut rest = text.trim_matches(|c: char| c <= ' ');
        let mut rules: Vec<Rule> = Vec::new();
        while !rest.is_empty() {
            rest = rest.trim_start_matches(is_java_space);
            if rules.len() == MAX_RULES {
                return Err(ParseError(format!("more than {MAX_RULES} rules")));
            }
            let (rule, after) = parse_rule(rest).map_err(|ParseError(why)| {
                let Some(last) = rules.last() else { return ParseError(why) };
                let hint = if rest.starts_with('L') || rest.starts_with("/L") {
                    " (ZooKeeper 3.8 has no /L suffix)"
                } else {
                    ""
                };
                ParseError(format!("{why}, after {}{hint}", quoted(&last.to_string())))
            })?;
            rules.push(rule);
            rest = after;
        }
        Ok(NameRules { text: text.to_string(), rules })
    }

    /// The rules text as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What the log should say at startup about rules that are read but can never give a
    /// name, or fail whenever they are tried (ZooKeeper takes these too, and fails then).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.rules.is_empty() {
            out.push("no rules: no Kerberos principal has a short name".to_string());
        }
        for rule in &self.rules {
            let Rule::Custom(c) = rule else { continue };
            if !(1..=2).contains(&c.components) {
                out.push(format!(
                    "rule {}: principals have 1 or 2 components, so it never applies",
                    quoted(&c.text)
                ));
                continue;
            }
            if let Err(why) = &c.format {
                out.push(format!(
                    "rule {}: fails for every principal of {} component(s): {why}",
                    quoted(&c.text),
                    c.components
                ));
            }
            if let Some(Substitution { to: Err(why), .. }) = &c.substitution {
                out.push(format!(
                    "rule {}: fails whenever its pattern matches: {why}",
                    quoted(&c.text)
                ));
            }
        }
        out
    }

    /// The short name of `name` (`KerberosName.getShortName`): a name without realm or host
    /// as it is, else what the first rule that applies makes. `default_realm` is the Kerberos
    /// configuration's (ZooKeeper: "" when there is none).
    pub fn short_name(
        &self,
        name: &KerberosName<'_>,
        default_realm: &str,
    ) -> Result<String, NameError> {
        let Some(realm) = name.realm else {
            return Ok(name.service.to_string());
        };
        let mut params = vec![realm, name.service];
        params.extend(name.host);
        for rule in &self.rules {
            if let Some(short) = rule.apply(&params, default_realm)? {
                if short.contains(['/', '@']) {
                    return Err(NameError::NonSimple { name: short, rule: rule.to_string() });
                }
                return Ok(short);
            }
        }
        Err(NameError::NoRuleApplied(name.to_string()))
    }
}

impl Rule {
    /// The name this rule makes of `params` (the realm, then the components), `None` if it
    /// does not apply.
    fn apply(&self, params: &[&str], default_realm: &str) -> Result<Option<String>, NameError> {
        let c = match self {
            Rule::Default => {
                return Ok((params[0] == default_realm).then(|| params[1].to_string()));
            }
            Rule::Custom(c) => c,
        };
        if params.len() - 1 != c.components {
            return Ok(None);
        }
        let bad = |why: String| NameError::BadRule { rule: c.text.clone(), why };
        let pieces = c.format.as_ref().map_err(|why| bad(why.clone()))?;
        let mut base = String::new();
        for p in pieces {
            match p {
                FormatPiece::Text(t) => base.push_str(t),
                FormatPiece::Param(n) => base.push_str(params[*n]),
            }
            if base.len() > MAX_NAME {
                return Err(NameError::TooLong);
            }
        }
        if c.matches.as_ref().is_some_and(|m| !m.is_match(&base)) {
            return Ok(None);
        }
        match &c.substitution {
            None => Ok(Some(base)),
            Some(s) => s.apply(&base).map(Some).map_err(|e| match e {
                NameError::BadRule { why, .. } => bad(why),
                other => other,
            }),
        }
    }
}

impl Substitution {
    /// Java's `replaceFirst`/`replaceAll` of `from` by `to` in `base`.
    fn apply(&self, base: &str) -> Result<String, NameError> {
        let mut out = String::new();
        let mut copied = 0;
        let mut at = 0;
        while let Some(caps) = self.from.captures_at(base, at) {
            let Some(m) = caps.get(0) else { break };
            let to = self
                .to
                .as_ref()
                .map_err(|why| NameError::BadRule { rule: String::new(), why: why.clone() })?;
            out.push_str(&base[copied..m.start()]);
            expand(to, &caps, &mut out);
            if out.len() > MAX_NAME {
                return Err(NameError::TooLong);
            }
            copied = m.end();
            if !self.global {
                break;
            }
            // As Java's Matcher.find: after an empty match the next search starts one
            // character on; after another one, where it ended (an empty match may be there).
            at = if m.is_empty() {
                match base[m.end()..].chars().next() {
                    Some(ch) => m.end() + ch.len_utf8(),
                    None => break,
                }
            } else {
                m.end()
            };
        }
        out.push_str(&base[copied..]);
        if out.len() > MAX_NAME {
            return Err(NameError::TooLong);
        }
        Ok(out)
    }
}

fn expand(to: &[Replacement], caps: &Captures<'_>, out: &mut String) {
    for piece in to {
        match piece {
            Replacement::Text(t) => out.push_str(t),
            // A group that took no part in the match adds nothing, as in Java.
            Replacement::Group(g) => out.push_str(caps.get(*g).map_or("", |m| m.as_str())),
        }
    }
}

/// One rule at the start of `s` (leading whitespace already skipped), and what follows it.
fn parse_rule(s: &str) -> Result<(Rule, &str), ParseError> {
    const SYNTAX: &str = "expected DEFAULT or RULE:[N:format](regex)s/pattern/replacement/g";
    if let Some(rest) = s.strip_prefix("DEFAULT") {
        return Ok((Rule::Default, rest));
    }
    let invalid = |why: &str| ParseError(format!("invalid rule {}: {why}", quoted(s)));
    let Some(rest) = s.strip_prefix("RULE:[") else {
        return Err(invalid(SYNTAX));
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (number, rest) = rest.split_at(digits);
    let Some(rest) = rest.strip_prefix(':') else {
        return Err(invalid("`RULE:[` is followed by a number of components and `:`"));
    };
    // Java's Integer.parseInt: the number must be a 32-bit signed integer.
    let components = match number.parse::<i32>() {
        Ok(n) => n.unsigned_abs() as usize,
        Err(_) if number.is_empty() => return Err(invalid("no number of components")),
        Err(_) => return Err(invalid("the number of components is too large")),
    };
    let Some((format, mut rest)) = rest.split_once(']') else {
        return Err(invalid("no `]` ends the format"));
    };
    let mut matches = None;
    if let Some(r) = rest.strip_prefix('(') {
        if let Some((m, after)) = r.split_once(')') {
            matches = Some(m);
            rest = after;
        }
    }
    let mut substitution = None;
    if let Some(r) = rest.strip_prefix("s/") {
        if let Some((from, r)) = r.split_once('/') {
            if let Some((to, r)) = r.split_once('/') {
                let (global, r) = match r.strip_prefix('g') {
                    Some(after) => (true, after),
                    None => (false, r),
                };
                substitution = Some((from, to, global));
                rest = r;
            }
        }
    }
    let text = &s[..s.len() - rest.len()];
    let bad = |what: &str, why: String| ParseError(format!("rule {}: {what}: {why}", quoted(text)));
    let matches = matches
        .map(|m| compile(m, true))
        .transpose()
        .map_err(|why| bad("the regular expression in ( )", why))?;
    let substitution = match substitution {
        None => None,
        Some((from, to, global)) => {
            let from = compile(from, false).map_err(|why| bad("the pattern in s/ / /", why))?;
            let to = parse_replacement(to, &from);
            Some(Substitution { from, to, global })
        }
    };
    let rule = Custom {
        text: text.to_string(),
        components,
        format: parse_format(format, components),
        matches,
        substitution,
    };
    Ok((Rule::Custom(Box::new(rule)), rest))
}

/// A rule's format: text with `$n` (n a decimal number, at most the number of components).
fn parse_format(format: &str, components: usize) -> Result<Vec<FormatPiece>, String> {
    let mut pieces = Vec::new();
    let mut rest = format;
    while let Some(dollar) = rest.find('$') {
        if dollar > 0 {
            pieces.push(FormatPiece::Text(rest[..dollar].to_string()));
        }
        let after = &rest[dollar + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let n = match after[..digits].parse::<i32>() {
            Ok(n) => n.unsigned_abs() as usize,
            Err(_) if digits == 0 => {
                return Err(format!(
                    "bad format in username mapping in {}: `$` without a number",
                    quoted(format)
                ))
            }
            Err(_) => {
                return Err(format!(
                    "bad format in username mapping in {}: `${}` is too large",
                    quoted(format),
                    &after[..digits]
                ))
            }
        };
        if n > components {
            return Err(format!(
                "index {n} from {} is outside of the valid range 0 to {components}",
                quoted(format)
            ));
        }
        pieces.push(FormatPiece::Param(n));
        rest = &after[digits..];
    }
    if !rest.is_empty() {
        pieces.push(FormatPiece::Text(rest.to_string()));
    }
    Ok(pieces)
}

/// A Java replacement string (`Matcher.appendReplacement`): `\c` is `c`, `$n` group n (digits
/// taken while the number is a group of the pattern), `${name}` a named group.
fn parse_replacement(to: &str, from: &Regex) -> Result<Vec<Replacement>, String> {
    let groups = from.captures_len().saturating_sub(1);
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = to.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) => text.push(e),
                None => return Err("the replacement ends with `\\`".into()),
            },
            '$' => {
                let group = match chars.next() {
                    None => return Err("the replacement ends with `$`".into()),
                    Some('{') => {
                        let mut name = String::new();
                        while let Some(&n) = chars.peek() {
                            if !n.is_ascii_alphanumeric() {
                                break;
                            }
                            name.push(n);
                            chars.next();
                        }
                        if name.is_empty() {
                            return Err("`${}` names no group".into());
                        }
                        if chars.next() != Some('}') {
                            return Err(format!("`${{{name}` has no closing `}}`"));
                        }
                        if name.starts_with(|c: char| c.is_ascii_digit()) {
                            return Err(format!("group name {{{name}}} starts with a digit"));
                        }
                        from.capture_names()
                            .position(|n| n == Some(name.as_str()))
                            .ok_or_else(|| format!("the pattern has no group named {name}"))?
                    }
                    Some(d @ '0'..='9') => {
                        let mut n = d as usize - '0' as usize;
                        while let Some(&next @ '0'..='9') = chars.peek() {
                            let longer = n * 10 + (next as usize - '0' as usize);
                            if longer > groups {
                                break;
                            }
                            n = longer;
                            chars.next();
                        }
                        if n > groups {
                            return Err(format!("the pattern has no group {n}"));
                        }
                        n
                    }
                    Some(other) => {
                        return Err(format!("`${other}` in the replacement is no group reference"))
                    }
                };
                if !text.is_empty() {
                    pieces.push(Replacement::Text(std::mem::take(&mut text)));
                }
                pieces.push(Replacement::Group(group));
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Replacement::Text(text));
    }
    Ok(pieces)
}

/// Compiles a Java regular expression (matching the whole string when `whole`, as Java's
/// `Matcher.matches`), bounded in size.
fn compile(java: &str, whole: bool) -> Result<Regex, String> {
    let q = quoted(java);
    let translated = translate(java)?;
    let pattern = if whole { format!(r"\A(?:{translated})\z") } else { translated };
    RegexBuilder::new(&pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_CACHE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(n) => {
                format!("{q} is too large (more than {n} bytes compiled)")
            }
            e => {
                let why = e.to_string();
                let last = why.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(&why);
                format!("{q}: {}", last.trim().trim_start_matches("error: "))
            }
        })
}

/// Where a quantifier was last written, to refuse what Java and the `regex` crate read
/// differently (possessive quantifiers, and a quantifier of a quantifier, which the crate
/// takes and Java refuses).
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    Other,
    Quantifier,
    Lazy,
}

/// A Java regular expression in the `regex` crate's syntax (see the module's notes).
fn translate(java: &str) -> Result<String, String> {
    let q = quoted(java);
    let cs: Vec<char> = java.chars().collect();
    let mut out = String::with_capacity(java.len() + 16);
    let mut i = 0;
    let mut depth = 0usize; // character classes open
    let mut after = After::Other;
    while i < cs.len() {
        let c = cs[i];
        i += 1;
        if depth == 0 && matches!(c, '*' | '+' | '?' | '{') {
            match (after, c) {
                (After::Quantifier, '?') => {
                    out.push('?');
                    after = After::Lazy;
                    continue;
                }
                (After::Quantifier, '+') => {
                    return Err(format!("{q}: possessive quantifiers are not supported"))
                }
                (After::Quantifier | After::Lazy, _) => {
                    return Err(format!("{q}: a quantifier cannot follow a quantifier"))
                }
                (After::Other, _) => {}
            }
            out.push(c);
            if c == '{' {
                while i < cs.len() {
                    out.push(cs[i]);
                    i += 1;
                    if cs[i - 1] == '}' {
                        break;
                    }
                }
            }
            after = After::Quantifier;
            continue;
        }
        after = After::Other;
        match c {
            '\\' => i = escape(&q, &cs, i, &mut out)?,
            '[' => {
                depth += 1;
                out.push('[');
                if cs.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                // `[:` is not a POSIX class in Java.
                if cs.get(i) == Some(&':') {
                    out.push_str(r"\:");
                    i += 1;
                }
            }
            ']' if depth > 0 => {
                depth -= 1;
                out.push(']');
            }
            // `~~` is an operator in the crate's classes, two characters in Java's.
            '~' if depth > 0 => out.push_str(r"\~"),
            '(' if depth == 0 && cs.get(i) == Some(&'?') => i = group(&q, &cs, i + 1, &mut out)?,
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `c` as a literal in any context (in a class or not, with `x` or not).
fn literal(out: &mut String, c: char) {
    out.push_str(&format!(r"\x{{{:X}}}", c as u32));
}

/// Java's ASCII classes for the escapes `d w s h v` and their negations, and its POSIX
/// `\p{…}` classes.
fn java_class(e: char) -> Option<&'static str> {
    Some(match e {
        'd' => "[0-9]",
        'D' => "[^0-9]",
        'w' => "[0-9A-Za-z_]",
        'W' => "[^0-9A-Za-z_]",
        's' => r"[\t\n\x0B\x0C\r\x20]",
        'S' => r"[^\t\n\x0B\x0C\r\x20]",
        'h' => r"[\x20\t\xA0\x{1680}\x{180E}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}]",
        'H' => r"[^\x20\t\xA0\x{1680}\x{180E}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}]",
        'v' => r"[\n\x0B\x0C\r\x{85}\x{2028}\x{2029}]",
        'V' => r"[^\n\x0B\x0C\r\x{85}\x{2028}\x{2029}]",
        _ => return None,
    })
}

fn posix_class(name: &str) -> Option<&'static str> {
    Some(match name {
        "Lower" => "lower",
        "Upper" => "upper",
        "ASCII" => "ascii",
        "Alpha" => "alpha",
        "Digit" => "digit",
        "Alnum" => "alnum",
        "Punct" => "punct",
        "Graph" => "graph",
        "Print" => "print",
        "Blank" => "blank",
        "Cntrl" => "cntrl",
        "XDigit" => "xdigit",
        "Space" => "space",
        _ => return None,
    })
}

/// The escape whose letter is at `cs[i]`, written to `out`; returns where the pattern goes on.
fn escape(q: &str, cs: &[char], mut i: usize, out: &mut String) -> Result<usize, String> {
    let Some(&e) = cs.get(i) else {
        return Err(format!("{q} ends with a lone `\\`"));
    };
    i += 1;
    if let Some(class) = java_class(e) {
        out.push_str(class);
        return Ok(i);
    }
    // Copies `\e` and what follows up to and including the closing `}` of a `{…}`, or `n`
    // characters.
    let copy = |i: usize, n: usize, out: &mut String| -> usize {
        out.push('\\');
        out.push(e);
        if cs.get(i) == Some(&'{') {
            match cs[i..].iter().position(|&c| c == '}') {
                Some(end) => {
                    out.extend(&cs[i..=i + end]);
                    i + end + 1
                }
                None => {
                    out.extend(&cs[i..]);
                    cs.len()
                }
            }
        } else {
            let end = (i + n).min(cs.len());
            out.extend(&cs[i..end]);
            end
        }
    };
    match e {
        'e' => literal(out, '\x1B'),
        'c' => {
            let Some(&x) = cs.get(i) else {
                return Err(format!("{q}: `\\c` without a character"));
            };
            let Some(ctl) = char::from_u32(x as u32 ^ 64) else {
                return Err(format!("{q}: bad control character `\\c{x}`"));
            };
            literal(out, ctl);
            i += 1;
        }
        '0' => {
            let octal = |j: usize| cs.get(j).and_then(|c| c.to_digit(8));
            let Some(first) = octal(i) else {
                return Err(format!("{q}: illegal octal escape sequence"));
            };
            let mut value = first;
            i += 1;
            let most = if first <= 3 { 2 } else { 1 };
            for _ in 0..most {
                match octal(i) {
                    Some(d) => {
                        value = value * 8 + d;
                        i += 1;
                    }
                    None => break,
                }
            }
            literal(out, char::from_u32(value).unwrap_or('\0'));
        }
        'Q' => {
            let end = (i..cs.len().saturating_sub(1))
                .find(|&j| cs[j] == '\\' && cs[j + 1] == 'E')
                .unwrap_or(cs.len());
            for &q in &cs[i..end] {
                literal(out, q);
            }
            i = (end + 2).min(cs.len());
        }
        'p' | 'P' => {
            let name: Option<String> = if cs.get(i) == Some(&'{') {
                cs[i + 1..]
                    .iter()
                    .position(|&c| c == '}')
                    .map(|n| cs[i + 1..i + 1 + n].iter().collect())
            } else {
                None
            };
            match name.as_deref().and_then(posix_class) {
                Some(class) => {
                    let not = if e == 'P' { "^" } else { "" };
                    out.push_str(&format!("[[:{not}{class}:]]"));
                    i += name.map_or(0, |n| n.chars().count()) + 2;
                }
                None => i = copy(i, 1, out),
            }
        }
        'x' => i = copy(i, 2, out),
        'u' => i = copy(i, 4, out),
        e if !e.is_ascii_alphanumeric() => literal(out, e),
        e => {
            out.push('\\');
            out.push(e);
        }
    }
    Ok(i)
}

/// A group opened by `(?` (`cs[i]` follows the `?`): Java's inline flags `i d m s u x U`
/// become the crate's (`d` and `u` dropped, `U` refused); other groups are left to the crate.
fn group(q: &str, cs: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    let flags = cs[i..].iter().take_while(|c| c.is_ascii_alphabetic() || **c == '-').count();
    let end = i + flags;
    let term = cs.get(end).copied();
    if !matches!(term, Some(':' | ')')) {
        if flags == 0 && term == Some('>') {
            return Err(format!("{q}: atomic groups are not supported"));
        }
        out.push_str("(?");
        return Ok(i);
    }
    let (mut on, mut off, mut negated) = (String::new(), String::new(), false);
    for &f in &cs[i..end] {
        match f {
            '-' if !negated => negated = true,
            'i' | 'm' | 's' | 'x' => {
                if negated { &mut off } else { &mut on }.push(f);
            }
            'd' | 'u' => {}
            'U' => {
                return Err(format!("{q}: the flag U (Unicode character classes) is not supported"))
            }
            f => return Err(format!("{q}: unknown inline flag {f:?}")),
        }
    }
    if on.is_empty() && off.is_empty() {
        if term == Some(':') {
            out.push_str("(?:");
        }
    } else {
        out.push_str("(?");
        out.push_str(&on);
        if !off.is_empty() {
            out.push('-');
            out.push_str(&off);
        }
        out.extend(term);
    }
    Ok(end + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(rules: &str, name: &str) -> Result<String, NameError> {
        let rules = NameRules::parse(rules).unwrap();
        rules.short_name(&KerberosName::parse(name)?, "EXAMPLE.COM")
    }

    fn parse_err(rules: &str) -> String {
        NameRules::parse(rules).unwrap_err().to_string()
    }

    #[test]
    fn names_split_as_kerberos_name_splits_them() {
        let n = KerberosName::parse("zk/host1.example.com@EXAMPLE.COM").unwrap();
        assert_eq!(
            (n.service(), n.host(), n.realm()),
            ("zk", Some("host1.example.com"), Some("EXAMPLE.COM"))
        );
        assert_eq!(n.to_string(), "zk/host1.example.com@EXAMPLE.COM");
        let n = KerberosName::parse("client@EXAMPLE.COM").unwrap();
        assert_eq!((n.service(), n.host(), n.realm()), ("client", None, Some("EXAMPLE.COM")));
        // Without `@`: all service, even with `/`; no rule is consulted.
        let n = KerberosName::parse("a/b").unwrap();
        assert_eq!((n.service(), n.host(), n.realm()), ("a/b", None, None));
        assert_eq!(short("", "a/b").unwrap(), "a/b");
        assert_eq!(short("DEFAULT", "bob").unwrap(), "bob");
        for bad in ["a/b/c@R", "a@b@R", "a@R/x", "a/b@R@S"] {
            assert_eq!(
                KerberosName::parse(bad),
                Err(NameError::Malformed(bad.into())),
                "{bad} is malformed"
            );
        }
        // Empty parts are parts.
        let n = KerberosName::parse("a/@R").unwrap();
        assert_eq!((n.service(), n.host(), n.realm()), ("a", Some(""), Some("R")));
        assert_eq!(KerberosName::parse(&"x".repeat(MAX_NAME + 1)), Err(NameError::TooLong));
    }

    #[test]
    fn default_takes_the_first_component_of_the_default_realm() {
        assert_eq!(short("DEFAULT", "zk/host@EXAMPLE.COM").unwrap(), "zk");
        assert_eq!(short("DEFAULT", "client@EXAMPLE.COM").unwrap(), "client");
        assert_eq!(
            short("DEFAULT", "client@OTHER.COM"),
            Err(NameError::NoRuleApplied("client@OTHER.COM".into()))
        );
        // Without a Kerberos configuration ZooKeeper's default realm is "".
        let rules = NameRules::default();
        let n = KerberosName::parse("client@EXAMPLE.COM").unwrap();
        assert!(matches!(rules.short_name(&n, ""), Err(NameError::NoRuleApplied(_))));
        let n = KerberosName::parse("client@").unwrap();
        assert_eq!(rules.short_name(&n, "").unwrap(), "client");
    }

    #[test]
    fn rules_of_the_usual_kinds() {
        let rules = "
            RULE:[1:$1@$0](.*@FOO.COM)s/@.*//
            RULE:[2:$1](johndoe)s/^.*$/guest/
            RULE:[2:$1;$2](^.*;admin$)s/;admin$//
            RULE:[2:$2](root)
            DEFAULT";
        let map = |name: &str| short(rules, name);
        // Two components of another realm, none of the RULEs: DEFAULT needs the default realm.
        assert_eq!(
            map("john/joe@FOO.COM"),
            Err(NameError::NoRuleApplied("john/joe@FOO.COM".into()))
        );
        assert_eq!(map("johndoe/zoo@FOO.COM").unwrap(), "guest");
        assert_eq!(map("joe/admin@FOO.COM").unwrap(), "joe");
        assert_eq!(map("joe/root@FOO.COM").unwrap(), "root");
        assert_eq!(map("joe@FOO.COM").unwrap(), "joe");
        assert_eq!(map("joe@EXAMPLE.COM").unwrap(), "joe", "DEFAULT");
        assert_eq!(map("joe/host@EXAMPLE.COM").unwrap(), "joe", "DEFAULT");
        assert_eq!(map("joe"), Ok("joe".into()), "a simple name is itself");
        assert_eq!(
            map("joe/host@OTHER.COM"),
            Err(NameError::NoRuleApplied("joe/host@OTHER.COM".into()))
        );
        assert_eq!(map("joe@OTHER.COM"), Err(NameError::NoRuleApplied("joe@OTHER.COM".into())));
        // A rule that leaves `@` in the name ends the search with an error.
        let err = short("RULE:[1:$1@$0] DEFAULT", "joe@EXAMPLE.COM").unwrap_err();
        assert_eq!(
            err,
            NameError::NonSimple { name: "joe@EXAMPLE.COM".into(), rule: "RULE:[1:$1@$0]".into() }
        );
        assert!(err.to_string().contains("non-simple name joe@EXAMPLE.COM"), "{err}");
    }

    #[test]
    fn formats_substitutions_and_regexes_are_javas() {
        // Components by number; the rule's N must equal the principal's.
        assert_eq!(short("RULE:[2:$2-$1-$0]", "a/b@R").unwrap(), "b-a-R");
        assert_eq!(short("RULE:[2:$02x]", "a/b@R").unwrap(), "bx", "$02 is $2");
        assert!(matches!(short("RULE:[2:$1]", "a@R"), Err(NameError::NoRuleApplied(_))));
        assert!(matches!(short("RULE:[0:x] RULE:[3:x]", "a@R"), Err(NameError::NoRuleApplied(_))));
        // An empty format is an empty name.
        assert_eq!(short("RULE:[1:]", "a@R").unwrap(), "");
        // The regex matches the whole formatted string (Matcher.matches), not a part.
        assert!(matches!(short("RULE:[1:$1](b)", "abc@R"), Err(NameError::NoRuleApplied(_))));
        assert_eq!(short("RULE:[1:$1](a|ab)", "ab@R").unwrap(), "ab");
        assert_eq!(
            short("RULE:[1:$1]()", "a@R").unwrap_err(),
            NameError::NoRuleApplied("a@R".into())
        );
        // First match, or every match with g; Java's empty-match steps.
        assert_eq!(short("RULE:[1:$1]s/o/0/", "foo@R").unwrap(), "f0o");
        assert_eq!(short("RULE:[1:$1]s/o/0/g", "foo@R").unwrap(), "f00");
        assert_eq!(short("RULE:[1:$1]s/a*/-/g", "baaa@R").unwrap(), "-b--");
        assert_eq!(short("RULE:[1:$1]s/x*/-/g", "abc@R").unwrap(), "-a-b-c-");
        assert_eq!(short("RULE:[1:$1]s/$/!/", "abc@R").unwrap(), "abc!");
        assert_eq!(short("RULE:[1:$1]s/é*/-/g", "aé@R").unwrap(), "-a--");
        // Java's replacement: $n with as many digits as make a group, ${name}, \ escapes.
        assert_eq!(short("RULE:[1:$1]s/(a)(b)/$2$1$10/", "ab@R").unwrap(), "baa0");
        assert_eq!(short("RULE:[1:$1]s/(?<x>a)b/${x}-\\$1-\\\\/", "ab@R").unwrap(), "a-$1-\\");
        assert_eq!(short("RULE:[1:$1]s/(a)|(b)/[$2]/", "a@R").unwrap(), "[]", "unmatched group");
        // Java's classes are ASCII; a backslash before a non-letter is that character.
        assert_eq!(short("RULE:[1:$1](\\w+)", "ab_9@R").unwrap(), "ab_9");
        assert!(matches!(short("RULE:[1:$1](\\w+)", "é@R"), Err(NameError::NoRuleApplied(_))));
        assert!(matches!(short("RULE:[1:$1](\\d)", "٣@R"), Err(NameError::NoRuleApplied(_))));
        assert_eq!(short("RULE:[1:$1](\\<a\\>)", "<a>@R").unwrap(), "<a>");
        assert_eq!(
            short("RULE:[1:$1@$0](\\Q.*@R\\E)", ".*@R").unwrap_err(),
            NameError::NonSimple { name: ".*@R".into(), rule: "RULE:[1:$1@$0](\\Q.*@R\\E)".into() }
        );
        assert_eq!(short("RULE:[1:$1](\\Qa.b)", "a.b@R").unwrap(), "a.b");
        assert!(matches!(short("RULE:[1:$1](\\Qa.b)", "axb@R"), Err(NameError::NoRuleApplied(_))));
        assert_eq!(short("RULE:[1:$1](\\p{Lower}+[\\d])", "ab1@R").unwrap(), "ab1");
        assert_eq!(short("RULE:[1:$1](\\P{Lower}\\0101\\x42)", "ZAB@R").unwrap(), "ZAB");
        assert_eq!(short("RULE:[1:$1]([[:x]]+)", "x:x@R").unwrap(), "x:x", "[: is no POSIX class");
        assert_eq!(short("RULE:[1:$1]s/(?i)ADMIN/x/", "admin@R").unwrap(), "x");
        // A regex in ( ) cannot hold `)`: it ends at the first one, here leaving `(?i`.
        let err = parse_err("RULE:[1:$1]((?i)ADMIN)");
        assert!(
            err.contains("rule `RULE:[1:$1]((?i)`: the regular expression in ( ): `(?i`"),
            "{err}"
        );
        assert_eq!(short("RULE:[1:$1]s/(?iu)A/b/", "a@R").unwrap(), "b", "u dropped");
        assert_eq!(
            short("RULE:[1:$1](.*@.*)s/@.*//", "joe@R"),
            Err(NameError::NoRuleApplied("joe@R".into()))
        );
    }

    #[test]
    fn rules_need_no_separator_and_take_any_java_whitespace() {
        let r = NameRules::parse("RULE:[1:$1]DEFAULT\n\t\x0B\x0CDEFAULT\r\n").unwrap();
        assert_eq!(r.rules.len(), 3);
        let r = NameRules::parse("  RULE:[1:$1](a)s/a/b/gRULE:[2:$1]").unwrap();
        assert_eq!(r.rules.len(), 2);
        assert_eq!(r.rules[0].to_string(), "RULE:[1:$1](a)s/a/b/g");
        assert!(NameRules::parse("").unwrap().rules.is_empty());
        assert!(NameRules::parse(" \x01 ").unwrap().rules.is_empty(), "trimmed as Java trims");
        assert_eq!(NameRules::parse("DEFAULT"), Ok(NameRules::default()));
        assert!(NameRules::parse("").unwrap().warnings()[0].contains("no rules"));
    }

    #[test]
    fn malformed_rules_are_refused() {
        for (rules, says) in [
            ("DEFAULTS", "invalid rule `S`"),
            ("default", "expected DEFAULT or RULE"),
            ("RULE:[1:$1", "no `]` ends the format"),
            ("RULE:[1:$1](a", "invalid rule `(a`: expected DEFAULT or RULE:[N:format](regex)s/pattern/replacement/g, after `RULE:[1:$1]`"),
            ("RULE:[1:$1](a))", "invalid rule `)`"),
            ("RULE:[1:$1]s/a/b", "invalid rule `s/a/b`"),
            ("RULE:[1:$1]s/a/b/L", "invalid rule `L`: expected DEFAULT or RULE:[N:format](regex)s/pattern/replacement/g, after `RULE:[1:$1]s/a/b/` (ZooKeeper 3.8 has no /L suffix)"),
            ("RULE:[1:$1]s/a/b/g/L", "invalid rule `/L`: expected DEFAULT or RULE:[N:format](regex)s/pattern/replacement/g, after `RULE:[1:$1]s/a/b/g` (ZooKeeper 3.8 has no /L suffix)"),
            ("RULE:[1:$1]/L", "no /L suffix"),
            ("RULE:[1:$1] s/a/b/", "invalid rule `s/a/b/`"),
            ("RULE:[:$1]", "no number of components"),
            ("RULE:[x:$1]", "followed by a number of components"),
            ("RULE:[1]", "followed by a number of components"),
            ("RULE:[2147483648:$1]", "too large"),
            ("RULE:1:$1]", "expected DEFAULT or RULE"),
            ("DEFAULT \x01 DEFAULT", "invalid rule `\\u{1} DEFAULT`"),
            ("RULE:[1:$1](a[b)", "the regular expression in ( )"),
            ("RULE:[1:$1](a{2)", "the regular expression in ( )"),
            ("RULE:[1:$1]s/(a/b/", "the pattern in s/ / /"),
            ("RULE:[1:$1]s/\\/b/", "the pattern in s/ / /"),
            ("RULE:[1:$1]s/(a)\\1/b/", "backreferences"),
            ("RULE:[1:$1]s/a(?=b)/b/", "look-around"),
            ("RULE:[1:$1]s/(?>a)/b/", "atomic groups"),
            ("RULE:[1:$1]s/a*+/b/", "possessive"),
            ("RULE:[1:$1]s/a{2}+/b/", "possessive"),
            ("RULE:[1:$1]s/a**/b/", "cannot follow a quantifier"),
            ("RULE:[1:$1]s/a*??/b/", "cannot follow a quantifier"),
            ("RULE:[1:$1]s/(?U)a/b/", "flag U"),
            ("RULE:[1:$1]s/(?R)a/b/", "unknown inline flag"),
            ("RULE:[1:$1]s/a\\Z/b/", "the pattern in s/ / /"),
            ("RULE:[1:$1]s/\\0/b/", "octal"),
            ("RULE:[1:$1]s/(a{1000}){1000}/b/", "too large"),
        ] {
            let err = parse_err(rules);
            assert!(err.contains(says), "{rules:?}: {err}");
        }
        assert!(parse_err(&"DEFAULT ".repeat(MAX_RULES + 1)).contains("more than"));
        assert!(NameRules::parse(&"DEFAULT ".repeat(MAX_RULES)).is_ok());
        assert!(parse_err(&" ".repeat(MAX_RULES_TEXT + 1)).contains("at most"));
    }

    #[test]
    fn rules_read_but_failing_when_applied() {
        // As in ZooKeeper these are read, and fail (ending the search) when they are tried.
        let rules = "RULE:[1:$x] RULE:[2:$3] RULE:[2:$1](a)s/a/$2/ RULE:[5:$1] DEFAULT";
        let r = NameRules::parse(rules).unwrap();
        let w = r.warnings();
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(w[0].contains("bad format in username mapping"), "{}", w[0]);
        assert!(w[1].contains("outside of the valid range 0 to 2"), "{}", w[1]);
        assert!(w[2].contains("no group 2"), "{}", w[2]);
        assert!(w[3].contains("never applies"), "{}", w[3]);
        let err = short(rules, "joe@EXAMPLE.COM").unwrap_err();
        assert!(matches!(&err, NameError::BadRule { rule, .. } if rule == "RULE:[1:$x]"), "{err}");
        let err = short(rules, "joe/h@EXAMPLE.COM").unwrap_err();
        assert!(err.to_string().contains("index 3"), "{err}");
        let r = NameRules::parse("RULE:[2:$1](a)s/a/$2/ DEFAULT").unwrap();
        let n = KerberosName::parse("a/h@EXAMPLE.COM").unwrap();
        let err = r.short_name(&n, "EXAMPLE.COM").unwrap_err();
        assert_eq!(
            err,
            NameError::BadRule {
                rule: "RULE:[2:$1](a)s/a/$2/".into(),
                why: "the pattern has no group 2".into()
            }
        );
        // Only when the pattern matches.
        let n = KerberosName::parse("b/h@EXAMPLE.COM").unwrap();
        assert_eq!(r.short_name(&n, "EXAMPLE.COM").unwrap(), "b");
        for (to, says) in [
            ("\\", "ends with `\\`"),
            ("$", "ends with `$`"),
            ("$x", "no group reference"),
            ("${}", "names no group"),
            ("${a", "no closing"),
            ("${1a}", "starts with a digit"),
            ("${y}", "no group named y"),
        ] {
            let r = NameRules::parse(&format!("RULE:[1:$1]s/(?<a>a)/{to}/")).unwrap();
            let err = short(r.text(), "a@R").unwrap_err().to_string();
            assert!(err.contains(says), "{to:?}: {err}");
            assert_eq!(short(r.text(), "b@R").unwrap(), "b");
        }
    }

    #[test]
    fn names_made_are_bounded() {
        let format = "$1".repeat(2000);
        assert_eq!(short(&format!("RULE:[1:{format}]"), "xxxxxxxxxx@R"), Err(NameError::TooLong));
        let long = "y".repeat(1000);
        let name = format!("{}@R", "z".repeat(100));
        assert_eq!(short(&format!("RULE:[1:$1]s/x*/{long}/g"), &name), Err(NameError::TooLong));
        assert_eq!(short(&format!("RULE:[1:$1]s/x*/{long}/"), &name).unwrap().len(), 1100);
    }

    proptest::proptest! {
        /// Whatever the rules and the name, reading and applying them returns; nothing panics.
        #[test]
        fn any_rules_and_names_give_an_answer(
            rules in "(DEFAULT|RULE:\\[[0-3]?:[$0-3a@/]{0,6}\\]|\\([a$@.*+?{}\\[\\]\\\\^|dwQE0-2]{0,8}\\)|s/[a()$.*+?{}\\\\|^0-2<>]{0,8}/[a$\\\\{}0-3x]{0,6}/g?| |L|/){0,6}",
            name in "[a@/é]{0,8}",
        ) {
            if let Ok(r) = NameRules::parse(&rules) {
                let _ = r.warnings();
                if let Ok(n) = KerberosName::parse(&name) {
                    let _ = r.short_name(&n, "a");
                }
            }
        }
    }
}
