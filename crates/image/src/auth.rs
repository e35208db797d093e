//! Registry credentials in Docker's config format
//! (`{"auths": {"registry": {"auth": base64("user:password")}}}`), kept in a
//! file of mode 0600. Other keys in the file are preserved.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// Errors reading or writing the credentials file.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("credentials file {path}: {reason}")]
    Format { path: PathBuf, reason: String },
    /// The HTTP client could not be made (e.g. no CA certificates).
    #[error("set up the registry client: {0}")]
    Client(String),
}

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

const DOCKER_HUB_KEYS: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "https://index.docker.io/v1/",
    "registry-1.docker.io",
];

/// The key a registry is stored under: the host, as written; Docker Hub's
/// aliases are one registry.
fn key(registry: &str) -> String {
    let r = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let r = r
        .strip_suffix("/v1")
        .or_else(|| r.strip_suffix("/v2"))
        .unwrap_or(r);
    if DOCKER_HUB_KEYS.contains(&registry) || DOCKER_HUB_KEYS.contains(&r) {
        "docker.io".to_owned()
    } else {
        r.to_owned()
    }
}

fn read(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>, AuthError> {
    match fs::read(path) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Default::default()),
        Ok(b) => serde_json::from_slice(&b).map_err(|e| AuthError::Format {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Default::default()),
        Err(source) => Err(AuthError::Io {
            op: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

fn write(path: &Path, v: &serde_json::Map<String, serde_json::Value>) -> Result<(), AuthError> {
    let io = |op| {
        move |source| AuthError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io("create directory for"))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    // Created 0600 from the start: the secret never sits in a readable file.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("write"))?;
    let bytes = serde_json::to_vec_pretty(v).expect("json");
    let r = f
        .write_all(&bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r.map_err(io("write"))
}

/// Stores credentials for `registry` (`hako login`).
pub fn login(path: &Path, registry: &str, creds: &Credentials) -> Result<(), AuthError> {
    let mut v = read(path)?;
    let auths = v
        .entry("auths")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    let Some(auths) = auths.as_object_mut() else {
        return Err(AuthError::Format {
            path: path.to_owned(),
            reason: "\"auths\" is not an object".into(),
        });
    };
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.username, creds.password));
    auths.insert(key(registry), serde_json::json!({ "auth": token }));
    write(path, &v)
}

/// Forgets credentials for `registry` (`hako logout`); returns whether
/// there were any.
pub fn logout(path: &Path, registry: &str) -> Result<bool, AuthError> {
    let mut v = read(path)?;
    let k = key(registry);
    let Some(auths) = v.get_mut("auths").and_then(|a| a.as_object_mut()) else {
        return Ok(false);
    };
    let before = auths.len();
    auths.retain(|name, _| key(name) != k);
    let removed = auths.len() != before;
    if removed {
        write(path, &v)?;
    }
    Ok(removed)
}

/// Credentials for `registry`, if the file has any.
pub fn lookup(path: &Path, registry: &str) -> Result<Option<Credentials>, AuthError> {
    let v = read(path)?;
    let k = key(registry);
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    for (name, entry) in auths {
        if key(name) != k {
            continue;
        }
        let bad = |reason: &str| AuthError::Format {
            path: path.to_owned(),
            reason: format!("{name}: {reason}"),
        };
        if let (Some(u), Some(p)) = (
            entry.get("username").and_then(|x| x.as_str()),
            entry.get("password").and_then(|x| x.as_str()),
        ) {
            return Ok(Some(Credentials {
                username: u.into(),
                password: p.into(),
            }));
        }
        let Some(auth) = entry.get("auth").and_then(|x| x.as_str()) else {
            continue;
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("\"auth\" is not base64"))?;
        let s = String::from_utf8(raw).map_err(|_| bad("\"auth\" is not UTF-8"))?;
        let (u, p) = s
            .split_once(':')
            .ok_or_else(|| bad("\"auth\" is not user:password"))?;
        return Ok(Some(Credentials {
            username: u.into(),
            password: p.into(),
        }));
    }
    Ok(None)
}

/// The default credentials file: `$XDG_CONFIG_HOME/hako/auth.json` or
/// `~/.config/hako/auth.json` (`/root/.config/...` for root).
pub fn default_auth_file() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("hako/auth.json");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".config/hako/auth.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn login_lookup_logout() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/auth.json");
        let c = Credentials {
            username: "u".into(),
            password: "p:with:colons".into(),
        };
        assert_eq!(lookup(&p, "127.0.0.1:5000").unwrap(), None);
        login(&p, "127.0.0.1:5000", &c).unwrap();
        login(&p, "https://index.docker.io/v1/", &c).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["auths"]["127.0.0.1:5000"]["auth"], "dTpwOndpdGg6Y29sb25z");
        assert_eq!(lookup(&p, "127.0.0.1:5000").unwrap(), Some(c.clone()));
        assert_eq!(lookup(&p, "docker.io").unwrap(), Some(c.clone()));
        assert_eq!(lookup(&p, "quay.io").unwrap(), None);
        assert!(logout(&p, "127.0.0.1:5000").unwrap());
        assert!(!logout(&p, "127.0.0.1:5000").unwrap());
        assert_eq!(lookup(&p, "127.0.0.1:5000").unwrap(), None);
        assert!(format!("{c:?}").contains("redacted"));
    }

    #[test]
    fn keeps_other_keys_and_reads_docker_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        fs::write(
            &p,
            r#"{"credsStore":"x","auths":{"https://index.docker.io/v1/":{"auth":"YTpi"}}}"#,
        )
        .unwrap();
        assert_eq!(
            lookup(&p, "docker.io").unwrap(),
            Some(Credentials {
                username: "a".into(),
                password: "b".into()
            })
        );
        logout(&p, "docker.io").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["credsStore"], "x");
    }
}
