//! JAAS login configuration files, as the JDK's `ConfigFile` reads them:
//!
//! ```text
//! Server {
//!     org.apache.zookeeper.server.auth.DigestLoginModule required
//!     user_super="secret"
//!     user_bob="pw";
//! };
//! ```
//!
//! Sections `Name { Module Flag key=value ... ; ... };`, the flag one of required, requisite,
//! sufficient, optional (any case); values quoted with `"` or bare; `//` and `/* */`
//! comments; `${name}` in a value replaced from the given properties (empty if unknown).

use std::collections::BTreeMap;

/// One login module of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginModule {
    /// Its class name.
    pub class: String,
    /// required, requisite, sufficient or optional (lower case).
    pub flag: String,
    /// Its options, in file order (later duplicates win).
    pub options: BTreeMap<String, String>,
}

/// A parse error, with the line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct JaasError {
    /// 1-based line.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Punct(char),
}

fn tokens(text: &str) -> Result<Vec<(Tok, usize)>, JaasError> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(JaasError { line, message: "unterminated comment".into() });
                }
                i += 2;
            }
            '{' | '}' | ';' | '=' => {
                out.push((Tok::Punct(c), line));
                i += 1;
            }
            '"' => {
                let start = line;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(JaasError {
                                line: start,
                                message: "unterminated quote".into(),
                            })
                        }
                        Some('"') => break,
                        Some('\\') if i + 1 < chars.len() => {
                            s.push(chars[i + 1]);
                            i += 2;
                            continue;
                        }
                        Some(&ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            s.push(ch);
                        }
                    }
                    i += 1;
                }
                i += 1;
                out.push((Tok::Quoted(s), start));
            }
            _ => {
                let mut s = String::new();
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], '{' | '}' | ';' | '=' | '"')
                {
                    s.push(chars[i]);
                    i += 1;
                }
                out.push((Tok::Word(s), line));
            }
        }
    }
    Ok(out)
}

/// `${name}` replaced from `props`.
fn expand(v: &str, props: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find('}') {
            Some(end) => {
                out.push_str(&props(&rest[start + 2..start + 2 + end]).unwrap_or_default());
                rest = &rest[start + 2 + end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses a JAAS file: section name → its login modules.
pub fn parse(
    text: &str,
    props: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, Vec<LoginModule>>, JaasError> {
    let toks = tokens(text)?;
    let mut sections = BTreeMap::new();
    let mut i = 0;
    let last_line = toks.last().map(|t| t.1).unwrap_or(1);
    let err = |line: usize, m: &str| JaasError { line, message: m.to_string() };
    let word = |i: usize| -> Option<(String, usize)> {
        match toks.get(i) {
            Some((Tok::Word(w), l)) => Some((w.clone(), *l)),
            _ => None,
        }
    };
    let punct = |i: usize, c: char| matches!(toks.get(i), Some((Tok::Punct(p), _)) if *p == c);
    let line_at = |i: usize| toks.get(i).map(|t| t.1).unwrap_or(last_line);
    while i < toks.len() {
        let (name, line) = word(i).ok_or_else(|| err(line_at(i), "expected a section name"))?;
        i += 1;
        if !punct(i, '{') {
            return Err(err(line_at(i), "expected '{' after the section name"));
        }
        i += 1;
        let mut modules = Vec::new();
        while !punct(i, '}') {
            let (class, l) =
                word(i).ok_or_else(|| err(line_at(i), "expected a login module class"))?;
            i += 1;
            let (flag, _) = word(i).ok_or_else(|| err(l, "expected a control flag"))?;
            let flag = flag.to_ascii_lowercase();
            if !matches!(flag.as_str(), "required" | "requisite" | "sufficient" | "optional") {
                return Err(err(l, &format!("bad control flag {flag}")));
            }
            i += 1;
            let mut options = BTreeMap::new();
            while !punct(i, ';') {
                let (key, kl) =
                    word(i).ok_or_else(|| err(line_at(i), "expected an option or ';'"))?;
                i += 1;
                if !punct(i, '=') {
                    return Err(err(kl, &format!("expected '=' after {key}")));
                }
                i += 1;
                let value = match toks.get(i) {
                    Some((Tok::Word(v), _)) | Some((Tok::Quoted(v), _)) => v.clone(),
                    _ => return Err(err(kl, &format!("expected a value for {key}"))),
                };
                i += 1;
                options.insert(key, expand(&value, props));
            }
            i += 1;
            modules.push(LoginModule { class, flag, options });
        }
        i += 1;
        if !punct(i, ';') {
            return Err(err(line_at(i), "expected ';' after '}'"));
        }
        i += 1;
        if sections.insert(name.clone(), modules).is_some() {
            return Err(err(line, &format!("section {name} appears twice")));
        }
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn zookeepers_server_and_client_sections() {
        let text = r#"
            // kazoo's harness writes this
            Server {
                org.apache.zookeeper.server.auth.DigestLoginModule required
                user_super="super_secret"
                user_jaasuser="jaas_password";
            };
            /* a client section,
               two lines */
            Client { org.apache.zookeeper.server.auth.DigestLoginModule Required username=bob password="p;w"; };
            Krb { com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true keyTab="${dir}/k.keytab"; };
        "#;
        let props = |k: &str| (k == "dir").then(|| "/etc".to_string());
        let s = parse(text, &props).unwrap();
        let server = &s["Server"][0];
        assert_eq!(server.class, "org.apache.zookeeper.server.auth.DigestLoginModule");
        assert_eq!(server.flag, "required");
        assert_eq!(server.options["user_super"], "super_secret");
        assert_eq!(server.options["user_jaasuser"], "jaas_password");
        assert_eq!(s["Client"][0].options["password"], "p;w");
        assert_eq!(s["Krb"][0].options["keyTab"], "/etc/k.keytab");
        assert!(parse("", &none).unwrap().is_empty(), "kazoo's empty jaas.conf");
    }

    #[test]
    fn malformed_files_say_where() {
        for (text, line) in [
            ("Server {\n m required a=\"b\"\n", 2),
            ("Server {\n m maybe;\n};", 2),
            ("Server {\n m required a b;\n};", 2),
            ("Server {};\nServer {};", 2),
            ("Server { m required a=\"unterminated ; };", 1),
            ("/* open", 1),
            ("Server { m required; }", 1),
        ] {
            let e = parse(text, &none).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }
}
