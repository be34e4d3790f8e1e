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
pub(crate) const MAX_HEAD: usize = 64 * 1024;
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

#[derive(Clone, Copy, Debug, PartialEq)]
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
        let mut reader = ResponseReader::new(is_head);
        loop {
            if self.end > self.start {
                if t.first_byte_ns == 0 {
                    t.first_byte_ns = now_ns();
                }
                let (used, done) = reader.feed(&self.buf[self.start..self.end], t)?;
                self.start += used;
                if let Some(response) = done {
                    t.end_ns = now_ns();
                    return Ok(response);
                }
                if reader.body_spans_reads(self.buf.len()) {
                    self.grow_for_body();
                }
            }
            match self.fill().await {
                Ok(0) => {
                    let response = reader.eof(reused)?;
                    t.end_ns = now_ns();
                    return Ok(response);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(ExchangeError::Failed(ErrorKind::Protocol))
                }
                Err(e) => return Err(reader.read_error(reused, is_closed(&e))),
            }
        }
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
}

/// Where a response is in its reading.
#[derive(Debug)]
enum Phase {
    /// Waiting for a complete head (interim 1xx heads are skipped).
    Head,
    /// A body of known length: bytes still to come.
    Sized(u64),
    Chunked(ChunkDecoder),
    /// A body delimited by the connection's close.
    ToClose,
    Done,
}

/// Reads one response from whatever bytes arrive, however they are cut:
/// the head with `httparse`, then the body counted (never buffered). It does
/// no I/O and reads no clock, so the tokio path ([`H1Conn`]) and the
/// io_uring path share it: one parser, one set of framing rules.
#[derive(Debug)]
pub(crate) struct ResponseReader {
    is_head: bool,
    phase: Phase,
    /// A byte of this response has been seen.
    got_any: bool,
    status: u16,
    reusable: bool,
}

impl ResponseReader {
    /// A reader for the response to a request; `is_head` for `HEAD` (no body).
    pub(crate) fn new(is_head: bool) -> Self {
        ResponseReader {
            is_head,
            phase: Phase::Head,
            got_any: false,
            status: 0,
            reusable: true,
        }
    }

    /// Consumes what it can of `input` (bytes not yet consumed must be
    /// offered again, with more after them); returns how many bytes it used
    /// and the response once it is complete. While the head is incomplete it
    /// uses nothing: the caller keeps the bytes, up to [`MAX_HEAD`].
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        t: &mut Timings,
    ) -> Result<(usize, Option<Response>), ExchangeError> {
        let protocol = ExchangeError::Failed(ErrorKind::Protocol);
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match &mut self.phase {
                Phase::Head => {
                    if rest.is_empty() {
                        return Ok((used, None));
                    }
                    self.got_any = true;
                    let Some(head) = parse_head(rest)? else {
                        return Ok((used, None));
                    };
                    used += head.len;
                    t.bytes_received += head.len as u64;
                    // Interim 1xx responses (100 Continue, 103 Early Hints) precede the real one.
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue;
                    }
                    if head.status == 101 || !(100..=599).contains(&head.status) {
                        return Err(protocol);
                    }
                    self.status = head.status;
                    self.reusable = !head.close;
                    let no_body = self.is_head || head.status == 204 || head.status == 304;
                    self.phase = if no_body {
                        Phase::Done
                    } else if head.chunked {
                        Phase::Chunked(ChunkDecoder::default())
                    } else if let Some(len) = head.content_length {
                        Phase::Sized(len)
                    } else {
                        self.reusable = false;
                        Phase::ToClose
                    };
                }
                Phase::Sized(remaining) => {
                    let take = (rest.len() as u64).min(*remaining);
                    used += take as usize;
                    t.bytes_received += take;
                    *remaining -= take;
                    if *remaining > 0 {
                        return Ok((used, None));
                    }
                    self.phase = Phase::Done;
                }
                Phase::Chunked(decoder) => {
                    let (n, done) = decoder.feed(rest).map_err(|()| protocol)?;
                    used += n;
                    t.bytes_received += n as u64;
                    if !done {
                        return Ok((used, None));
                    }
                    self.phase = Phase::Done;
                }
                Phase::ToClose => {
                    t.bytes_received += rest.len() as u64;
                    return Ok((input.len(), None));
                }
                Phase::Done => {
                    return Ok((
                        used,
                        Some(Response {
                            status: self.status,
                            reusable: self.reusable,
                        }),
                    ))
                }
            }
        }
    }

    /// The peer closed the connection: the end of a close-delimited body, or
    /// a failure (`Stale` when a reused connection closed before any byte).
    pub(crate) fn eof(&self, reused: bool) -> Result<Response, ExchangeError> {
        match self.phase {
            Phase::ToClose => Ok(Response {
                status: self.status,
                reusable: false,
            }),
            Phase::Head if !self.got_any && reused => Err(ExchangeError::Stale),
            Phase::Head if self.got_any => Err(ExchangeError::Failed(ErrorKind::Protocol)),
            _ => Err(ExchangeError::Failed(ErrorKind::Io)),
        }
    }

    /// A read failed; `closed` when the error says the peer closed or reset.
    pub(crate) fn read_error(&self, reused: bool, closed: bool) -> ExchangeError {
        if matches!(self.phase, Phase::Head) && !self.got_any && reused && closed {
            ExchangeError::Stale
        } else {
            ExchangeError::Failed(ErrorKind::Io)
        }
    }

    /// The body will likely span reads of `buf_len` bytes (a larger buffer
    /// then saves reads).
    pub(crate) fn body_spans_reads(&self, buf_len: usize) -> bool {
        match self.phase {
            Phase::Sized(remaining) => remaining > buf_len as u64,
            Phase::Chunked(_) | Phase::ToClose => true,
            Phase::Head | Phase::Done => false,
        }
    }

    /// The head is complete (a response is being read).
    pub(crate) fn in_head(&self) -> bool {
        matches!(self.phase, Phase::Head)
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

/// Heads longer than this are not remembered.
const LAST_HEAD_MAX: usize = 1024;

thread_local! {
    /// The last complete head parsed on this thread, byte for byte, and what
    /// it said. A server answering alike repeats its head exactly (until its
    /// Date changes, once a second); a head is parsed from its own bytes and
    /// nothing after them, so the same bytes say the same again: a
    /// comparison (~15 ns) instead of a parse (~170 ns, `benches/parse.rs`).
    static LAST_HEAD: std::cell::RefCell<(Vec<u8>, Option<Head>)> =
        const { std::cell::RefCell::new((Vec::new(), None)) };
}

/// Parses a response head; `Ok(None)` when more bytes are needed. A head
/// byte-identical to the thread's last one is not parsed again.
fn parse_head(bytes: &[u8]) -> Result<Option<Head>, ExchangeError> {
    LAST_HEAD.with(|last| {
        let mut last = last.borrow_mut();
        if let (seen, Some(head)) = &*last {
            if bytes.starts_with(seen) {
                return Ok(Some(*head));
            }
        }
        let parsed = parse_head_bytes(bytes)?;
        if let Some(head) = parsed {
            if head.len <= LAST_HEAD_MAX {
                last.0.clear();
                last.0.extend_from_slice(&bytes[..head.len]);
                last.1 = Some(head);
            }
        }
        Ok(parsed)
    })
}

/// [`parse_head`] without the memory of the last head.
fn parse_head_bytes(bytes: &[u8]) -> Result<Option<Head>, ExchangeError> {
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

    /// Feeds `bytes` to a reader in pieces of `piece` bytes, keeping what it
    /// does not use as a connection's buffer would; returns the response, the
    /// bytes it used and the bytes it counted as received.
    fn read_in_pieces(
        bytes: &[u8],
        piece: usize,
        is_head: bool,
    ) -> Result<(Response, usize, u64), ExchangeError> {
        let mut reader = ResponseReader::new(is_head);
        let mut t = Timings::default();
        let mut pending: Vec<u8> = Vec::new();
        let mut consumed = 0;
        for chunk in bytes.chunks(piece) {
            pending.extend_from_slice(chunk);
            let (used, done) = reader.feed(&pending, &mut t)?;
            pending.drain(..used);
            consumed += used;
            if let Some(response) = done {
                return Ok((response, consumed, t.bytes_received));
            }
        }
        reader.eof(false).map(|r| (r, consumed, t.bytes_received))
    }

    #[test]
    fn responses_read_the_same_whatever_the_read_boundaries() {
        let cases: [(&[u8], bool, u16, bool, usize); 6] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT", false, 200, true, 4),
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nokNEXT",
                false,
                201,
                true,
                4,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nNEXT",
                false,
                200,
                true,
                4,
            ),
            // HEAD: the Content-Length describes a body that is not sent.
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nNEXT", true, 200, true, 4),
            (b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", false, 204, false, 0),
            // No framing: the body ends when the server closes.
            (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", false, 200, false, 0),
        ];
        for (bytes, is_head, status, reusable, left) in cases {
            for piece in 1..=bytes.len() {
                let (r, used, received) = read_in_pieces(bytes, piece, is_head).unwrap();
                assert_eq!((r.status, r.reusable), (status, reusable), "piece {piece}");
                assert_eq!(used, bytes.len() - left, "piece {piece}");
                assert_eq!(received as usize, used, "piece {piece}");
            }
        }
    }

    /// Feeds `bytes` cut at `cuts` (offsets, any order); the outcome as the
    /// two I/O paths see it: the response and the bytes used, or the error,
    /// or what the end of the stream makes of an unfinished response.
    fn outcome_with_cuts(bytes: &[u8], cuts: &[usize]) -> String {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut reader = ResponseReader::new(false);
        let mut t = Timings::default();
        let mut pending: Vec<u8> = Vec::new();
        let (mut from, mut consumed) = (0, 0);
        for cut in cuts {
            pending.extend_from_slice(&bytes[from..cut]);
            from = cut;
            match reader.feed(&pending, &mut t) {
                Ok((used, Some(r))) => return format!("{r:?} after {}", consumed + used),
                Ok((used, None)) => {
                    pending.drain(..used);
                    consumed += used;
                }
                Err(e) => return format!("{e:?}"),
            }
        }
        format!("end: {:?}", reader.eof(false))
    }

    proptest::proptest! {
        /// However the bytes of a response are cut into reads (as epoll's
        /// reads or io_uring's buffers cut them), the reader comes to the
        /// same outcome as with all of them at once.
        #[test]
        fn outcome_does_not_depend_on_the_cuts(
            head in proptest::sample::select(vec![
                "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
                "HTTP/1.0 200 OK\r\n\r\n",
                "HTTP/1.1 301 Moved\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                "",
            ]),
            tail in proptest::collection::vec(proptest::sample::select(
                b"0123456789abcdefXZ\r\n; :".to_vec()), 0..64),
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let mut bytes = head.as_bytes().to_vec();
            bytes.extend_from_slice(&tail);
            proptest::prop_assert_eq!(
                outcome_with_cuts(&bytes, &cuts),
                outcome_with_cuts(&bytes, &[])
            );
        }
    }

    proptest::proptest! {
        /// Remembering the last head on the thread never changes what a
        /// head says: in any order, heads that repeat, that differ only
        /// after a remembered head's bytes, that are cut short or broken
        /// parse as each would with nothing remembered.
        #[test]
        fn remembered_heads_parse_as_fresh_ones(
            seq in proptest::collection::vec((
                proptest::sample::select(vec![
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r",
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                    "HTTP/1.1 100 Continue\r\n\r\n",
                    "HTTP/1.0 200 OK\r\n\r\n",
                    "HTTP/1.1 2",
                ]),
                proptest::sample::select(vec![
                    "", "ok", "\r\n", "HTTP/1.1 204 No Content\r\n\r\n", "Connection: close\r\n\r\n",
                ]),
            ), 1..16),
        ) {
            for (head, tail) in seq {
                let bytes = format!("{head}{tail}");
                let fresh = parse_head_bytes(bytes.as_bytes());
                proptest::prop_assert_eq!(parse_head(bytes.as_bytes()), fresh, "{:?}", bytes);
            }
        }
    }

    #[test]
    fn early_ends_are_told_apart() {
        let reader = ResponseReader::new(false);
        assert_eq!(reader.eof(true), Err(ExchangeError::Stale));
        assert_eq!(reader.eof(false), Err(ExchangeError::Failed(ErrorKind::Io)));
        assert_eq!(reader.read_error(true, true), ExchangeError::Stale);
        assert_eq!(
            reader.read_error(true, false),
            ExchangeError::Failed(ErrorKind::Io)
        );
        let mut t = Timings::default();
        let mut reader = ResponseReader::new(false);
        assert_eq!(reader.feed(b"HTTP/1.1 2", &mut t), Ok((0, None)));
        assert_eq!(
            reader.eof(true),
            Err(ExchangeError::Failed(ErrorKind::Protocol))
        );
        assert_eq!(
            reader.read_error(true, true),
            ExchangeError::Failed(ErrorKind::Io)
        );
        let mut reader = ResponseReader::new(false);
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert_eq!(reader.feed(head, &mut t), Ok((head.len(), None)));
        assert_eq!(reader.eof(false), Err(ExchangeError::Failed(ErrorKind::Io)));
        let mut reader = ResponseReader::new(false);
        assert_eq!(
            reader.feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", &mut t),
            Err(ExchangeError::Failed(ErrorKind::Protocol))
        );
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
