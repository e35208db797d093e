//! Files by URL (a build's `ADD https://…`): one HTTP(S) GET streamed to a
//! file, through the reqwest the registry client already links.

use std::io::Write;
use std::path::Path;

/// What a download gave: the file name the URL suggests (its path's last
/// part, as Docker names it) and the size.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub name: String,
    pub size: u64,
}

/// GETs `url` into the new file `to`; any failure (a status other than
/// 2xx, a network error) is one line naming the URL.
pub fn download(url: &str, to: &Path) -> Result<Downloaded, String> {
    let bad = |e: &dyn std::fmt::Display| format!("{url}: {e}");
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(&"only http and https URLs can be fetched"));
    }
    let name = parsed
        .path_segments()
        .and_then(|mut s| s.rfind(|p| !p.is_empty()).map(str::to_string))
        .unwrap_or_else(|| "index.html".into());
    // reqwest's TLS setup panics on a host without CA certificates: one
    // line instead (the panic's own report silenced meanwhile).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let made = std::panic::catch_unwind(|| {
        reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
    });
    std::panic::set_hook(hook);
    let client = match made {
        Ok(c) => c.map_err(|e| bad(&e))?,
        Err(_) => {
            return Err(bad(
                &"no CA certificates on this host (install the ca-certificates package)",
            ))
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| bad(&e))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| bad(&e))?;
    let size = rt.block_on(async {
        let mut resp = client
            .get(parsed)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| bad(&chain(&e)))?;
        let mut size = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| bad(&chain(&e)))? {
            file.write_all(&chunk).map_err(|e| bad(&e))?;
            size += chunk.len() as u64;
        }
        Ok::<u64, String>(size)
    })?;
    Ok(Downloaded { name, size })
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}
