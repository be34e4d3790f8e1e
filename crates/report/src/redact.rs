//! Redaction of credentials in anything a report prints.

/// Header names whose values are never printed.
pub const SECRET_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// Query parameter names that look like credentials.
fn is_secret_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "token",
        "key",
        "secret",
        "password",
        "passwd",
        "signature",
        "sig",
        "auth",
        "credential",
    ]
    .iter()
    .any(|word| lower.contains(word))
}

/// Whether a header's value must be redacted.
pub fn is_secret_header(name: &str) -> bool {
    SECRET_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name.trim()))
}

/// Replaces the values of credential-looking query parameters (and any
/// userinfo) in a URL with `REDACTED`.
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (url, None),
    };
    let mut out = match before_query.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((authority, path)) if authority.contains('@') => {
                let host = authority.rsplit('@').next().unwrap_or("");
                format!("{scheme}://REDACTED@{host}/{path}")
            }
            None if rest.contains('@') => {
                format!(
                    "{scheme}://REDACTED@{}",
                    rest.rsplit('@').next().unwrap_or("")
                )
            }
            _ => before_query.to_string(),
        },
        None => before_query.to_string(),
    };
    if let Some(query) = query {
        out.push('?');
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        let parts: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=REDACTED"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&parts.join("&"));
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(f);
        }
    }
    out
}

/// Characters that end a word of free text when looking for URLs and header
/// values in it (quotes and backticks as error messages use them).
fn is_text_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '`' | '"' | '\'' | '<' | '>')
}

/// Redacts credentials inside free text such as an error message or a note:
/// every URL-like word (`scheme://...`, or anything with a `?name=value`
/// query) goes through [`redact_url`], and the value after a secret header
/// name (`Authorization: ...`) becomes `REDACTED`.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains("://") || (word.contains('?') && word.contains('=')) {
            out.push_str(&redact_url(word));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_text_delimiter(c) {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    redact_header_values(&out)
}

/// Replaces what follows a secret header name at the start of a word: the
/// value after its `:` (`Authorization: Bearer x`), or, when the text is not
/// a well-formed header (`Authorization Bearer: x`, `AuthorizationBearer x`),
/// everything after the name. Values end at a quote, backtick or line break.
fn redact_header_values(text: &str) -> String {
    // ASCII lower-casing keeps every byte offset.
    let lower = text.to_ascii_lowercase();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    for name in SECRET_HEADERS {
        let mut from = 0;
        while let Some(at) = lower[from..].find(name) {
            let start = from + at;
            from = start + name.len();
            let at_word_start = !matches!(
                lower[..start].chars().next_back(),
                Some(c) if c.is_ascii_alphanumeric() || c == '-' || c == '_'
            );
            if !at_word_start {
                continue;
            }
            let end = text[from..]
                .find(['`', '"', '\'', '\n', '\r'])
                .map_or(text.len(), |i| from + i);
            let rest = &text[from..end];
            let value_start = match rest.find(':') {
                Some(colon) => from + colon + 1,
                None => from,
            };
            let value = text[value_start..end].trim();
            if !(value.is_empty() || value == "REDACTED" || value == "..." || value == "…") {
                cuts.push((value_start, end));
            }
        }
    }
    cuts.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in cuts {
        if start < at {
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(" REDACTED");
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// Request names as reports print them: credential-looking query values in
/// names (scenario and HAR requests are named `METHOD path?query` by default)
/// become `REDACTED`. Names that redaction makes equal get ` #2`, ` #3` ...
/// so that no request's numbers are merged into another's.
pub fn redact_request_names(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let redacted = redact_url(name);
        let mut unique = redacted.clone();
        let mut n = 1;
        while out.contains(&unique) || (unique != *name && names.contains(&unique)) {
            n += 1;
            unique = format!("{redacted} #{n}");
        }
        out.push(unique);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secret_query_parameters_and_userinfo() {
        assert_eq!(
            redact_url("http://h:1/p?access_token=abc&page=2&api_key=x"),
            "http://h:1/p?access_token=REDACTED&page=2&api_key=REDACTED"
        );
        assert_eq!(redact_url("https://user:pw@h/x"), "https://REDACTED@h/x");
        assert_eq!(redact_url("http://h/plain"), "http://h/plain");
    }

    #[test]
    fn knows_secret_headers() {
        assert!(is_secret_header("Authorization"));
        assert!(is_secret_header(" cookie "));
        assert!(!is_secret_header("Accept"));
    }

    #[test]
    fn redacts_urls_and_secret_header_values_in_free_text() {
        assert_eq!(
            redact_text("bad URL `http://u:pw@h:1/p?token=abc&page=2`: no"),
            "bad URL `http://REDACTED@h:1/p?token=REDACTED&page=2`: no"
        );
        assert_eq!(
            redact_text("header `Authorization: Bearer abc` has an invalid name"),
            "header `Authorization: REDACTED` has an invalid name"
        );
        assert_eq!(
            redact_text("x-api-key:k1\ncookie : c=2"),
            "x-api-key: REDACTED\ncookie : REDACTED"
        );
        assert_eq!(
            redact_text("GET /a?api_key=1 ok"),
            "GET /a?api_key=REDACTED ok"
        );
        assert_eq!(
            redact_text("invalid value 'Authorization Bearer: abc' for '--header'"),
            "invalid value 'Authorization Bearer: REDACTED' for '--header'"
        );
        assert_eq!(
            redact_text("header `AuthorizationBearer abc` must look like `Name: value`"),
            "header `Authorization REDACTED` must look like `Name: value`"
        );
        let hint = "credentials in the URL are not supported; use -H 'Authorization: ...'";
        assert_eq!(redact_text(hint), hint);
        assert_eq!(redact_text("no x-cookies: here"), "no x-cookies: here");
        let plain = "connect: refused (127.0.0.1:80); what? nothing";
        assert_eq!(redact_text(plain), plain);
        assert_eq!(redact_text("naïve → ünïcode"), "naïve → ünïcode");
    }

    #[test]
    fn request_names_are_redacted_and_stay_distinct() {
        let names = [
            "GET /a?token=1".to_string(),
            "GET /a?token=2".to_string(),
            "checkout".to_string(),
        ];
        assert_eq!(
            redact_request_names(&names),
            [
                "GET /a?token=REDACTED",
                "GET /a?token=REDACTED #2",
                "checkout"
            ]
        );
    }
}
