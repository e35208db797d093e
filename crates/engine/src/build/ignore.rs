//! `.dockerignore` / `.containerignore` with Docker's rules
//! (`moby/patternmatcher`): one pattern per line, `#` comments, `!` for
//! an exception, patterns cleaned and taken relative to the context root;
//! `*` and `?` never cross a `/`, `**` matches any number of directories;
//! a path is ignored when the last pattern that matches it or one of its
//! parent directories is not an exception.
//!
//! By hand: globset's and the `ignore` crate's semantics are gitignore's
//! (unanchored names, trailing-slash rules), not Docker's, and a context
//! must include and exclude exactly what `docker build` would.

#[derive(Clone, Debug, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Clone, Debug)]
struct Pattern {
    glob: Vec<char>,
    exception: bool,
}

/// `path` cleaned as Go's filepath.Clean, without a leading `/`.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !path.starts_with('/') {
                    parts.push("..");
                }
            }
            _ => parts.push(p),
        }
    }
    parts.join("/")
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let mut l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let exception = l.starts_with('!');
            if exception {
                l = l[1..].trim();
            }
            let c = clean(l);
            if c.is_empty() {
                continue;
            }
            patterns.push(Pattern {
                glob: c.chars().collect(),
                exception,
            });
        }
        Ignore { patterns }
    }

    /// Whether `rel` (relative to the context root, `/`-separated) is
    /// ignored.
    pub fn ignored(&self, rel: &str) -> bool {
        let rel = clean(rel);
        if rel.is_empty() {
            return false;
        }
        let path: Vec<char> = rel.chars().collect();
        let mut parents = Vec::new();
        for (i, c) in path.iter().enumerate() {
            if *c == '/' {
                parents.push(&path[..i]);
            }
        }
        let mut ignored = false;
        for p in &self.patterns {
            let hit = glob(&p.glob, &path) || parents.iter().any(|d| glob(&p.glob, d));
            if hit {
                ignored = !p.exception;
            }
        }
        ignored
    }

    /// Whether an exception might re-include something under the ignored
    /// directory `rel` (then its contents must still be walked).
    pub fn may_reinclude_under(&self, rel: &str) -> bool {
        let rel = clean(rel);
        self.patterns.iter().any(|p| {
            p.exception && {
                let g: String = p.glob.iter().collect();
                g.contains("**") || g.starts_with(&format!("{rel}/")) || g.contains(['*', '?', '['])
            }
        })
    }
}

/// Go's filepath.Match plus `**` (any number of path elements).
fn glob(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') if p.get(1) == Some(&'*') => {
            // `**/` may also match nothing at all.
            let rest = &p[2..];
            let rest_after_slash = rest.strip_prefix(&['/']).unwrap_or(rest);
            if glob(rest_after_slash, s) {
                return true;
            }
            (0..=s.len()).any(|i| glob(rest, &s[i..]))
        }
        Some('*') => {
            let rest = &p[1..];
            for i in 0..=s.len() {
                if glob(rest, &s[i..]) {
                    return true;
                }
                if i < s.len() && s[i] == '/' {
                    break;
                }
            }
            false
        }
        Some('?') => matches!(s.first(), Some(c) if *c != '/') && glob(&p[1..], &s[1..]),
        Some('[') => {
            let Some(&c) = s.first() else { return false };
            if c == '/' {
                return false;
            }
            let mut i = 1;
            let negate = matches!(p.get(1), Some('^') | Some('!'));
            if negate {
                i += 1;
            }
            let mut hit = false;
            let mut first = true;
            while i < p.len() && (first || p[i] != ']') {
                first = false;
                let mut lo = p[i];
                if lo == '\\' && i + 1 < p.len() {
                    i += 1;
                    lo = p[i];
                }
                let mut hi = lo;
                if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|c| *c != ']') {
                    hi = p[i + 2];
                    i += 2;
                }
                if lo <= c && c <= hi {
                    hit = true;
                }
                i += 1;
            }
            if i >= p.len() {
                return false; // a malformed class matches nothing (Go: error)
            }
            hit != negate && glob(&p[i + 1..], &s[1..])
        }
        Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(c) => s.first() == Some(c) && glob(&p[1..], &s[1..]),
    }
}

/// Whether a COPY source pattern has wildcards.
pub fn has_wildcards(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Matches one path against a COPY source pattern (filepath.Match).
pub fn matches(pattern: &str, path: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = path.chars().collect();
    glob(&p, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_rules() {
        let i = Ignore::parse(
            "# comment\n*.log\n!keep.log\nsecret\n/build/**\n**/tmp\n docs/*.md \n![a-c].txt\n",
        );
        assert!(i.ignored("x.log"));
        assert!(!i.ignored("keep.log"));
        assert!(!i.ignored("sub/x.log"), "* does not cross /");
        assert!(i.ignored("secret"));
        assert!(i.ignored("secret/inner/file"), "a parent matches");
        assert!(i.ignored("build/a/b"));
        assert!(i.ignored("tmp") && i.ignored("a/b/tmp") && i.ignored("a/tmp/f"));
        assert!(i.ignored("docs/x.md") && !i.ignored("docs/sub/x.md"));
        assert!(!i.ignored("src/main.rs"));
        assert!(!i.ignored("b.txt"));
        let last_wins = Ignore::parse("!a\na\n");
        assert!(last_wins.ignored("a"));
        let except = Ignore::parse("dir\n!dir/keep\n");
        assert!(except.ignored("dir/other") && !except.ignored("dir/keep"));
        assert!(except.may_reinclude_under("dir"));
    }

    #[test]
    fn clean_is_gos() {
        assert_eq!(clean("/a/./b/../c/"), "a/c");
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean("/../x"), "x");
        assert_eq!(clean("."), "");
        assert!(matches("*.txt", "a.txt") && !matches("*.txt", "d/a.txt"));
        assert!(matches("f?[0-9]", "fa7"));
    }
}
