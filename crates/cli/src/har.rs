//! HAR recordings (browser "Save all as HAR") turned into a weighted request
//! mix: identical requests are counted (the count becomes the weight),
//! static assets can be left out, and one origin is kept (the busiest, or the
//! one asked for); what was left out is said in `notes`.

use std::collections::BTreeMap;
use std::path::Path;

use chokepoint_engine::RequestSpec;
use serde_json::Value;

/// How to read a recording.
#[derive(Debug, Clone, Default)]
pub struct HarOptions {
    /// Leave out images, fonts, stylesheets, scripts and media.
    pub exclude_static: bool,
    /// Keep this origin (`https://host[:port]`) instead of the busiest one.
    pub origin: Option<String>,
}

/// One distinct request of the recording.
#[derive(Debug, Clone, PartialEq)]
pub struct HarRequest {
    /// Unique name (`METHOD path`, numbered when repeated with other bodies).
    pub name: String,
    /// Method.
    pub method: String,
    /// Path and query, absolute on the origin.
    pub path: String,
    /// Headers as recorded, less those the load generator sets itself.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
    /// How many times it was recorded.
    pub count: u32,
}

/// A recording reduced to one origin's distinct requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// `scheme://host[:port]/`.
    pub base_url: String,
    /// Distinct requests in order of first appearance.
    pub requests: Vec<HarRequest>,
    /// What was left out, one line each (never a header value).
    pub notes: Vec<String>,
}

impl Converted {
    /// The requests as engine specs, weighted by count.
    pub fn specs(&self) -> Vec<RequestSpec> {
        self.requests
            .iter()
            .map(|r| RequestSpec {
                name: r.name.clone(),
                method: r.method.clone(),
                path: r.path.clone(),
                headers: r.headers.clone(),
                body: r.body.clone().into_bytes(),
                weight: r.count,
            })
            .collect()
    }
}

/// Headers a replay must not copy: the generator sets them (Host, lengths,
/// connection management), or they are HTTP/2 pseudo-headers.
fn skipped_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with(':')
        || matches!(
            n.as_str(),
            "host"
                | "content-length"
                | "connection"
                | "keep-alive"
                | "transfer-encoding"
                | "te"
                | "upgrade"
                | "proxy-connection"
                | "trailer"
        )
}

const STATIC_EXTENSIONS: [&str; 22] = [
    "js", "mjs", "css", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "avif", "bmp", "woff",
    "woff2", "ttf", "otf", "eot", "map", "mp4", "webm", "mp3", "wasm",
];

/// Whether a recorded request fetched a static asset (by extension or by the
/// response's content type).
fn is_static(path: &str, response_type: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let ext = path
        .rsplit('/')
        .next()
        .and_then(|last| last.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    if ext.is_some_and(|e| STATIC_EXTENSIONS.contains(&e.as_str())) {
        return true;
    }
    let t = response_type.to_ascii_lowercase();
    [
        "image/",
        "font/",
        "video/",
        "audio/",
        "text/css",
        "javascript",
    ]
    .iter()
    .any(|p| t.contains(p))
}

/// Splits `scheme://authority/path?q` into (origin, path-and-query).
fn split_url(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let default_port = if scheme == "http" { ":80" } else { ":443" };
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    let path = path.split('#').next().unwrap_or("");
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    };
    Some((format!("{scheme}://{authority}"), path))
}

/// Reads and converts a HAR file. Errors name the file and the entry/field.
pub fn load(path: &Path, options: &HarOptions) -> Result<Converted, String> {
    let shown = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read HAR file {shown}: {e}"))?;
    convert(&text, options).map_err(|e| {
        // JSON syntax errors lead with `line:column:`.
        if e.starts_with(|c: char| c.is_ascii_digit()) {
            format!("{shown}:{e}")
        } else {
            format!("{shown}: {e}")
        }
    })
}

fn field<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a Value, String> {
    v.get(key)
        .ok_or_else(|| format!("{at}: missing field `{key}`"))
}

fn string<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a str, String> {
    field(v, key, at)?
        .as_str()
        .ok_or_else(|| format!("{at}.{key}: expected a string"))
}

/// Converts HAR text (see [`load`]).
pub fn convert(text: &str, options: &HarOptions) -> Result<Converted, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| {
        let m = e.to_string();
        let m = m.rsplit_once(" at line ").map_or(m.as_str(), |(m, _)| m);
        format!("{}:{}: not valid JSON: {m}", e.line(), e.column())
    })?;
    let entries = field(&root, "log", "HAR")?;
    let entries = field(entries, "entries", "log")?
        .as_array()
        .ok_or("log.entries: expected an array")?;
    if entries.is_empty() {
        return Err("log.entries: the recording has no requests".into());
    }
    struct Seen {
        origin: String,
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: String,
        is_static: bool,
    }
    let mut seen = Vec::new();
    let mut skipped_schemes = 0usize;
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("log.entries[{i}].request");
        let request = field(entry, "request", &format!("log.entries[{i}]"))?;
        let method = string(request, "method", &at)?.trim().to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(format!("{at}.method: `{method}` is not an HTTP method"));
        }
        let url = string(request, "url", &at)?;
        let Some((origin, path)) = split_url(url) else {
            // data:, blob:, ws:, chrome-extension: and the like cannot be replayed.
            skipped_schemes += 1;
            continue;
        };
        let mut headers = Vec::new();
        if let Some(list) = request.get("headers") {
            let list = list
                .as_array()
                .ok_or_else(|| format!("{at}.headers: expected an array"))?;
            for (j, h) in list.iter().enumerate() {
                let hat = format!("{at}.headers[{j}]");
                let name = string(h, "name", &hat)?;
                let value = string(h, "value", &hat)?;
                if skipped_header(name) {
                    continue;
                }
                crate::units::parse_header(&format!("{name}: {value}"))
                    .map_err(|e| format!("{hat}: {e}"))?;
                headers.push((name.to_string(), value.to_string()));
            }
        }
        let body = match request.get("postData") {
            Some(post) if !post.is_null() => match post.get("text").and_then(Value::as_str) {
                Some(t) => t.to_string(),
                None => form_body(post, &at)?,
            },
            _ => String::new(),
        };
        let response_type = entry
            .pointer("/response/content/mimeType")
            .and_then(Value::as_str)
            .unwrap_or("");
        seen.push(Seen {
            is_static: is_static(&path, response_type),
            origin,
            method,
            path,
            headers,
            body,
        });
    }
    let mut notes = Vec::new();
    if skipped_schemes > 0 {
        notes.push(format!(
            "{skipped_schemes} entries with URLs that are not http(s) left out"
        ));
    }
    if options.exclude_static {
        let before = seen.len();
        seen.retain(|s| !s.is_static);
        if before > seen.len() {
            notes.push(format!(
                "{} static assets (images, fonts, stylesheets, scripts) left out",
                before - seen.len()
            ));
        }
    }
    let mut by_origin: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &seen {
        *by_origin.entry(s.origin.as_str()).or_default() += 1;
    }
    let origin = match &options.origin {
        Some(wanted) => {
            let wanted = split_url(wanted)
                .map(|(o, _)| o)
                .ok_or_else(|| format!("--origin `{wanted}`: expected http(s)://host[:port]"))?;
            if !by_origin.contains_key(wanted.as_str()) {
                return Err(format!(
                    "no request to {wanted}; origins recorded: {}",
                    by_origin.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            wanted
        }
        None => by_origin
            .iter()
            .max_by_key(|(o, n)| (**n, std::cmp::Reverse(**o)))
            .map(|(o, _)| o.to_string())
            .ok_or("no replayable http(s) request left in the recording")?,
    };
    let others: Vec<String> = by_origin
        .iter()
        .filter(|(o, _)| **o != origin)
        .map(|(o, n)| format!("{o} ({n})"))
        .collect();
    if !others.is_empty() {
        notes.push(format!(
            "a scenario has one origin: kept {origin}, left out {} requests to {} (choose with --origin): {}",
            seen.len() - by_origin[origin.as_str()],
            others.len(),
            others.join(", ")
        ));
    }
    let mut requests: Vec<HarRequest> = Vec::new();
    for s in seen.into_iter().filter(|s| s.origin == origin) {
        if let Some(r) = requests
            .iter_mut()
            .find(|r| r.method == s.method && r.path == s.path && r.body == s.body)
        {
            r.count += 1;
            continue;
        }
        let base = format!("{} {}", s.method, s.path.split('?').next().unwrap_or("/"));
        let same = requests
            .iter()
            .filter(|r| r.name == base || r.name.starts_with(&format!("{base} #")))
            .count();
        let name = if same == 0 {
            base
        } else {
            format!("{base} #{}", same + 1)
        };
        requests.push(HarRequest {
            name,
            method: s.method,
            path: s.path,
            headers: s.headers,
            body: s.body,
            count: 1,
        });
    }
    Ok(Converted {
        base_url: format!("{origin}/"),
        requests,
        notes,
    })
}

/// A url-encoded body from `postData.params` (when the recording has no `text`).
fn form_body(post: &Value, at: &str) -> Result<String, String> {
    let Some(params) = post.get("params").and_then(Value::as_array) else {
        return Ok(String::new());
    };
    let mut parts = Vec::new();
    for (k, p) in params.iter().enumerate() {
        let pat = format!("{at}.postData.params[{k}]");
        let name = string(p, "name", &pat)?;
        let value = p.get("value").and_then(Value::as_str).unwrap_or("");
        parts.push(format!("{}={}", encode(name), encode(value)));
    }
    Ok(parts.join("&"))
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(method: &str, url: &str, mime: &str) -> String {
        format!(
            r#"{{"request": {{"method": "{method}", "url": "{url}", "headers": [{{"name": "Authorization", "value": "Bearer s3cret"}}, {{"name": "Host", "value": "x"}}, {{"name": ":authority", "value": "x"}}]}}, "response": {{"content": {{"mimeType": "{mime}"}}}}}}"#
        )
    }

    fn har(entries: &[String]) -> String {
        format!(
            r#"{{"log": {{"version": "1.2", "entries": [{}]}}}}"#,
            entries.join(",")
        )
    }

    #[test]
    fn counts_become_weights_and_one_origin_is_kept() {
        let text = har(&[
            entry(
                "GET",
                "https://api.example.com/items?page=1",
                "application/json",
            ),
            entry(
                "GET",
                "https://api.example.com/items?page=1",
                "application/json",
            ),
            entry(
                "get",
                "https://api.example.com:443/items?page=1",
                "application/json",
            ),
            entry("GET", "https://api.example.com/app.js", "text/javascript"),
            entry("GET", "https://cdn.example.com/logo.png", "image/png"),
            entry("GET", "data:image/png;base64,xx", "image/png"),
        ]);
        let c = convert(&text, &HarOptions::default()).unwrap();
        assert_eq!(c.base_url, "https://api.example.com/");
        assert_eq!(c.requests.len(), 2);
        assert_eq!(c.requests[0].count, 3);
        assert_eq!(c.requests[0].path, "/items?page=1");
        assert_eq!(c.requests[0].name, "GET /items");
        assert_eq!(
            c.requests[0].headers,
            vec![("Authorization".to_string(), "Bearer s3cret".to_string())]
        );
        assert!(
            c.notes.iter().any(|n| n.contains("cdn.example.com (1)")),
            "{:?}",
            c.notes
        );
        assert!(c.notes.iter().all(|n| !n.contains("s3cret")));
        let c = convert(
            &text,
            &HarOptions {
                exclude_static: true,
                origin: None,
            },
        )
        .unwrap();
        assert_eq!(c.requests.len(), 1);
        assert!(
            c.notes.iter().any(|n| n.contains("2 static assets")),
            "{:?}",
            c.notes
        );
    }

    #[test]
    fn malformed_recordings_name_the_field() {
        let e = convert("{\"log\": {}}", &HarOptions::default()).unwrap_err();
        assert_eq!(e, "log: missing field `entries`");
        let e = convert(
            &har(&[r#"{"request": {"url": "http://x/"}}"#.into()]),
            &HarOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e, "log.entries[0].request: missing field `method`");
        let e = convert("{\n  \"log\": ]", &HarOptions::default()).unwrap_err();
        assert!(e.starts_with("2:"), "{e}");
    }
}
