//! JSON decoding whose errors name the field, as a user reads config.json:
//! `process.args: invalid type: string "sh", expected a sequence` instead of
//! serde_json's bare `… at line 1 column 96`.

use serde::de::DeserializeOwned;
use serde_json::error::Category;

/// Decodes `data`; the error is one line starting with the JSON path.
pub fn from_slice<T: DeserializeOwned>(data: &[u8]) -> Result<T, String> {
    // The plain decoder first: tracking the path costs on every start, and
    // only a failure needs it (decoding is deterministic, so the second
    // pass fails the same way and says where).
    if let Ok(v) = serde_json::from_slice(data) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let msg = describe(e.inner());
        if path.is_empty() || path == "." {
            msg
        } else {
            format!("{path}: {msg}")
        }
    })
}

/// serde_json's message without its position (the path says where) unless
/// the JSON itself is malformed, and oci-spec's capability error in words.
fn describe(e: &serde_json::Error) -> String {
    let mut m = e.to_string();
    if matches!(e.classify(), Category::Data) {
        if let Some(i) = m.rfind(" at line ") {
            m.truncate(i);
        }
        // oci-spec: "no variant for CAP_FLY (converted to FLY)".
        if let Some(name) = m
            .strip_prefix("no variant for ")
            .and_then(|r| r.split(" (converted").next())
        {
            return format!("unknown capability {name}");
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::Spec;

    use super::from_slice;

    #[test]
    fn errors_name_the_json_path() {
        let e = from_slice::<Spec>(
            br#"{"ociVersion": "1.0.2", "process": {"cwd": "/", "args": "sh"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            r#"process.args: invalid type: string "sh", expected a sequence"#
        );

        let e = from_slice::<Spec>(
            br#"{"ociVersion": "1.0.2", "process": {"cwd": "/", "args": ["sh"],
                "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_FLY"]}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "process.capabilities.bounding[3]: unknown capability CAP_FLY"
        );

        // Malformed JSON keeps its position: there is no field to name.
        let e = from_slice::<Spec>(br#"{"ociVersion": "#).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }
}
