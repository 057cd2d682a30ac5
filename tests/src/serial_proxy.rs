//! `SerialProxy`: a loopback HTTP/1.1 proxy that lets ONE request at a time reach its
//! upstream, holding a global lock from forwarding the request until the whole answer is
//! back. s3s-fs (0.14.1) evaluates `If-None-Match` / `If-Match` on PutObject and then
//! writes, without a lock in between, so two concurrent conditional writes can both pass;
//! behind this proxy each check-and-write is atomic, as Ceph RGW's are meant to be
//! (docs/SCHEDULER.md, "Demand at fleet scale"). It also counts what it forwarded, and
//! keeps each exchange's method, path and status in order ([`SerialProxy::exchanges`]): tests
//! prove an order of events (a take-over at the follower's first read) by it, not by time.
//!
//! s3s-fs also ignores `If-None-Match` on GetObject (it always sends the body); S3 and Ceph
//! RGW answer `304 Not Modified` without a body when the object's ETag matches (RFC 9110
//! §13.1.2). The proxy does that for them: a GET whose `If-None-Match` names the ETag of
//! the 200 it got back is answered 304 (counted in [`SerialProxy::not_modified`]).
//!
//! Framing: requests by `Content-Length` (what aws-sdk-s3 sends for in-memory bodies) or
//! chunked; answers by `Content-Length`, chunked, none (HEAD, 204, 304) or end of stream.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The proxy; it lives as long as the test process (its threads are detached).
#[derive(Debug)]
pub struct SerialProxy {
    /// `http://127.0.0.1:PORT` for clients.
    pub endpoint: String,
    forwarded: Arc<AtomicU64>,
    not_modified: Arc<AtomicU64>,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

/// One forwarded request and its answer's status, as the proxy serialised them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// The status the client got (304 when the proxy answered for the upstream); 0 when the
    /// upstream's answer had no status line.
    pub status: u16,
}

impl SerialProxy {
    /// Starts a proxy to `upstream` on a free loopback port.
    pub fn start(upstream: SocketAddr) -> SerialProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind serial proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let forwarded = Arc::new(AtomicU64::new(0));
        let not_modified = Arc::new(AtomicU64::new(0));
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let one_at_a_time = Arc::new(Mutex::new(()));
        let counts = Counts {
            forwarded: forwarded.clone(),
            not_modified: not_modified.clone(),
            exchanges: exchanges.clone(),
        };
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (lock, counts) = (one_at_a_time.clone(), counts.clone());
                std::thread::spawn(move || serve(client, upstream, &lock, &counts));
            }
        });
        SerialProxy {
            endpoint,
            forwarded,
            not_modified,
            exchanges,
        }
    }

    /// GETs answered `304 Not Modified` so far.
    pub fn not_modified(&self) -> u64 {
        self.not_modified.load(Ordering::SeqCst)
    }

    /// Requests forwarded so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::SeqCst)
    }

    /// Every exchange so far, in the order the proxy forwarded them (one at a time).
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().expect("exchange log").clone()
    }
}

#[derive(Clone)]
struct Counts {
    forwarded: Arc<AtomicU64>,
    not_modified: Arc<AtomicU64>,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

/// Bytes read from one side, with what is left over after each message.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 64 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    /// The next head (through the blank line), or `None` at end of stream.
    fn head(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(self.buf.drain(..i + 4).collect());
            }
            if !self.fill() {
                return None;
            }
        }
    }

    fn exactly(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill() {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// A chunked body, raw, through its last chunk and trailers.
    fn chunked(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let line = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break self.buf.drain(..i + 2).collect::<Vec<u8>>();
                }
                if !self.fill() {
                    return None;
                }
            };
            let size_text = String::from_utf8_lossy(&line);
            let size_hex = size_text.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_hex, 16).ok()?;
            out.extend_from_slice(&line);
            if size == 0 {
                // Trailers (possibly none) end with a blank line.
                let rest = self.head_or_blank()?;
                out.extend_from_slice(&rest);
                return Some(out);
            }
            out.extend_from_slice(&self.exactly(size + 2)?);
        }
    }

    fn head_or_blank(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.buf.starts_with(b"\r\n") {
                return Some(self.buf.drain(..2).collect());
            }
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(self.buf.drain(..i + 4).collect());
            }
            if !self.fill() {
                return None;
            }
        }
    }

    fn drain_to_end(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A message's body after `head`: by length, chunked, or (answers only) to end of stream.
fn body(conn: &mut Conn, head: &str, is_request: bool) -> Option<Vec<u8>> {
    if let Some(len) = header(head, "content-length") {
        return conn.exactly(len.parse().ok()?);
    }
    if header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return conn.chunked();
    }
    Some(if is_request {
        Vec::new()
    } else {
        conn.drain_to_end()
    })
}

/// Serves one client connection, request by request, each over a new upstream connection:
/// s3s-fs closes a connection after answering a request whose body it did not read (a 412
/// before the upload), and a reused one would then fail the next request.
fn serve(client: TcpStream, upstream: SocketAddr, lock: &Mutex<()>, counts: &Counts) {
    let mut client = Conn {
        stream: client,
        buf: Vec::new(),
    };
    while let Some(head) = client.head() {
        let text = String::from_utf8_lossy(&head).to_string();
        let Some(req_body) = body(&mut client, &text, true) else {
            return;
        };
        let is_head = text.starts_with("HEAD ");
        let mut line = text.split_whitespace();
        let (method, path) = (line.next().unwrap_or(""), line.next().unwrap_or(""));
        // Logged under the lock, so the log's order is the upstream's.
        let one = lock.lock().expect("serial proxy lock");
        counts.forwarded.fetch_add(1, Ordering::SeqCst);
        let Some(answer) = exchange(upstream, &head, &req_body, is_head) else {
            return;
        };
        let answer = match not_modified(&text, &answer) {
            Some(short) => {
                counts.not_modified.fetch_add(1, Ordering::SeqCst);
                short
            }
            None => answer,
        };
        let status = String::from_utf8_lossy(&answer[..answer.len().min(16)])
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        counts
            .exchanges
            .lock()
            .expect("exchange log")
            .push(Exchange {
                method: method.to_string(),
                path: path.to_string(),
                status,
            });
        drop(one);
        if client.stream.write_all(&answer).is_err() {
            return;
        }
    }
}

/// The 304 for a GET whose `If-None-Match` names the ETag of the 200 `answer` (or is `*`).
fn not_modified(request: &str, answer: &[u8]) -> Option<Vec<u8>> {
    if !request.starts_with("GET ") {
        return None;
    }
    let wanted = header(request, "if-none-match")?;
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&answer[..end + 4]).to_string();
    if head.split(' ').nth(1) != Some("200") {
        return None;
    }
    let etag = header(&head, "etag")?;
    let matches = wanted
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag);
    matches.then(|| {
        format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nContent-Length: 0\r\n\r\n")
            .into_bytes()
    })
}

/// One request to `upstream` on a fresh connection; the whole answer, or `None`.
fn exchange(upstream: SocketAddr, head: &[u8], req_body: &[u8], is_head: bool) -> Option<Vec<u8>> {
    let mut server = Conn {
        stream: TcpStream::connect(upstream).ok()?,
        buf: Vec::new(),
    };
    server.stream.write_all(head).ok()?;
    server.stream.write_all(req_body).ok()?;
    let resp_head = server.head()?;
    let resp_text = String::from_utf8_lossy(&resp_head).to_string();
    let status = resp_text.split(' ').nth(1).unwrap_or("");
    let no_body = is_head || matches!(status, "204" | "304") || status.starts_with('1');
    let resp_body = if no_body {
        Vec::new()
    } else {
        body(&mut server, &resp_text, false)?
    };
    let _ = server.stream.shutdown(std::net::Shutdown::Both);
    Some([resp_head, resp_body].concat())
}
