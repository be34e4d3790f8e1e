//! HTTP/2 through hyper: each runtime thread keeps one multiplexed connection
//! that all of its workers share, re-established when it closes. Prior
//! knowledge on `http://`, ALPN on `https://`.

use std::rc::Rc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Mutex;

use crate::clock::now_ns;
use crate::conn::{Connector, Stream};
use crate::recorder::{ErrorKind, Timings};
use crate::target::Prepared;

/// The thread's shared HTTP/2 connection.
pub(crate) struct H2Pool {
    connector: Rc<Connector>,
    tls: bool,
    sender: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl H2Pool {
    pub(crate) fn new(connector: Rc<Connector>, tls: bool) -> Self {
        H2Pool {
            connector,
            tls,
            sender: Mutex::new(None),
        }
    }

    /// Returns a live sender, connecting (and timing it in `t`) when needed.
    async fn sender(&self, t: &mut Timings) -> Result<SendRequest<Full<Bytes>>, ErrorKind> {
        let mut slot = self.sender.lock().await;
        if let Some(s) = slot.as_ref() {
            if !s.is_closed() {
                return Ok(s.clone());
            }
        }
        *slot = None;
        let stream = self.connector.connect(t).await?;
        if self.tls && !stream.alpn_is_h2() {
            // The server did not agree to HTTP/2 over ALPN.
            return Err(ErrorKind::Protocol);
        }
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|_| ErrorKind::Protocol)?;
        tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }

    /// Opens the connection ahead of the first request.
    pub(crate) async fn preconnect(&self, t: &mut Timings) {
        let _ = self.sender(t).await;
    }

    /// Sends one request and drains the response; returns its status.
    pub(crate) async fn send(
        &self,
        request: &Prepared,
        traceparent: Option<&str>,
        t: &mut Timings,
    ) -> Result<u16, ErrorKind> {
        let mut sender = self.sender(t).await?;
        sender.ready().await.map_err(map_error)?;
        let mut builder = http::Request::builder()
            .method(request.method.clone())
            .uri(request.uri.clone());
        if let Some(headers) = builder.headers_mut() {
            headers.clone_from(&request.headers);
            if let Some(tp) = traceparent {
                headers.insert(
                    "traceparent",
                    http::HeaderValue::from_str(tp).expect("traceparent is ASCII"),
                );
            }
        }
        let req = builder
            .body(Full::new(request.body.clone()))
            .map_err(|_| ErrorKind::Protocol)?;
        t.written_ns = now_ns();
        t.bytes_sent += request.body.len() as u64;
        let response = sender.send_request(req).await.map_err(map_error)?;
        t.first_byte_ns = now_ns();
        let status = response.status().as_u16();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(map_error)?;
            if let Some(data) = frame.data_ref() {
                t.bytes_received += data.len() as u64;
            }
        }
        t.end_ns = now_ns();
        Ok(status)
    }
}

fn map_error(e: hyper::Error) -> ErrorKind {
    if e.is_parse() || e.is_user() {
        ErrorKind::Protocol
    } else {
        ErrorKind::Io
    }
}

// Keep `Stream` usable by hyper: it is Send + Unpin, as hyper's executor requires.
const _: fn() = || {
    fn assert_send<T: Send + Unpin>() {}
    assert_send::<Stream>();
};
