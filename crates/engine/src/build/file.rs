//! The Containerfile (Dockerfile) parser: parser directives, comments,
//! line continuations, instruction flags, the JSON (exec) form and
//! heredocs, into [`Instruction`]s that keep their line numbers.
//!
//! Written here rather than taken from a crate: `dockerfile-parser` (the
//! one maintained Rust parser) has no heredocs, no `# escape` directive
//! and no flags on RUN, and its grammar rejects lines BuildKit accepts;
//! the rest are linters. This follows BuildKit's
//! `frontend/dockerfile/parser` rules; what the instructions mean is in
//! [`super`].

use std::fmt;

/// An instruction's arguments: the JSON array form (`["a", "b"]`), or the
/// rest of the line as written (continuations joined).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Args {
    Json(Vec<String>),
    Shell(String),
}

/// `<<EOF` … `EOF` after an instruction: its body, and whether variables
/// in it are expanded (the delimiter was not quoted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub body: String,
    pub expand: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// The line the instruction starts on (1-based).
    pub line: usize,
    /// Upper case: `RUN`, `COPY`, …
    pub keyword: String,
    /// `--name=value` flags before the arguments (`--name` alone: "true").
    pub flags: Vec<(String, String)>,
    pub args: Args,
    pub heredocs: Vec<Heredoc>,
    /// The instruction as written, continuations joined (for history).
    pub text: String,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The shell form's text, or the JSON form's words joined.
    pub fn rest(&self) -> String {
        match &self.args {
            Args::Shell(s) => s.clone(),
            Args::Json(v) => v.join(" "),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

/// A parsed file: its directives and instructions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Containerfile {
    pub escape: char,
    pub syntax: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// Every instruction Docker knows; anything else is an error naming it.
pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// `# name=value` at the top of the file (before anything else).
fn directive(line: &str) -> Option<(String, String)> {
    let l = line.trim().strip_prefix('#')?.trim();
    let (k, v) = l.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((k.to_ascii_lowercase(), v.trim().to_string()))
}

/// The line without its continuation escape, if it ends with one.
fn continued(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end();
    t.strip_suffix(escape)
}

/// Heredoc openers in an instruction's text (`<<EOF`, `<<-EOF`, `<<"EOF"`,
/// `<<'EOF'`): (name, strip leading tabs, expand).
fn heredoc_openers(s: &str) -> Vec<(String, bool, bool)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < b.len() {
        if &b[i..i + 2] != b"<<" || (i > 0 && b[i - 1] == b'<') {
            i += 1;
            continue;
        }
        let mut j = i + 2;
        let strip = b.get(j) == Some(&b'-');
        if strip {
            j += 1;
        }
        let quote = match b.get(j) {
            Some(&q @ (b'"' | b'\'')) => {
                j += 1;
                Some(q)
            }
            _ => None,
        };
        let start = j;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        let name = &s[start..j];
        let closed = match quote {
            Some(q) => b.get(j) == Some(&q),
            None => true,
        };
        if !name.is_empty() && closed && !name.starts_with(|c: char| c.is_ascii_digit()) {
            out.push((name.to_string(), strip, quote.is_none()));
        }
        i = j.max(i + 2);
    }
    out
}

/// Leading `--flag[=value]` words of an instruction's text.
fn split_flags(mut s: &str) -> (Vec<(String, String)>, &str) {
    let mut flags = Vec::new();
    loop {
        let t = s.trim_start();
        let Some(rest) = t.strip_prefix("--") else {
            return (flags, t);
        };
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        if word.is_empty() {
            return (flags, t);
        }
        let (k, v) = word.split_once('=').unwrap_or((word, "true"));
        flags.push((k.to_string(), v.to_string()));
        s = &rest[end..];
    }
}

/// The JSON form, if `s` is a JSON array of strings.
fn json_form(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

pub fn parse(text: &str) -> Result<Containerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut cf = Containerfile {
        escape: '\\',
        ..Default::default()
    };
    let mut i = 0;
    // Parser directives: only at the very top, each at most once.
    let mut seen = Vec::new();
    while i < lines.len() {
        let Some((k, v)) = directive(lines[i]) else {
            break;
        };
        if seen.contains(&k) {
            return Err(ParseError {
                line: i + 1,
                msg: format!("the parser directive {k} appears twice"),
            });
        }
        match k.as_str() {
            "escape" => {
                cf.escape = match v.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(ParseError {
                            line: i + 1,
                            msg: format!("invalid escape token {v:?}: only \\ or ` may be used"),
                        })
                    }
                }
            }
            "syntax" => cf.syntax = Some(v),
            _ => {}
        }
        seen.push(k);
        i += 1;
    }
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() || is_comment(line) {
            i += 1;
            continue;
        }
        let start = i;
        // Join continuations; comment lines and empty lines inside are
        // dropped (as BuildKit does).
        let mut joined = String::new();
        let mut cur = line;
        loop {
            match continued(cur, cf.escape) {
                Some(part) => {
                    joined.push_str(part);
                    i += 1;
                    while i < lines.len() && (is_comment(lines[i]) || lines[i].trim().is_empty()) {
                        i += 1;
                    }
                    if i >= lines.len() {
                        break;
                    }
                    cur = lines[i];
                }
                None => {
                    joined.push_str(cur);
                    i += 1;
                    break;
                }
            }
        }
        let t = joined.trim_start();
        let kw_end = t.find(char::is_whitespace).unwrap_or(t.len());
        let keyword = t[..kw_end].to_ascii_uppercase();
        let rest = t[kw_end..].trim();
        if !KEYWORDS.contains(&keyword.as_str()) {
            return Err(ParseError {
                line: start + 1,
                msg: format!("unknown instruction: {}", &t[..kw_end]),
            });
        }
        let (flags, after) = if matches!(keyword.as_str(), "ONBUILD") {
            (Vec::new(), rest)
        } else {
            split_flags(rest)
        };
        let mut heredocs = Vec::new();
        if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
            for (name, strip, expand) in heredoc_openers(after) {
                let mut body = String::new();
                let mut closed = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let l = if strip { l.trim_start_matches('\t') } else { l };
                    if l == name {
                        closed = true;
                        break;
                    }
                    body.push_str(l);
                    body.push('\n');
                }
                if !closed {
                    return Err(ParseError {
                        line: start + 1,
                        msg: format!("the heredoc <<{name} is not closed by a line {name}"),
                    });
                }
                heredocs.push(Heredoc { name, body, expand });
            }
        }
        let args = match json_form(after) {
            Some(v) if heredocs.is_empty() => Args::Json(v),
            _ => Args::Shell(after.to_string()),
        };
        if keyword != "RUN"
            && keyword != "CMD"
            && keyword != "ENTRYPOINT"
            && after.is_empty()
            && heredocs.is_empty()
        {
            return Err(ParseError {
                line: start + 1,
                msg: format!("{keyword} requires at least one argument"),
            });
        }
        cf.instructions.push(Instruction {
            line: start + 1,
            keyword,
            flags,
            args,
            heredocs,
            text: t.to_string(),
        });
    }
    Ok(cf)
}

/// An ONBUILD trigger (its text) as an instruction, at `line`.
pub fn parse_trigger(text: &str, line: usize) -> Result<Instruction, ParseError> {
    let mut cf = parse(text).map_err(|e| ParseError { line, msg: e.msg })?;
    match cf.instructions.len() {
        1 => {
            let mut i = cf.instructions.remove(0);
            i.line = line;
            if matches!(i.keyword.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(ParseError {
                    line,
                    msg: format!("{} is not allowed as an ONBUILD trigger", i.keyword),
                });
            }
            Ok(i)
        }
        _ => Err(ParseError {
            line,
            msg: "ONBUILD takes exactly one instruction".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(cf: &Containerfile) -> Vec<&str> {
        cf.instructions.iter().map(|i| i.keyword.as_str()).collect()
    }

    #[test]
    fn continuations_comments_and_lines() {
        let cf = parse(
            "# a comment\nFROM busybox AS b\n\nRUN echo a \\\n# inside\n   && echo b\ncmd [\"sh\", \"-c\", \"x\"]\n",
        )
        .unwrap();
        assert_eq!(kw(&cf), ["FROM", "RUN", "CMD"]);
        assert_eq!(cf.instructions[0].line, 2);
        assert_eq!(cf.instructions[1].line, 4);
        assert_eq!(
            cf.instructions[1].args,
            Args::Shell("echo a    && echo b".into())
        );
        assert_eq!(cf.instructions[2].line, 7);
        assert_eq!(
            cf.instructions[2].args,
            Args::Json(vec!["sh".into(), "-c".into(), "x".into()])
        );
    }

    #[test]
    fn directives_only_at_the_top() {
        let cf = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\nRUN a `\n b\n").unwrap();
        assert_eq!(cf.escape, '`');
        assert_eq!(cf.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(cf.instructions[1].args, Args::Shell("a  b".into()));
        // After an instruction, `# escape=` is a comment.
        let cf = parse("FROM x\n# escape=`\nRUN a \\\n b\n").unwrap();
        assert_eq!(cf.escape, '\\');
        assert_eq!(cf.instructions.len(), 2);
        assert!(parse("# escape=x\nFROM a\n").is_err());
    }

    #[test]
    fn flags_and_forms() {
        let cf = parse(
            "COPY --from=build --chown=1:2 --link a b\nRUN [\"echo\", \"hi\"]\nRUN [not json\n",
        )
        .unwrap();
        let c = &cf.instructions[0];
        assert_eq!(c.flag("from"), Some("build"));
        assert_eq!(c.flag("chown"), Some("1:2"));
        assert_eq!(c.flag("link"), Some("true"));
        assert_eq!(c.args, Args::Shell("a b".into()));
        assert_eq!(
            cf.instructions[1].args,
            Args::Json(vec!["echo".into(), "hi".into()])
        );
        assert_eq!(cf.instructions[2].args, Args::Shell("[not json".into()));
    }

    #[test]
    fn heredocs() {
        let cf = parse(
            "FROM x\nRUN <<EOF\necho one\nFROM not-an-instruction\nEOF\nCOPY <<-\"A\" /a\n\tliteral $X\n\tA\nCMD x\n",
        )
        .unwrap();
        assert_eq!(kw(&cf), ["FROM", "RUN", "COPY", "CMD"]);
        let r = &cf.instructions[1];
        assert_eq!(r.heredocs[0].body, "echo one\nFROM not-an-instruction\n");
        assert!(r.heredocs[0].expand);
        let c = &cf.instructions[2];
        assert_eq!(c.heredocs[0].name, "A");
        assert_eq!(c.heredocs[0].body, "literal $X\n");
        assert!(!c.heredocs[0].expand);
        assert_eq!(cf.instructions[3].line, 9);
        let e = parse("FROM x\nRUN <<EOF\nno end\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("FROM x\n\nFROBNICATE y\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.msg.contains("unknown instruction: FROBNICATE"), "{e}");
        let e = parse("FROM x\nCOPY\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse_trigger("FROM y", 4).is_err());
        assert_eq!(parse_trigger("RUN a", 4).unwrap().line, 4);
    }
}
