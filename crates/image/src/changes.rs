//! Dockerfile instructions that change only an image's config (`import
//! --change`, and later `commit --change`): CMD, ENTRYPOINT, ENV, EXPOSE,
//! LABEL, USER, WORKDIR, STOPSIGNAL and VOLUME, with Docker's exec (JSON)
//! and shell forms.

use serde_json::{json, Map, Value};

/// Apply one instruction to `config` (the image config's `config` object).
pub fn apply(config: &mut Map<String, Value>, change: &str) -> Result<(), String> {
    let change = change.trim();
    let (word, rest) = change
        .split_once(char::is_whitespace)
        .map(|(w, r)| (w, r.trim()))
        .unwrap_or((change, ""));
    let bad = |why: &str| format!("change {change:?}: {why}");
    if rest.is_empty() {
        return Err(bad("the instruction needs an argument"));
    }
    match word.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.insert("Cmd".into(), command(rest));
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), command(rest));
        }
        "ENV" => {
            let pairs = key_values(rest).ok_or_else(|| bad("ENV KEY=VALUE… or ENV KEY VALUE"))?;
            let env = config.entry("Env").or_insert_with(|| json!([]));
            let list = env.as_array_mut().ok_or_else(|| bad("Env is not a list"))?;
            for (k, v) in pairs {
                list.retain(|e| e.as_str().and_then(|e| e.split_once('=')).map(|x| x.0) != Some(k.as_str()));
                list.push(Value::String(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            let pairs = key_values(rest).ok_or_else(|| bad("LABEL KEY=VALUE…"))?;
            let labels = config.entry("Labels").or_insert_with(|| json!({}));
            let m = labels.as_object_mut().ok_or_else(|| bad("Labels is not an object"))?;
            for (k, v) in pairs {
                m.insert(k, Value::String(v));
            }
        }
        "EXPOSE" => {
            let ports = config.entry("ExposedPorts").or_insert_with(|| json!({}));
            let m = ports.as_object_mut().ok_or_else(|| bad("ExposedPorts is not an object"))?;
            for p in rest.split_whitespace() {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                if port.parse::<u16>().map_or(true, |n| n == 0) || !matches!(proto, "tcp" | "udp") {
                    return Err(bad(&format!("{p:?} is not PORT[/tcp|/udp]")));
                }
                m.insert(format!("{port}/{proto}"), json!({}));
            }
        }
        "VOLUME" => {
            let paths: Vec<String> = match serde_json::from_str::<Vec<String>>(rest) {
                Ok(v) => v,
                Err(_) => rest.split_whitespace().map(str::to_string).collect(),
            };
            let vols = config.entry("Volumes").or_insert_with(|| json!({}));
            let m = vols.as_object_mut().ok_or_else(|| bad("Volumes is not an object"))?;
            for p in paths {
                if !p.starts_with('/') {
                    return Err(bad(&format!("{p:?} is not an absolute path")));
                }
                m.insert(p, json!({}));
            }
        }
        "USER" => {
            config.insert("User".into(), Value::String(rest.into()));
        }
        "WORKDIR" => {
            if !rest.starts_with('/') {
                return Err(bad("the directory must be absolute"));
            }
            config.insert("WorkingDir".into(), Value::String(rest.into()));
        }
        "STOPSIGNAL" => {
            config.insert("StopSignal".into(), Value::String(rest.into()));
        }
        _ => {
            return Err(bad(
                "not an instruction that changes the config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, STOPSIGNAL, VOLUME)",
            ))
        }
    }
    Ok(())
}

/// The exec form (a JSON list), else the shell form under `/bin/sh -c`.
fn command(rest: &str) -> Value {
    match serde_json::from_str::<Vec<String>>(rest) {
        Ok(v) => json!(v),
        Err(_) => json!(["/bin/sh", "-c", rest]),
    }
}

/// `K=V K2="V 2"` (quotes kept together), or the old `K V` form.
fn key_values(rest: &str) -> Option<Vec<(String, String)>> {
    if !rest.split_whitespace().next()?.contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace)?;
        return Some(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut words = Vec::new();
    for c in rest.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (_, c) => word.push(c),
        }
    }
    if quote.is_some() {
        return None;
    }
    if !word.is_empty() {
        words.push(word);
    }
    for w in words {
        let (k, v) = w.split_once('=')?;
        if k.is_empty() {
            return None;
        }
        out.push((k.to_string(), v.to_string()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> Value {
        let mut m = Map::new();
        for c in changes {
            apply(&mut m, c).unwrap();
        }
        Value::Object(m)
    }

    #[test]
    fn instructions_change_the_config_as_docker_does() {
        let c = applied(&[
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /init --fast",
            "ENV A=1 B=\"two words\"",
            "ENV A 3",
            "EXPOSE 80 53/udp",
            "LABEL team=core",
            "USER 1000:1000",
            "WORKDIR /srv",
            "STOPSIGNAL SIGINT",
            "VOLUME /data /cache",
        ]);
        assert_eq!(c["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/init --fast"]));
        assert_eq!(c["Env"], json!(["B=two words", "A=3"]));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Labels"]["team"], "core");
        assert_eq!(c["User"], "1000:1000");
        assert_eq!(c["WorkingDir"], "/srv");
        assert_eq!(c["StopSignal"], "SIGINT");
        assert_eq!(c["Volumes"], json!({"/data": {}, "/cache": {}}));
    }

    #[test]
    fn bad_changes_say_what_is_wrong() {
        for (c, says) in [
            ("RUN echo", "not an instruction"),
            ("CMD", "needs an argument"),
            ("EXPOSE http", "PORT"),
            ("EXPOSE 80/sctp", "PORT"),
            ("WORKDIR rel", "absolute"),
            ("VOLUME data", "absolute"),
            ("ENV A=\"open", "ENV KEY"),
        ] {
            let e = apply(&mut Map::new(), c).unwrap_err();
            assert!(e.contains(says) && e.starts_with("change "), "{c}: {e}");
        }
    }
}
