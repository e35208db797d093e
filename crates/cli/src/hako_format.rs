//! Docker's `--format`: `json` (one object per line), or a Go template
//! (`{{.Names}}`, `{{json .}}`, `{{join .Args " "}}`), optionally as a
//! `table` whose header names the fields. Templates are Go's text/template
//! through the gtmpl crate, over the JSON of each row (what `--format
//! json` prints), so a template sees the fields the JSON has; a field also
//! answers to its capitalised name (`.Name` for `name`). Docker's helper
//! functions are added: json, join, lower, upper, title, split, truncate.

use anyhow::{anyhow, Result};
use gtmpl::{Context, Func, FuncError, Template, Value as G};
use serde_json::Value;

/// A parsed `--format`.
pub enum Format {
    Json,
    Template {
        table: bool,
        /// The row template's source, for the header.
        source: String,
        tmpl: Template,
    },
}

fn to_g(v: &Value) -> G {
    match v {
        Value::Null => G::Nil,
        Value::Bool(b) => G::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => G::from(i),
            (None, Some(u), _) => G::from(u),
            (_, _, Some(f)) => G::from(f),
            _ => G::Nil,
        },
        Value::String(s) => G::String(s.clone()),
        Value::Array(a) => G::Array(a.iter().map(to_g).collect()),
        Value::Object(o) => {
            let mut m = std::collections::HashMap::new();
            for (k, v) in o {
                m.insert(k.clone(), to_g(v));
            }
            G::Object(m)
        }
    }
}

fn to_json(v: &G) -> Value {
    match v {
        G::NoValue | G::Nil | G::Function(_) => Value::Null,
        G::Bool(b) => Value::Bool(*b),
        G::String(s) => Value::String(s.clone()),
        G::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_u64().map(Value::from))
            .or_else(|| n.as_f64().map(Value::from))
            .unwrap_or(Value::Null),
        G::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        G::Object(m) | G::Map(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), to_json(&m[k])))
                    .collect(),
            )
        }
    }
}

fn text(v: &G) -> String {
    match v {
        G::String(s) => s.clone(),
        G::NoValue | G::Nil => String::new(),
        other => to_json(other).to_string(),
    }
}

fn arg<'a>(args: &'a [G], i: usize, f: &str) -> Result<&'a G, FuncError> {
    args.get(i)
        .ok_or_else(|| FuncError::Generic(format!("{f}: missing argument {}", i + 1)))
}

fn json(args: &[G]) -> Result<G, FuncError> {
    Ok(G::String(to_json(arg(args, 0, "json")?).to_string()))
}

fn join(args: &[G]) -> Result<G, FuncError> {
    let sep = text(arg(args, 1, "join")?);
    match arg(args, 0, "join")? {
        G::Array(a) => Ok(G::String(a.iter().map(text).collect::<Vec<_>>().join(&sep))),
        other => Ok(G::String(text(other))),
    }
}

fn lower(args: &[G]) -> Result<G, FuncError> {
    Ok(G::String(text(arg(args, 0, "lower")?).to_lowercase()))
}

fn upper(args: &[G]) -> Result<G, FuncError> {
    Ok(G::String(text(arg(args, 0, "upper")?).to_uppercase()))
}

fn title(args: &[G]) -> Result<G, FuncError> {
    let s = text(arg(args, 0, "title")?);
    let mut c = s.chars();
    Ok(G::String(match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => s,
    }))
}

fn split(args: &[G]) -> Result<G, FuncError> {
    let s = text(arg(args, 0, "split")?);
    let sep = text(arg(args, 1, "split")?);
    Ok(G::Array(
        s.split(sep.as_str()).map(|p| G::String(p.into())).collect(),
    ))
}

fn truncate(args: &[G]) -> Result<G, FuncError> {
    let s = text(arg(args, 0, "truncate")?);
    let n = match arg(args, 1, "truncate")? {
        G::Number(n) => n.as_u64().unwrap_or(0) as usize,
        other => text(other).parse().unwrap_or(0),
    };
    Ok(G::String(s.chars().take(n).collect()))
}

/// A value as Go's text/template prints it: `map[a:1 b:2]` (keys sorted),
/// `[x y]`, `<nil>`; the template crate would print Rust's debug form.
fn go_text(v: &G) -> String {
    match v {
        G::String(s) => s.clone(),
        G::NoValue => "<no value>".into(),
        G::Nil | G::Function(_) => "<nil>".into(),
        G::Bool(b) => b.to_string(),
        G::Number(n) => n.to_string(),
        G::Array(a) => format!("[{}]", a.iter().map(go_text).collect::<Vec<_>>().join(" ")),
        G::Object(m) | G::Map(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let pairs: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_text(&m[k])))
                .collect();
            format!("map[{}]", pairs.join(" "))
        }
    }
}

/// Every printed pipeline of the template goes through this, see
/// [`go_printing`].
fn go_print(args: &[G]) -> Result<G, FuncError> {
    Ok(G::String(go_text(arg(args, 0, GO_PRINT)?)))
}

const GO_PRINT: &str = "__hako_print";

/// `body` with each action that prints (not `if`, `range`, `end`, …, a
/// comment or a variable's declaration) piped into [`go_print`]: the
/// template crate prints maps and lists in Rust's debug form and offers
/// no hook for how values print, so the printing is made explicit.
fn go_printing(body: &str) -> Result<String, String> {
    const KEYWORDS: [&str; 10] = [
        "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    ];
    let mut out = String::with_capacity(body.len() + 16);
    let mut rest = body;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i + 2]);
        rest = &rest[i + 2..];
        // The action's end: the first "}}" outside a quoted string.
        let b = rest.as_bytes();
        let (mut k, mut quote) = (0, None);
        while k < b.len() {
            match (quote, b[k]) {
                // The template crate reads a raw string's backslashes as
                // escapes (and panics on a last one): refused.
                (Some(b'`'), b'\\') => {
                    return Err("a raw string (`...`) with a backslash: use \"...\" instead".into())
                }
                (Some(_), b'\\') => k += 1,
                (Some(q), c) if c == q => quote = None,
                (None, c @ (b'"' | b'`' | b'\'')) => quote = Some(c),
                (None, b'}') if b.get(k + 1) == Some(&b'}') => break,
                _ => {}
            }
            k += 1;
        }
        let action = &rest[..k.min(rest.len())];
        // Go's trim markers: "{{- " and " -}}".
        let (inner, trim) = match action.strip_suffix(" -") {
            Some(a) => (a, " -"),
            None => (action, ""),
        };
        let words = inner.trim_start().trim_start_matches("- ");
        let first = words
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("");
        let declares = first.starts_with('$') && {
            let after = words[first.len()..].trim_start();
            after.starts_with(":=") || after.starts_with('=') || after.starts_with(',')
        };
        if words.trim().is_empty()
            || words.starts_with("/*")
            || KEYWORDS.contains(&first)
            || declares
        {
            out.push_str(action);
        } else {
            out.push_str(inner);
            out.push_str(" | ");
            out.push_str(GO_PRINT);
            out.push_str(trim);
        }
        rest = &rest[action.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

const FUNCS: [(&str, Func); 8] = [
    (GO_PRINT, go_print),
    ("json", json),
    ("join", join),
    ("lower", lower),
    ("upper", upper),
    ("title", title),
    ("split", split),
    ("truncate", truncate),
];

/// `json`, or a template (`table` first for a table).
pub fn parse(s: &str) -> Result<Format> {
    if s == "json" {
        return Ok(Format::Json);
    }
    let (table, body) = match s.strip_prefix("table") {
        Some(rest) => (true, rest.trim_start().to_string()),
        None => (false, s.to_string()),
    };
    // Docker's escapes: a literal \t or \n in the argument.
    let body = body.replace("\\t", "\t").replace("\\n", "\n");
    let parsed = |t: &str| {
        let mut tmpl = Template::default();
        tmpl.add_funcs(&FUNCS);
        tmpl.parse(t).map(|()| tmpl).map_err(|e| e.to_string())
    };
    // The user's template is checked as given (errors name their text),
    // then used with Go's printing (go_printing).
    let printing = go_printing(&body).map_err(|e| anyhow!("--format {s:?}: {e}"))?;
    parsed(&body).map_err(|e| anyhow!("--format {s:?}: {e}"))?;
    let tmpl = parsed(&printing).map_err(|e| anyhow!("--format {s:?}: {e}"))?;
    Ok(Format::Template {
        table,
        source: body,
        tmpl,
    })
}

/// The header of a table: the template with each `{{.Field}}` replaced
/// by the field's name in capitals (Docker's names for the usual ones).
fn header(source: &str) -> String {
    let mut out = String::new();
    let mut rest = source;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find("}}") else { break };
        let action = rest[i + 2..i + j].trim();
        let field = action
            .split_whitespace()
            .find_map(|w| w.strip_prefix('.'))
            .unwrap_or(action);
        let name = match field {
            "ID" => "CONTAINER ID".to_string(),
            "RunningFor" | "CreatedSince" => "CREATED".to_string(),
            "PIDs" => "PIDS".to_string(),
            f => {
                let mut s = String::new();
                for (k, c) in f.chars().enumerate() {
                    if k > 0
                        && c.is_uppercase()
                        && !f[..].chars().nth(k - 1).is_some_and(char::is_uppercase)
                    {
                        s.push(' ');
                    }
                    s.extend(c.to_uppercase());
                }
                s
            }
        };
        out.push_str(&name);
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    out
}

/// Prints `rows` in `format`.
pub fn print(rows: &[Value], format: &Format) -> Result<()> {
    match format {
        Format::Json => {
            for r in rows {
                println!("{}", serde_json::to_string(r)?);
            }
        }
        Format::Template {
            table,
            source,
            tmpl,
        } => {
            let mut lines = Vec::new();
            for r in rows {
                let s = tmpl
                    .render(&Context::from(to_g(r)))
                    .map_err(|e| anyhow!("--format: {}", one_line(&e.to_string())))?;
                lines.push(s);
            }
            if *table {
                let head: Vec<String> = header(source).split('\t').map(str::to_string).collect();
                let body: Vec<Vec<String>> = lines
                    .iter()
                    .map(|l| l.split('\t').map(str::to_string).collect())
                    .collect();
                let h: Vec<&str> = head.iter().map(String::as_str).collect();
                crate::output::table(&h, &body);
            } else {
                for l in lines {
                    println!("{l}");
                }
            }
        }
    }
    Ok(())
}

/// A template error without the dump of the object it was rendering
/// (the template crate appends it: "no field X for {…}").
fn one_line(e: &str) -> &str {
    let e = e.lines().next().unwrap_or_default();
    match e.find(" for ") {
        Some(i) if e.starts_with("no field ") => &e[..i],
        _ => e,
    }
}

/// Prints with `format` when one is given; false when the caller's own
/// table is wanted.
pub fn custom(rows: &[Value], format: Option<&str>) -> Result<bool> {
    match format {
        None => Ok(false),
        Some(f) => {
            print(rows, &parse(f)?)?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(f: &str, v: Value) -> String {
        let Format::Template { tmpl, .. } = parse(f).unwrap() else {
            panic!("not a template")
        };
        tmpl.render(&Context::from(to_g(&v))).unwrap()
    }

    #[test]
    fn fields_functions_and_json() {
        let row = json!({"Names": "web", "Labels": {"a": "1"}, "Args": ["x", "y"]});
        assert_eq!(render("{{.Names}}", row.clone()), "web");
        assert_eq!(render("{{json .Labels}}", row.clone()), r#"{"a":"1"}"#);
        assert_eq!(render("{{join .Args \",\"}}", row.clone()), "x,y");
        assert_eq!(render("{{upper .Names}}", row.clone()), "WEB");
        assert_eq!(render("{{truncate .Names 2}}", row.clone()), "we");
        assert_eq!(render("{{.Names}}\\t{{.Names}}", row), "web\tweb");
    }

    #[test]
    fn values_print_as_go_prints_them() {
        let row = json!({
            "Labels": {"b": "2", "a": "1"}, "Args": ["x", "y"], "Health": null,
            "Mounts": [{"Source": "/s", "RW": true}], "N": 3, "S": "a}}b",
        });
        assert_eq!(render("{{.Labels}}", row.clone()), "map[a:1 b:2]");
        assert_eq!(render("{{.Args}} {{.Health}}", row.clone()), "[x y] <nil>");
        assert_eq!(
            render("{{.Mounts}}", row.clone()),
            "[map[RW:true Source:/s]]"
        );
        // Functions, control, trim markers, declarations and quoted "}}".
        assert_eq!(
            render("{{json .Labels}}", row.clone()),
            r#"{"a":"1","b":"2"}"#
        );
        assert_eq!(
            render(
                "{{range $i, $v := .Args}}{{$i}}={{$v}} {{end}}",
                row.clone()
            ),
            "0=x 1=y "
        );
        assert_eq!(
            render("{{if .N}}n={{.N}}{{else}}none{{end}}", row.clone()),
            "n=3"
        );
        assert_eq!(render("x {{- .N -}} y", row.clone()), "x3y");
        assert_eq!(render("{{$s := .S}}{{$s}}", row.clone()), "a}}b");
        assert_eq!(
            render("{{/* note */}}{{printf \"%s}}\" .S}}", row.clone()),
            "a}}b}}"
        );
        assert_eq!(render("{{.Labels.a}}{{index .Args 1}}", row.clone()), "1y");
        assert_eq!(render("{{printf `a}}b` }}{{.N}}", row), "a}}b3");
    }

    #[test]
    fn missing_fields_are_named_without_the_object() {
        let f = parse("{{.Nope}}").unwrap();
        let e = print(&[serde_json::json!({"Name": "x"})], &f).unwrap_err();
        assert_eq!(e.to_string(), "--format: no field Nope");
    }

    #[test]
    fn bad_templates_are_one_line_errors() {
        let e = parse("{{.Names").err().unwrap().to_string();
        assert!(e.starts_with("--format"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        // The template crate would panic on it.
        let e = parse("{{printf `x\\`}}").err().unwrap().to_string();
        assert!(e.contains("raw string"), "{e}");
    }

    #[test]
    fn table_headers_name_the_fields() {
        assert_eq!(header("{{.ID}}\t{{.Names}}"), "CONTAINER ID\tNAMES");
        assert_eq!(header("{{.RunningFor}} {{.MemUsage}}"), "CREATED MEM USAGE");
        assert_eq!(header("{{json .Labels}}"), "LABELS");
    }
}
