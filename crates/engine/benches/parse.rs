//! Cost of reading one response head as the hot path does (status, framing,
//! connection headers), for a typical small response (nginx's), both when
//! every head is the same as the previous one on the thread and when each
//! differs from it.
//!
//! `cargo bench -p chokepoint-engine --bench parse`

use std::hint::black_box;

use chokepoint_engine::fuzz_parse_head;
use criterion::{criterion_group, criterion_main, Criterion};

const NGINX: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 18:10:00 GMT\r\nContent-Type: application/octet-stream\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\nhello world\n";

fn parse(c: &mut Criterion) {
    c.bench_function("parse one nginx head (same as the last)", |b| {
        b.iter(|| black_box(fuzz_parse_head(black_box(NGINX))))
    });
    // Two heads that differ in their Date line, alternately.
    let other = String::from_utf8(NGINX.to_vec())
        .unwrap()
        .replace("18:10:00", "18:10:01")
        .into_bytes();
    let heads = [NGINX, &other[..]];
    let mut i = 0;
    c.bench_function("parse one nginx head (differs from the last)", |b| {
        b.iter(|| {
            i ^= 1;
            black_box(fuzz_parse_head(black_box(heads[i])))
        })
    });
}

criterion_group!(benches, parse);
criterion_main!(benches);
