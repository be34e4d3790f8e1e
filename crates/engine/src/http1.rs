//! The HTTP/1.1 hot path: pre-serialized requests, one reused read buffer,
//! `httparse` for the status line and headers, and bodies counted as they
//! stream past (never buffered), whether sized, chunked or delimited by close.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::clock::now_ns;
use crate::conn::Stream;
use crate::recorder::{ErrorKind, Timings};

/// Initial read buffer: small, so ten thousand idle connections stay cheap.
const BUF_SIZE: usize = 4 * 1024;
/// Read buffer once a body spans several reads: fewer syscalls for big bodies.
const BODY_BUF_SIZE: usize = 64 * 1024;
/// Largest response head accepted (status line plus headers).
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Why an exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExchangeError {
    /// A reused keep-alive connection was closed by the server before any byte of
    /// the response: the usual idle-close race; retry once on a new connection.
    Stale,
    /// A failure to count.
    Failed(ErrorKind),
}

/// What a complete response said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    /// The connection can carry another request.
    pub reusable: bool,
}

/// One HTTP/1.1 connection with its read buffer.
pub(crate) struct H1Conn {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    exchanges: u64,
}

struct Head {
    status: u16,
    len: usize,
    content_length: Option<u64>,
    chunked: bool,
    close: bool,
}

impl H1Conn {
    pub(crate) fn new(stream: Stream) -> Self {
        H1Conn {
            stream,
            buf: vec![0; BUF_SIZE],
            start: 0,
            end: 0,
            exchanges: 0,
        }
    }

    /// Sends `request` and reads the whole response.
    pub(crate) async fn exchange(
        &mut self,
        request: &[u8],
        is_head: bool,
        t: &mut Timings,
    ) -> Result<Response, ExchangeError> {
        let reused = self.exchanges > 0;
        self.exchanges += 1;
        // On a reused connection the attempt starts with the write: no second clock read.
        t.written_ns = if t.connect_us.is_none() && t.sent_ns != 0 {
            t.sent_ns
        } else {
            now_ns()
        };
        if let Err(e) = self.stream.write_all(request).await {
            return Err(if reused && is_closed(&e) {
                ExchangeError::Stale
            } else {
                ExchangeError::Failed(ErrorKind::Io)
            });
        }
        t.bytes_sent += request.len() as u64;
        let head = loop {
            let head = self.read_head(reused, t).await?;
            // Interim 1xx responses (100 Continue, 103 Early Hints) precede the real one.
            if (100..200).contains(&head.status) && head.status != 101 {
                self.start += head.len;
                continue;
            }
            break head;
        };
        if head.status == 101 || !(100..=599).contains(&head.status) {
            return Err(ExchangeError::Failed(ErrorKind::Protocol));
        }
        self.start += head.len;
        let no_body = is_head || head.status == 204 || head.status == 304;
        let mut reusable = !head.close;
        if no_body {
        } else if head.chunked {
            self.read_chunked(t).await?;
        } else if let Some(len) = head.content_length {
            self.read_exact_body(len, t).await?;
        } else {
            self.read_to_close(t).await?;
            reusable = false;
        }
        t.end_ns = now_ns();
        Ok(Response {
            status: head.status,
            reusable,
        })
    }

    /// Grows the buffer for a body that spans several reads.
    fn grow_for_body(&mut self) {
        if self.buf.len() < BODY_BUF_SIZE {
            self.buf.resize(BODY_BUF_SIZE, 0);
        }
    }

    /// Reads into the buffer; 0 means the peer closed.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_HEAD {
                self.buf.resize((self.buf.len() * 2).min(MAX_HEAD), 0);
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "response head too large",
                ));
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    async fn read_head(&mut self, reused: bool, t: &mut Timings) -> Result<Head, ExchangeError> {
        let mut got_any = self.end > self.start;
        loop {
            if self.end > self.start {
                if t.first_byte_ns == 0 {
                    t.first_byte_ns = now_ns();
                }
                if let Some(head) = parse_head(&self.buf[self.start..self.end])? {
                    t.bytes_received += head.len as u64;
                    return Ok(head);
                }
            }
            match self.fill().await {
                Ok(0) => {
                    return Err(if reused && !got_any {
                        ExchangeError::Stale
                    } else if got_any {
                        ExchangeError::Failed(ErrorKind::Protocol)
                    } else {
                        ExchangeError::Failed(ErrorKind::Io)
                    })
                }
                Ok(_) => got_any = true,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(ExchangeError::Failed(ErrorKind::Protocol))
                }
                Err(e) => {
                    return Err(if reused && !got_any && is_closed(&e) {
                        ExchangeError::Stale
                    } else {
                        ExchangeError::Failed(ErrorKind::Io)
                    })
                }
            }
        }
    }

    async fn read_exact_body(&mut self, len: u64, t: &mut Timings) -> Result<(), ExchangeError> {
        let mut remaining = len;
        loop {
            let available = (self.end - self.start) as u64;
            let take = available.min(remaining);
            self.start += take as usize;
            remaining -= take;
            t.bytes_received += take;
            if remaining == 0 {
                return Ok(());
            }
            if remaining > self.buf.len() as u64 {
                self.grow_for_body();
            }
            match self.fill().await {
                Ok(0) | Err(_) => return Err(ExchangeError::Failed(ErrorKind::Io)),
                Ok(_) => {}
            }
        }
    }

    async fn read_to_close(&mut self, t: &mut Timings) -> Result<(), ExchangeError> {
        loop {
            t.bytes_received += (self.end - self.start) as u64;
            self.start = self.end;
            match self.fill().await {
                Ok(0) => return Ok(()),
                Ok(_) => self.grow_for_body(),
                Err(_) => return Err(ExchangeError::Failed(ErrorKind::Io)),
            }
        }
    }

    async fn read_chunked(&mut self, t: &mut Timings) -> Result<(), ExchangeError> {
        let mut decoder = ChunkDecoder::default();
        loop {
            let input = &self.buf[self.start..self.end];
            let (used, done) = decoder
                .feed(input)
                .map_err(|()| ExchangeError::Failed(ErrorKind::Protocol))?;
            self.start += used;
            t.bytes_received += used as u64;
            if done {
                return Ok(());
            }
            match self.fill().await {
                Ok(0) | Err(_) => return Err(ExchangeError::Failed(ErrorKind::Io)),
                Ok(_) => self.grow_for_body(),
            }
        }
    }
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// Parses a response head; `Ok(None)` when more bytes are needed.
fn parse_head(bytes: &[u8]) -> Result<Option<Head>, ExchangeError> {
    let protocol = ExchangeError::Failed(ErrorKind::Protocol);
    // Uninitialized header slots: zeroing 100 of them for every response showed in profiles.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        bytes,
        &mut headers,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(protocol),
    };
    let status = response.code.ok_or(protocol)?;
    let http10 = response.version == Some(0);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut close = http10;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or(protocol)?;
            if content_length.is_some_and(|prev| prev != value) {
                return Err(protocol);
            }
            content_length = Some(value);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides: only a final "chunked" frames the body.
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            if !chunked {
                content_length = None;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        }
    }
    if chunked {
        content_length = None;
    }
    Ok(Some(Head {
        status,
        len,
        content_length,
        chunked,
        close,
    }))
}

/// Incremental decoder for `Transfer-Encoding: chunked` that only counts.
#[derive(Debug, Default)]
struct ChunkDecoder {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size; `digits` seen so far, `ext` once past them.
    #[default]
    SizeStart,
    Size {
        value: u64,
        ext: bool,
        line: usize,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// Trailer section after the last chunk; `line` bytes in the current line.
    Trailer {
        line: usize,
    },
    Done,
}

impl ChunkDecoder {
    /// Consumes bytes; returns how many were used and whether the body ended.
    fn feed(&mut self, input: &[u8]) -> Result<(usize, bool), ()> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                ChunkState::SizeStart => {
                    let d = hex_digit(b).ok_or(())?;
                    self.state = ChunkState::Size {
                        value: d,
                        ext: false,
                        line: 1,
                    };
                }
                ChunkState::Size { value, ext, line } => {
                    if line > MAX_CHUNK_LINE {
                        return Err(());
                    }
                    let line = line + 1;
                    match (b, hex_digit(b)) {
                        (b'\n', _) => {
                            self.state = if value == 0 {
                                ChunkState::Trailer { line: 0 }
                            } else {
                                ChunkState::Data(value)
                            }
                        }
                        (_, Some(d)) if !ext => {
                            if value >> 58 != 0 {
                                return Err(());
                            }
                            self.state = ChunkState::Size {
                                value: value << 4 | d,
                                ext,
                                line,
                            };
                        }
                        (b'\r' | b';' | b' ' | b'\t', _) => {
                            self.state = ChunkState::Size {
                                value,
                                ext: true,
                                line,
                            }
                        }
                        (_, _) if ext => self.state = ChunkState::Size { value, ext, line },
                        _ => return Err(()),
                    }
                }
                ChunkState::Data(remaining) => {
                    let take = (remaining as usize).min(input.len() - i) as u64;
                    i += take as usize;
                    self.state = if take == remaining {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(remaining - take)
                    };
                    continue;
                }
                ChunkState::DataCr => match b {
                    b'\r' => self.state = ChunkState::DataLf,
                    b'\n' => self.state = ChunkState::SizeStart,
                    _ => return Err(()),
                },
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(());
                    }
                    self.state = ChunkState::SizeStart;
                }
                ChunkState::Trailer { line } => match b {
                    b'\n' if line == 0 => {
                        self.state = ChunkState::Done;
                        return Ok((i + 1, true));
                    }
                    b'\n' => self.state = ChunkState::Trailer { line: 0 },
                    b'\r' => {}
                    _ if line > MAX_CHUNK_LINE => return Err(()),
                    _ => self.state = ChunkState::Trailer { line: line + 1 },
                },
                ChunkState::Done => return Ok((i, true)),
            }
            i += 1;
        }
        Ok((i, self.state == ChunkState::Done))
    }
}

/// Fuzzing entry: parses a response head as the hot path does. `Ok(None)`
/// means more bytes are needed; `Ok(Some((status, head_len)))` a complete
/// head; `Err` a protocol error. Not a stable API.
#[doc(hidden)]
pub fn fuzz_parse_head(bytes: &[u8]) -> Result<Option<(u16, usize)>, &'static str> {
    match parse_head(bytes) {
        Ok(Some(head)) => Ok(Some((head.status, head.len))),
        Ok(None) => Ok(None),
        Err(_) => Err("protocol error"),
    }
}

/// Fuzzing entry: feeds `body` to the chunked decoder in pieces of `piece`
/// bytes (at least 1), as reads would deliver it; returns the bytes used and
/// whether the body ended, or `Err` for a protocol error. Not a stable API.
#[doc(hidden)]
pub fn fuzz_decode_chunked(body: &[u8], piece: usize) -> Result<(usize, bool), &'static str> {
    let mut decoder = ChunkDecoder::default();
    let mut used_total = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let take = piece.max(1).min(rest.len());
        // Like the connection's buffer: unused bytes are offered again with the next read.
        let (used, done) = decoder.feed(&rest[..take]).map_err(|()| "protocol error")?;
        used_total += used;
        if done {
            return Ok((used_total, true));
        }
        if used == 0 {
            return Ok((used_total, false));
        }
        rest = &rest[used..];
    }
    Ok((used_total, false))
}

fn hex_digit(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(body: &[u8], piece: usize) -> Result<(usize, bool), ()> {
        let mut d = ChunkDecoder::default();
        let mut used_total = 0;
        for chunk in body.chunks(piece) {
            let (used, done) = d.feed(chunk)?;
            used_total += used;
            if done {
                return Ok((used_total, true));
            }
        }
        Ok((used_total, false))
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_boundaries() {
        let body =
            b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for piece in 1..body.len() {
            let (used, done) = decode_in_pieces(body, piece).unwrap();
            assert!(done, "piece {piece}");
            assert_eq!(used, body.len() - 4, "piece {piece}");
        }
    }

    #[test]
    fn chunked_garbage_is_a_protocol_error() {
        assert!(decode_in_pieces(b"zz\r\n", 4).is_err());
        assert!(decode_in_pieces(b"5\r\nhelloXX", 16).is_err());
        assert!(decode_in_pieces(b"ffffffffffffffffff\r\n", 32).is_err());
    }

    #[test]
    fn heads_parse_framing_and_connection_headers() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.content_length, h.chunked, h.close),
            (200, Some(12), false, false)
        );
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(h.chunked && h.close && h.content_length.is_none());
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert!(h.close);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")
            .unwrap()
            .is_none());
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .is_err()
        );
        assert!(parse_head(b"SMTP ready\r\n\r\n").is_err());
    }
}
