//! Targets and requests: URL parsing, validation, and pre-serialized request bytes.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::EngineError;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain TCP.
    Http,
    /// TLS (rustls).
    Https,
}

/// Where requests go: one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Scheme.
    pub scheme: Scheme,
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path (and query) of the base URL, starting with `/`.
    pub base_path: String,
}

impl Target {
    /// Parses an absolute `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Target, EngineError> {
        let bad = |why: &str| EngineError::BadUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        let uri: http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            Some(other) => {
                return Err(bad(&format!(
                    "unsupported scheme `{other}` (use http or https)"
                )))
            }
            None => return Err(bad("missing scheme (expected http:// or https://)")),
        };
        let authority = uri.authority().ok_or_else(|| bad("missing host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "credentials in the URL are not supported; use -H 'Authorization: ...'",
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let port = authority.port_u16().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        let base_path = uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_string());
        Ok(Target {
            scheme,
            host: host.to_string(),
            port,
            base_path,
        })
    }

    /// The `Host` header value (authority without userinfo, default port omitted).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default_port = match self.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `scheme://authority` without a path.
    pub fn origin(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}", self.authority())
    }

    /// Resolves the host (once, at start-up).
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, EngineError> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| EngineError::Resolve {
                host: self.host.clone(),
                why: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(EngineError::Resolve {
                host: self.host.clone(),
                why: "no addresses".into(),
            });
        }
        Ok(addrs)
    }

    /// Resolves a request path against the base path, as a browser resolves a link:
    /// empty means the base itself, `/x` is absolute, anything else is relative to
    /// the base path's directory.
    pub fn join(&self, path: &str) -> String {
        if path.is_empty() {
            self.base_path.clone()
        } else if path.starts_with('/') {
            path.to_string()
        } else if path.starts_with('?') {
            let base = self.base_path.split('?').next().unwrap_or("/");
            format!("{base}{path}")
        } else {
            let base = self.base_path.split('?').next().unwrap_or("/");
            let dir = &base[..=base.rfind('/').unwrap_or(0)];
            format!("{dir}{path}")
        }
    }
}

/// One kind of request a run sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// Name used in per-request statistics.
    pub name: String,
    /// HTTP method.
    pub method: String,
    /// Path and query, resolved against the target's base path.
    pub path: String,
    /// Extra headers, in order.
    pub headers: Vec<(String, String)>,
    /// Request body (may be empty).
    pub body: Vec<u8>,
    /// Relative weight when several requests are mixed.
    pub weight: u32,
}

/// Length of a W3C `traceparent` value: `00-<32 hex>-<16 hex>-01`.
pub(crate) const TRACEPARENT_LEN: usize = 55;

/// A request ready to send: HTTP/1.1 bytes, and the parts HTTP/2 needs.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub h1_bytes: Vec<u8>,
    /// Where the traceparent value starts in `h1_bytes`, when propagating.
    pub traceparent_at: Option<usize>,
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
    pub is_head: bool,
}

pub(crate) struct PrepareOptions {
    pub keepalive: bool,
    pub trace_propagate: bool,
}

impl Prepared {
    pub(crate) fn new(
        target: &Target,
        spec: &RequestSpec,
        options: &PrepareOptions,
    ) -> Result<Prepared, EngineError> {
        let bad = |why: String| EngineError::BadRequest {
            name: spec.name.clone(),
            why,
        };
        let method = http::Method::from_bytes(spec.method.as_bytes())
            .map_err(|_| bad(format!("invalid method `{}`", spec.method)))?;
        let path = target.join(&spec.path);
        let uri: http::Uri = format!("{}{}", target.origin(), path)
            .parse()
            .map_err(|e| bad(format!("invalid path `{}`: {e}", spec.path)))?;
        let mut headers = http::HeaderMap::new();
        for (k, v) in &spec.headers {
            let name = http::HeaderName::from_bytes(k.trim().as_bytes())
                .map_err(|_| bad(format!("invalid header name `{k}`")))?;
            let value = http::HeaderValue::from_str(v.trim())
                .map_err(|_| bad(format!("invalid value for header `{k}`")))?;
            headers.append(name, value);
        }
        let has = |name: &str| headers.contains_key(name);
        let mut out = Vec::with_capacity(128 + spec.body.len());
        out.extend_from_slice(method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if !has("host") {
            push_header(&mut out, "Host", target.authority().as_bytes());
        }
        for (name, value) in &headers {
            push_header(&mut out, name.as_str(), value.as_bytes());
        }
        if !has("user-agent") {
            push_header(&mut out, "User-Agent", crate::USER_AGENT.as_bytes());
        }
        let body_expected = matches!(
            method,
            http::Method::POST | http::Method::PUT | http::Method::PATCH
        );
        if !has("content-length") && (!spec.body.is_empty() || body_expected) {
            push_header(
                &mut out,
                "Content-Length",
                spec.body.len().to_string().as_bytes(),
            );
        }
        if !options.keepalive && !has("connection") {
            push_header(&mut out, "Connection", b"close");
        }
        let traceparent_at = if options.trace_propagate {
            out.extend_from_slice(b"traceparent: ");
            let at = out.len();
            out.extend_from_slice(&[b'0'; TRACEPARENT_LEN]);
            out.extend_from_slice(b"\r\n");
            Some(at)
        } else {
            None
        };
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&spec.body);
        Ok(Prepared {
            h1_bytes: out,
            traceparent_at,
            is_head: method == http::Method::HEAD,
            method,
            uri,
            headers,
            body: bytes::Bytes::from(spec.body.clone()),
        })
    }
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes `00-<trace id>-<span id>-01` into `out` (exactly [`TRACEPARENT_LEN`] bytes).
pub(crate) fn write_traceparent(out: &mut [u8], trace_id: u128, span_id: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out[..3].copy_from_slice(b"00-");
    for i in 0..32 {
        out[3 + i] = HEX[((trace_id >> (124 - 4 * i)) & 0xf) as usize];
    }
    out[35] = b'-';
    for i in 0..16 {
        out[36 + i] = HEX[((span_id >> (60 - 4 * i)) & 0xf) as usize];
    }
    out[52..55].copy_from_slice(b"-01");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_with_defaults_and_ipv6() {
        let t = Target::parse("http://127.0.0.1:8080/a/b?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.base_path.as_str()),
            ("127.0.0.1", 8080, "/a/b?x=1")
        );
        let t = Target::parse("https://[::1]/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 443));
        assert_eq!(t.authority(), "[::1]");
        assert!(Target::parse("ftp://x/").is_err());
        assert!(Target::parse("127.0.0.1:80").is_err());
    }

    #[test]
    fn joins_paths_like_links() {
        let t = Target::parse("http://h/api/v1/items?q=1").unwrap();
        assert_eq!(t.join(""), "/api/v1/items?q=1");
        assert_eq!(t.join("/x"), "/x");
        assert_eq!(t.join("other"), "/api/v1/other");
        assert_eq!(t.join("?page=2"), "/api/v1/items?page=2");
    }

    #[test]
    fn serializes_http1_requests() {
        let t = Target::parse("http://127.0.0.1:9000/").unwrap();
        let spec = RequestSpec {
            name: "n".into(),
            method: "POST".into(),
            path: "/checkout".into(),
            headers: vec![("X-A".into(), "1".into())],
            body: b"{}".to_vec(),
            weight: 1,
        };
        let opts = PrepareOptions {
            keepalive: false,
            trace_propagate: true,
        };
        let p = Prepared::new(&t, &spec, &opts).unwrap();
        let text = String::from_utf8(p.h1_bytes.clone()).unwrap();
        assert!(
            text.starts_with("POST /checkout HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nx-a: 1\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
        let at = p.traceparent_at.unwrap();
        let mut bytes = p.h1_bytes.clone();
        write_traceparent(&mut bytes[at..at + TRACEPARENT_LEN], 0xabc, 0x12);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains(
                "traceparent: 00-00000000000000000000000000000abc-0000000000000012-01\r\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn rejects_bad_headers() {
        let t = Target::parse("http://h/").unwrap();
        let spec = RequestSpec {
            name: "n".into(),
            method: "GET".into(),
            path: "".into(),
            headers: vec![("Bad Name".into(), "v".into())],
            body: vec![],
            weight: 1,
        };
        let opts = PrepareOptions {
            keepalive: true,
            trace_propagate: false,
        };
        assert!(Prepared::new(&t, &spec, &opts).is_err());
    }
}
