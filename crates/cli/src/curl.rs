//! curl command lines (as users paste them, e.g. "Copy as cURL") turned into
//! one request: shell-style quoting, the flags people type (`-X -H -d
//! --data-binary @file -u user:pass -k` and friends), and a clear error for
//! anything else.

use std::path::Path;

use base64::Engine as _;

/// The request a curl command line sends.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CurlRequest {
    /// The URL.
    pub url: String,
    /// Method (`-X`, or implied by `-d`, `-I`).
    pub method: String,
    /// Headers in order (`-H`, `-u`, `-A`, `-e`, `-b`, `--json`, `--compressed`).
    pub headers: Vec<(String, String)>,
    /// Body (`-d` and friends; `@file` read from disk).
    pub body: Vec<u8>,
    /// `-k` / `--insecure`.
    pub insecure: bool,
    /// `--http2` / `--http2-prior-knowledge`.
    pub http2: bool,
    /// The file the whole body came from (`--data-binary @file`), for bodies
    /// that are not text.
    pub body_file: Option<std::path::PathBuf>,
}

/// Splits a command line like a POSIX shell: single quotes, double quotes
/// (with `\"`, `\\`, `\$`, `` \` `` escapes), backslash escapes, and
/// backslash-newline continuations; `$'...'` ANSI-C quotes with `\n`, `\t`,
/// `\\`, `\'`.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => current.push(ch),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '$' if chars.peek() == Some(&'\'') => {
                chars.next();
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => current.push('\n'),
                            Some('t') => current.push('\t'),
                            Some('r') => current.push('\r'),
                            Some(other) => current.push(other),
                            None => return Err("unterminated $'...' quote".into()),
                        },
                        Some(ch) => current.push(ch),
                        None => return Err("unterminated $'...' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => current.push(ch),
                            Some('\n') => {}
                            Some(ch) => {
                                current.push('\\');
                                current.push(ch);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(ch) => current.push(ch),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some('\r') if chars.peek() == Some(&'\n') => {
                    chars.next();
                }
                Some(ch) => {
                    in_word = true;
                    current.push(ch);
                }
                None => return Err("a backslash ends the command".into()),
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

/// Options that take a value.
const WITH_VALUE: [&str; 22] = [
    "-X",
    "--request",
    "-H",
    "--header",
    "-d",
    "--data",
    "--data-raw",
    "--data-ascii",
    "--data-binary",
    "--data-urlencode",
    "--json",
    "-u",
    "--user",
    "-A",
    "--user-agent",
    "-e",
    "--referer",
    "-b",
    "--cookie",
    "--url",
    "-o",
    "--output",
];

/// Options without effect on the request sent (output, progress, redirects).
const IGNORED: [&str; 16] = [
    "-s",
    "--silent",
    "-S",
    "--show-error",
    "-v",
    "--verbose",
    "-i",
    "--include",
    "-L",
    "--location",
    "-f",
    "--fail",
    "--http1.1",
    "-#",
    "--progress-bar",
    "--no-progress-meter",
];

/// Parses curl arguments (with or without the leading `curl`). `base_dir`
/// resolves `@file` arguments.
pub fn parse(words: &[String], base_dir: &Path) -> Result<CurlRequest, String> {
    let mut words: Vec<String> = words.to_vec();
    if words
        .first()
        .is_some_and(|w| w == "curl" || w.ends_with("/curl"))
    {
        words.remove(0);
    }
    // Expand bundled short options (`-sSLk`, `-XPOST`, `-H'...'` after quoting).
    let mut args = Vec::new();
    for w in words {
        // (A non-ASCII second character is no short option: `w[..2]` would
        // cut it; found by the `curl` fuzz target.)
        if w.starts_with('-') && !w.starts_with("--") && w.len() > 2 && w.is_char_boundary(2) {
            let flag = &w[..2];
            if WITH_VALUE.contains(&flag) {
                args.push(flag.to_string());
                args.push(w[2..].to_string());
            } else if w[1..].chars().all(|c| c.is_ascii_alphabetic() || c == '#') {
                let mut rest = w[1..].chars();
                while let Some(c) = rest.next() {
                    let f = format!("-{c}");
                    if WITH_VALUE.contains(&f.as_str()) {
                        args.push(f);
                        let value: String = rest.by_ref().collect();
                        if !value.is_empty() {
                            args.push(value);
                        }
                        break;
                    }
                    args.push(f);
                }
            } else {
                args.push(w);
            }
        } else if let Some((flag, value)) = w
            .split_once('=')
            .filter(|(f, _)| f.starts_with("--") && WITH_VALUE.contains(f))
        {
            args.push(flag.to_string());
            args.push(value.to_string());
        } else {
            args.push(w);
        }
    }
    let mut r = CurlRequest::default();
    let mut method = None;
    let mut data: Vec<Vec<u8>> = Vec::new();
    let mut get = false;
    let mut head = false;
    let mut json = false;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .ok_or_else(|| format!("curl option `{flag}` needs a value"))
        };
        match arg.as_str() {
            "-X" | "--request" => method = Some(value(&arg)?.to_ascii_uppercase()),
            "-H" | "--header" => {
                let h = value(&arg)?;
                let (k, v) = crate::units::parse_header(&h)
                    .map_err(|e| format!("curl option `{arg}`: {e}"))?;
                r.headers.push((k, v));
            }
            "-d" | "--data" | "--data-ascii" => {
                let v = value(&arg)?;
                data.push(read_data(&v, base_dir, true, true)?);
            }
            "--data-binary" => {
                let v = value(&arg)?;
                if let Some(file) = v.strip_prefix('@') {
                    r.body_file = Some(base_dir.join(file));
                }
                data.push(read_data(&v, base_dir, true, false)?);
            }
            "--data-raw" => data.push(value(&arg)?.into_bytes()),
            "--data-urlencode" => {
                let v = value(&arg)?;
                data.push(urlencode_arg(&v, base_dir)?.into_bytes());
            }
            "--json" => {
                let v = value(&arg)?;
                data.push(read_data(&v, base_dir, true, false)?);
                json = true;
            }
            "-u" | "--user" => {
                let v = value(&arg)?;
                if !v.contains(':') {
                    return Err(format!(
                        "curl option `{arg}`: give user:password (curl would prompt for the password)"
                    ));
                }
                let token = base64::engine::general_purpose::STANDARD.encode(v.as_bytes());
                r.headers
                    .push(("Authorization".into(), format!("Basic {token}")));
            }
            "-A" | "--user-agent" => r.headers.push(("User-Agent".into(), value(&arg)?)),
            "-e" | "--referer" => r.headers.push(("Referer".into(), value(&arg)?)),
            "-b" | "--cookie" => {
                let v = value(&arg)?;
                if !v.contains('=') {
                    return Err(format!(
                        "curl option `{arg} {v}`: reading cookies from a cookie-jar file is not supported; give NAME=VALUE"
                    ));
                }
                r.headers.push(("Cookie".into(), v));
            }
            "--url" => set_url(&mut r, value(&arg)?)?,
            "-o" | "--output" => {
                value(&arg)?;
            }
            "-k" | "--insecure" => r.insecure = true,
            "--http2" | "--http2-prior-knowledge" => r.http2 = true,
            "--compressed" => r
                .headers
                .push(("Accept-Encoding".into(), "gzip, deflate".into())),
            "-G" | "--get" => get = true,
            "-I" | "--head" => head = true,
            "-F" | "--form" => {
                return Err(format!(
                    "curl option `{arg}` (multipart forms) is not supported; send the body with --data-binary @file and a Content-Type header"
                ))
            }
            a if IGNORED.contains(&a) => {}
            a if a.starts_with('-') && a.len() > 1 => {
                return Err(format!("unsupported curl option `{a}`"))
            }
            url => set_url(&mut r, url.to_string())?,
        }
    }
    if r.url.is_empty() {
        return Err("the curl command has no URL".into());
    }
    let has =
        |r: &CurlRequest, name: &str| r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if data.len() != 1 || get {
        r.body_file = None;
    }
    if !data.is_empty() {
        let joined = data.join(&b'&');
        if get {
            let sep = if r.url.contains('?') { '&' } else { '?' };
            r.url = format!("{}{sep}{}", r.url, String::from_utf8_lossy(&joined));
        } else {
            r.body = joined;
            if json {
                if !has(&r, "content-type") {
                    r.headers
                        .push(("Content-Type".into(), "application/json".into()));
                }
                if !has(&r, "accept") {
                    r.headers.push(("Accept".into(), "application/json".into()));
                }
            } else if !has(&r, "content-type") {
                r.headers.push((
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".into(),
                ));
            }
        }
    }
    r.method = match method {
        Some(m) => {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(format!("curl option `-X {m}`: not an HTTP method"));
            }
            m
        }
        None if head => "HEAD".into(),
        None if !r.body.is_empty() => "POST".into(),
        None => "GET".into(),
    };
    Ok(r)
}

fn set_url(r: &mut CurlRequest, url: String) -> Result<(), String> {
    if !r.url.is_empty() {
        return Err(format!(
            "the curl command names two URLs (`{}` and `{url}`); a scenario from curl has one request",
            chokepoint_report::redact::redact_url(&r.url)
        ));
    }
    let url = if url.contains("://") {
        url
    } else {
        format!("http://{url}")
    };
    chokepoint_engine::Target::parse(&url).map_err(|e| e.to_string())?;
    r.url = url;
    Ok(())
}

/// `-d` semantics: `@file` reads the file (`-d` strips newlines, as curl does).
fn read_data(v: &str, base_dir: &Path, at_file: bool, strip: bool) -> Result<Vec<u8>, String> {
    match v.strip_prefix('@').filter(|_| at_file) {
        Some(file) => {
            let path = base_dir.join(file);
            let bytes = if file == "-" {
                return Err(
                    "`@-` (body from standard input) is not supported; save it to a file".into(),
                );
            } else {
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
            };
            Ok(if strip {
                bytes
                    .into_iter()
                    .filter(|b| *b != b'\n' && *b != b'\r')
                    .collect()
            } else {
                bytes
            })
        }
        None => Ok(v.as_bytes().to_vec()),
    }
}

/// `--data-urlencode` forms: `content`, `=content`, `name=content`, `@file`, `name@file`.
fn urlencode_arg(v: &str, base_dir: &Path) -> Result<String, String> {
    let enc = |s: &[u8]| {
        s.iter()
            .map(|&b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    if let Some((name, content)) = v.split_once('=') {
        return Ok(if name.is_empty() {
            enc(content.as_bytes())
        } else {
            format!("{name}={}", enc(content.as_bytes()))
        });
    }
    if let Some((name, file)) = v.split_once('@') {
        let bytes = read_data(&format!("@{file}"), base_dir, true, false)?;
        return Ok(if name.is_empty() {
            enc(&bytes)
        } else {
            format!("{name}={}", enc(&bytes))
        });
    }
    Ok(enc(v.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curl(text: &str) -> Result<CurlRequest, String> {
        parse(&split_words(text)?, Path::new("."))
    }

    #[test]
    fn quoting_like_a_shell() {
        let w = split_words("curl -H 'A: b c' \"x\\\"y\" $'l1\\nl2' a\\ b \\\n -k").unwrap();
        assert_eq!(w, ["curl", "-H", "A: b c", "x\"y", "l1\nl2", "a b", "-k"]);
        assert!(split_words("curl 'open")
            .unwrap_err()
            .contains("single quote"));
    }

    #[test]
    fn the_flags_users_type() {
        let r = curl("curl -X put https://api.example.com/v1/items?x=1 -H 'Content-Type: application/json' -d '{\"a\":1}' -u alice:pw -k").unwrap();
        assert_eq!(r.method, "PUT");
        assert_eq!(r.url, "https://api.example.com/v1/items?x=1");
        assert_eq!(r.body, b"{\"a\":1}");
        assert!(r.insecure);
        assert!(r
            .headers
            .contains(&("Authorization".into(), "Basic YWxpY2U6cHc=".into())));
        assert_eq!(
            r.headers
                .iter()
                .filter(|(k, _)| k == "Content-Type")
                .count(),
            1
        );
        let r = curl("curl -sSLk --data a=1 --data b=2 localhost:8080/form").unwrap();
        assert_eq!(
            (r.method.as_str(), r.body.as_slice()),
            ("POST", &b"a=1&b=2"[..])
        );
        assert_eq!(r.url, "http://localhost:8080/form");
        assert!(r.insecure);
        let r = curl("curl -G -d q=x http://h/s").unwrap();
        assert_eq!(
            (r.method.as_str(), r.url.as_str()),
            ("GET", "http://h/s?q=x")
        );
        let r = curl("curl -XDELETE http://h/a/1 -I").unwrap();
        assert_eq!(r.method, "DELETE");
    }

    #[test]
    fn bad_commands_say_why() {
        assert_eq!(
            curl("curl -Z http://h/").unwrap_err(),
            "unsupported curl option `-Z`"
        );
        assert_eq!(
            curl("curl -H").unwrap_err(),
            "curl option `-H` needs a value"
        );
        assert!(curl("curl").unwrap_err().contains("no URL"));
        assert!(curl("curl -F a=@x http://h/")
            .unwrap_err()
            .contains("multipart"));
        assert!(curl("curl http://a/ http://b/")
            .unwrap_err()
            .contains("two URLs"));
        assert!(curl("curl -u alice http://h/")
            .unwrap_err()
            .contains("user:password"));
        assert!(curl("curl --data-binary @/nonexistent/x http://h/")
            .unwrap_err()
            .contains("cannot read /nonexistent/x"));
        // A non-ASCII character after a single dash (panicked before).
        assert_eq!(
            curl("curl -ӕsour http://h/").unwrap_err(),
            "unsupported curl option `-ӕsour`"
        );
        assert_eq!(
            curl("curl -ӕ http://h/").unwrap_err(),
            "unsupported curl option `-ӕ`"
        );
    }
}
