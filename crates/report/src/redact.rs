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
}
