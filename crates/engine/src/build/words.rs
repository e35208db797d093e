//! Words and variables in instructions, as Docker's shell lexer treats
//! them (`moby/buildkit/frontend/dockerfile/shell`): single quotes are
//! literal, double quotes group and allow `$`, the escape character
//! quotes the next one, and `$VAR`, `${VAR}`, `${VAR:-word}`,
//! `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`, `${VAR:?msg}` and
//! `${VAR?msg}` expand from the build's variables.

/// Looks a variable up (None: unset).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Splits `s` on unquoted whitespace, keeping quotes and escapes (for
/// [`expand`] to process each word).
pub fn split_raw(s: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == escape && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                in_word = true;
                cur.push(c);
                if c == escape {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// One word with its quotes removed and its variables expanded.
pub fn expand(word: &str, vars: Lookup, escape: char) -> Result<String, String> {
    let chars: Vec<char> = word.chars().collect();
    let mut i = 0;
    let mut out = String::new();
    expand_into(&chars, &mut i, vars, escape, &mut out, None)?;
    Ok(out)
}

/// Expands from `*i` until the end, or (inside `${…:-word}`) the closing
/// brace `stop`.
fn expand_into(
    s: &[char],
    i: &mut usize,
    vars: Lookup,
    escape: char,
    out: &mut String,
    stop: Option<char>,
) -> Result<(), String> {
    while *i < s.len() {
        let c = s[*i];
        if Some(c) == stop {
            return Ok(());
        }
        *i += 1;
        if c == escape {
            if let Some(&n) = s.get(*i) {
                out.push(n);
                *i += 1;
            } else {
                out.push(c);
            }
        } else if c == '\'' {
            while *i < s.len() && s[*i] != '\'' {
                out.push(s[*i]);
                *i += 1;
            }
            if *i >= s.len() {
                return Err("unexpected end of text: a single quote is not closed".into());
            }
            *i += 1;
        } else if c == '"' {
            loop {
                let Some(&d) = s.get(*i) else {
                    return Err("unexpected end of text: a double quote is not closed".into());
                };
                *i += 1;
                if d == '"' {
                    break;
                } else if d == escape {
                    match s.get(*i) {
                        Some(&n) if n == '"' || n == '$' || n == escape => {
                            out.push(n);
                            *i += 1;
                        }
                        _ => out.push(d),
                    }
                } else if d == '$' {
                    variable(s, i, vars, escape, out)?;
                } else {
                    out.push(d);
                }
            }
        } else if c == '$' {
            variable(s, i, vars, escape, out)?;
        } else {
            out.push(c);
        }
    }
    if stop.is_some() {
        return Err("a ${…} is not closed".into());
    }
    Ok(())
}

/// After a `$`: a variable reference, or a literal `$`.
fn variable(
    s: &[char],
    i: &mut usize,
    vars: Lookup,
    escape: char,
    out: &mut String,
) -> Result<(), String> {
    match s.get(*i) {
        Some('{') => {
            *i += 1;
            let start = *i;
            while *i < s.len() && is_name_char(s[*i]) {
                *i += 1;
            }
            let name: String = s[start..*i].iter().collect();
            if name.is_empty() {
                return Err("bad substitution: ${} needs a variable name".into());
            }
            let value = vars(&name);
            match s.get(*i) {
                Some('}') => {
                    *i += 1;
                    out.push_str(&value.unwrap_or_default());
                    Ok(())
                }
                Some(&c) => {
                    let colon = c == ':';
                    if colon {
                        *i += 1;
                    }
                    let op = s.get(*i).copied().ok_or("a ${…} is not closed")?;
                    if !matches!(op, '-' | '+' | '?') {
                        return Err(format!("unsupported modifier ({op}) in substitution"));
                    }
                    *i += 1;
                    let mut word = String::new();
                    expand_into(s, i, vars, escape, &mut word, Some('}'))?;
                    *i += 1; // the closing brace
                    let set = match &value {
                        Some(v) => !colon || !v.is_empty(),
                        None => false,
                    };
                    match op {
                        '-' => out.push_str(&if set { value.unwrap_or_default() } else { word }),
                        '+' => {
                            if set {
                                out.push_str(&word)
                            }
                        }
                        _ => {
                            if !set {
                                return Err(if word.is_empty() {
                                    format!("{name}: is not allowed to be unset")
                                } else {
                                    format!("{name}: {word}")
                                });
                            }
                            out.push_str(&value.unwrap_or_default());
                        }
                    }
                    Ok(())
                }
                None => Err("a ${…} is not closed".into()),
            }
        }
        Some(&c) if is_name_char(c) && !c.is_ascii_digit() => {
            let start = *i;
            while *i < s.len() && is_name_char(s[*i]) {
                *i += 1;
            }
            let name: String = s[start..*i].iter().collect();
            out.push_str(&vars(&name).unwrap_or_default());
            Ok(())
        }
        _ => {
            out.push('$');
            Ok(())
        }
    }
}

/// Every word of `s`, each expanded.
pub fn words(s: &str, vars: Lookup, escape: char) -> Result<Vec<String>, String> {
    split_raw(s, escape)
        .iter()
        .map(|w| expand(w, vars, escape))
        .collect()
}

/// `KEY=VALUE …` pairs (ENV, LABEL, ARG); `legacy` allows ENV's old
/// `KEY VALUE WITH SPACES` form. Values are expanded; keys are not.
pub fn pairs(
    s: &str,
    vars: Lookup,
    escape: char,
    legacy: bool,
) -> Result<Vec<(String, String)>, String> {
    let raw = split_raw(s, escape);
    if legacy && raw.first().is_some_and(|w| !w.contains('=')) {
        let key = expand(&raw[0], vars, escape)?;
        let rest = s.trim_start()[raw[0].len()..].trim();
        if rest.is_empty() {
            return Err(format!("{key} needs a value (KEY VALUE or KEY=VALUE)"));
        }
        return Ok(vec![(key, expand(rest, vars, escape)?)]);
    }
    raw.iter()
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| format!("{w:?} is not KEY=VALUE"))?;
            let k = expand(k, vars, escape)?;
            if k.is_empty() {
                return Err(format!("{w:?} has an empty key"));
            }
            Ok((k, expand(v, vars, escape)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("one".into()),
            "EMPTY" => Some(String::new()),
            "SP" => Some("x y".into()),
            _ => None,
        }
    }

    fn ex(s: &str) -> String {
        expand(s, &env, '\\').unwrap()
    }

    #[test]
    fn quotes_escapes_and_variables() {
        assert_eq!(ex("$A"), "one");
        assert_eq!(ex("${A}-x"), "one-x");
        assert_eq!(ex("'$A'"), "$A");
        assert_eq!(ex("\"$A $SP\""), "one x y");
        assert_eq!(ex("\\$A"), "$A");
        assert_eq!(ex("a\\ b"), "a b");
        assert_eq!(ex("\"a\\\"b\""), "a\"b");
        assert_eq!(ex("$"), "$");
        assert_eq!(ex("$1"), "$1");
        assert_eq!(ex("${NO:-def}"), "def");
        assert_eq!(ex("${EMPTY:-def}"), "def");
        assert_eq!(ex("${EMPTY-def}"), "");
        assert_eq!(ex("${A:+set}"), "set");
        assert_eq!(ex("${NO:+set}"), "");
        assert_eq!(ex("${NO:-${A}x}"), "onex");
        assert!(expand("${NO:?must be set}", &env, '\\')
            .unwrap_err()
            .contains("must be set"));
        assert!(expand("'open", &env, '\\').is_err());
        assert!(expand("${A", &env, '\\').is_err());
        assert_eq!(expand("`$A", &env, '`').unwrap(), "$A");
    }

    #[test]
    fn words_and_pairs() {
        assert_eq!(
            words("a \"b c\" $SP", &env, '\\').unwrap(),
            ["a", "b c", "x y"]
        );
        assert_eq!(
            pairs("K=v K2=\"a b\" K3=$A", &env, '\\', true).unwrap(),
            [
                ("K".to_string(), "v".to_string()),
                ("K2".into(), "a b".into()),
                ("K3".into(), "one".into())
            ]
        );
        assert_eq!(
            pairs("K the rest $A", &env, '\\', true).unwrap(),
            [("K".to_string(), "the rest one".to_string())]
        );
        assert!(pairs("K v", &env, '\\', false).is_err());
    }
}
