//! `LocalS3`: a real S3-compatible server (`s3s-fs`, installed by
//! `scripts/install-s3-server.sh` into `<repo>/.tools/bin`) on the loopback port it binds with a
//! per-test root and bucket, killed on drop — over plain http ([`LocalS3::start`]) or behind
//! TLS with a private CA ([`LocalS3::start_tls`], see [`crate::tls`]); and `CountingProxy`, a
//! TCP proxy that records every HTTP request head so tests can count requests (e.g.
//! UploadPart) and read the headers the SDK sent on the wire, and that can hold chosen
//! requests back or drop them ([`CountingProxy::hold`]: a push stopped after k parts).
//!
//! Missing binary: tests skip loudly, unless `MARBLE_REQUIRE_S3` is set (CI), where they fail.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use marbled::images::{CredentialSource, ImageStoreConfig};

use crate::tls::{TestCa, TlsFront};

/// Access key of the test server.
pub const ACCESS_KEY: &str = "marbletest";
/// Secret key of the test server (tests assert it never appears in logs).
pub const SECRET_KEY: &str = "marble-secret-9f3c7e1a-do-not-log";

/// Where the server binary is: `<repo>/.tools/bin/s3s-fs`, then `PATH`.
pub fn s3s_fs_binary() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let local = repo.join(".tools/bin/s3s-fs");
    if local.is_file() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.is_file())
    })
}

/// The TLS side of a [`LocalS3`]: client → `front` (TLS) → `wire` (plain, recording) → s3s-fs.
#[derive(Debug)]
pub struct Https {
    /// The CA that signed the front's certificate.
    pub ca: TestCa,
    /// The TLS-terminating front the endpoint points at.
    pub front: TlsFront,
    /// Records the decrypted requests between the front and s3s-fs.
    pub wire: CountingProxy,
}

/// A running s3s-fs with one bucket.
pub struct LocalS3 {
    child: Child,
    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` when started with TLS.
    pub endpoint: String,
    /// s3s-fs's own (plain http) listening address.
    pub addr: SocketAddr,
    /// Set by [`LocalS3::start_tls`].
    pub https: Option<Https>,
    /// Bucket created for this test.
    pub bucket: String,
    /// Server data root (objects are plain files under `<root>/<bucket>/<key>`).
    pub root: tempfile::TempDir,
    /// Holds the 0600 secret file.
    pub secrets: tempfile::TempDir,
}

impl std::fmt::Debug for LocalS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalS3")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .finish()
    }
}

fn wait_answering(addr: SocketAddr, child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .is_ok()
            {
                let mut b = [0u8; 12];
                if s.read(&mut b).map(|n| n > 0).unwrap_or(false) {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The address the server logs it listens on ("server is running at http://ADDR"), once it
/// has; None if it exits or `timeout` passes first.
fn wait_listening(log: &Path, child: &mut Child, timeout: Duration) -> Option<SocketAddr> {
    const MARK: &str = "server is running at http://";
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(at) = text.find(MARK) {
            let addr: String = text[at + MARK.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            return addr.parse().ok();
        }
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

impl LocalS3 {
    /// Starts the server, or returns `None` (after a loud message) when the binary is missing
    /// and `MARBLE_REQUIRE_S3` is unset. Panics when it is required but missing or broken.
    pub fn start() -> Option<LocalS3> {
        let Some(bin) = s3s_fs_binary() else {
            if std::env::var_os("MARBLE_REQUIRE_S3").is_some() {
                panic!(
                    "MARBLE_REQUIRE_S3 is set but s3s-fs is missing: run scripts/install-s3-server.sh"
                );
            }
            eprintln!(
                "\n!!!!! SKIPPING S3 TEST: s3s-fs not found in .tools/bin or PATH; run scripts/install-s3-server.sh !!!!!\n"
            );
            return None;
        };
        let root = tempfile::Builder::new()
            .prefix("marble-s3-")
            .tempdir()
            .expect("temp dir");
        let n = std::sync::atomic::AtomicU64::new(0);
        let bucket = format!(
            "t{}-{}",
            std::process::id(),
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + rand_suffix()
        );
        // s3s-fs buckets are directories of the root.
        std::fs::create_dir_all(root.path().join(&bucket)).expect("bucket dir");
        // Port 0, and the server says which port it got: a free port picked here and
        // released before the server binds it can be taken in between (another test's
        // server, any client socket), and then the answer waited for below would come from
        // someone else's server while this one fails to bind.
        let log_path = root.path().join("server.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut child = Command::new(&bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
            ])
            .arg(root.path())
            // Its "server is running at" line is logged at info.
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn s3s-fs");
        let addr = wait_listening(&log_path, &mut child, Duration::from_secs(20));
        if let Some(addr) = addr.filter(|a| wait_answering(*a, &mut child, Duration::from_secs(20)))
        {
            let secrets = tempfile::tempdir().expect("temp dir");
            let f = secrets.path().join("s3.secret");
            std::fs::write(
                &f,
                format!("access_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\n"),
            )
            .expect("secret file");
            std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod");
            return Some(LocalS3 {
                child,
                endpoint: format!("http://{addr}"),
                addr,
                https: None,
                bucket,
                root,
                secrets,
            });
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("s3s-fs did not start; see {}", log_path.display());
    }

    /// Same server, but clients reach it over HTTPS only: a [`TlsFront`] with a fresh
    /// [`TestCa`]'s certificate, forwarding through a recording [`CountingProxy`].
    /// [`LocalS3::config`] then points at `https://localhost:PORT` and trusts the CA through
    /// `ca_file`, the option production uses.
    pub fn start_tls() -> Option<LocalS3> {
        let mut s3 = Self::start()?;
        let ca = TestCa::new();
        let wire = CountingProxy::start(s3.addr);
        let front = TlsFront::start(wire.addr, &ca);
        s3.endpoint = front.endpoint.clone();
        s3.https = Some(Https { ca, front, wire });
        Some(s3)
    }

    /// The 0600 secret file with the server's keys.
    pub fn secret_file(&self) -> PathBuf {
        self.secrets.path().join("s3.secret")
    }

    /// An image store config for this server (secret-file credentials, small parts so tests
    /// exercise multipart, state dir under the server root).
    pub fn config(&self) -> ImageStoreConfig {
        self.config_for(&self.endpoint)
    }

    /// Same, but through another endpoint (e.g. a [`CountingProxy`]).
    pub fn config_for(&self, endpoint: &str) -> ImageStoreConfig {
        ImageStoreConfig {
            endpoint: Some(endpoint.to_string()),
            ca_file: self.https.as_ref().map(|h| h.ca.ca_file()),
            bucket: self.bucket.clone(),
            credentials: vec![CredentialSource::SecretFile],
            secret_file: Some(self.secret_file()),
            part_size_mib: 5,
            chunk_size_mib: 1,
            concurrency: 3,
            state_dir: Some(self.root.path().join("state")),
            ..ImageStoreConfig::default()
        }
    }

    /// The file s3s-fs stores object `key` in.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.path().join(&self.bucket).join(key)
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0)
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request head as it crossed a [`CountingProxy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// `GET`, `PUT`, …
    pub method: String,
    /// Request target (path and query).
    pub target: String,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An UploadPart (`PUT …?partNumber=…`).
    pub fn is_upload_part(&self) -> bool {
        self.method == "PUT" && self.target.contains("partNumber=")
    }

    /// The part number of an UploadPart.
    pub fn part_number(&self) -> Option<u32> {
        if !self.is_upload_part() {
            return None;
        }
        let (_, rest) = self.target.split_once("partNumber=")?;
        rest.split('&').next()?.parse().ok()
    }

    /// A CreateMultipartUpload (`POST …?uploads`).
    pub fn is_create_multipart(&self) -> bool {
        self.method == "POST"
            && self.target.contains("uploads")
            && !self.target.contains("uploadId")
    }
}

/// A loopback TCP proxy recording the head of every HTTP request it forwards.
pub struct CountingProxy {
    /// `http://127.0.0.1:PORT` to give clients.
    pub endpoint: String,
    /// Listening address.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<SeenRequest>>>,
    gate: SharedGate,
}

impl std::fmt::Debug for CountingProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingProxy")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

/// What the proxy does with the requests a test singled out (see [`CountingProxy::hold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateMode {
    /// Everything goes through.
    Open,
    /// Matching requests beyond the first `pass` wait.
    Hold,
    /// Matching requests (waiting or new) are dropped: the connection is closed unanswered.
    Fail,
}

/// The gate every request passes before it is forwarded.
#[derive(Debug)]
struct Gate {
    mode: GateMode,
    matches: fn(&SeenRequest) -> bool,
    /// Matching requests still let through in `Hold` mode.
    pass: usize,
    /// Requests waiting now.
    held: usize,
}

type SharedGate = Arc<(Mutex<Gate>, Condvar)>;

/// Whether `seen` may go on (false: drop the connection); waits while it is held.
fn pass_gate(gate: &(Mutex<Gate>, Condvar), seen: &SeenRequest) -> bool {
    let (lock, cv) = gate;
    let mut g = lock.lock().expect("proxy gate");
    if g.mode == GateMode::Open || !(g.matches)(seen) {
        return true;
    }
    if g.mode == GateMode::Hold && g.pass > 0 {
        g.pass -= 1;
        return true;
    }
    g.held += 1;
    cv.notify_all();
    while g.mode == GateMode::Hold && g.pass == 0 {
        g = cv.wait(g).expect("proxy gate");
    }
    g.held -= 1;
    cv.notify_all();
    match g.mode {
        GateMode::Fail => false,
        GateMode::Hold => {
            g.pass -= 1;
            true
        }
        GateMode::Open => true,
    }
}

/// Forwards client→server bytes request by request (head + Content-Length body) so request
/// lines are found exactly, not by scanning bodies.
fn pump_requests(
    mut client: TcpStream,
    mut server: TcpStream,
    log: &Mutex<Vec<SeenRequest>>,
    gate: &(Mutex<Gate>, Condvar),
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; 256 * 1024];
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match client.read(&mut tmp) {
                Ok(0) | Err(_) => {
                    let _ = server.shutdown(std::net::Shutdown::Write);
                    return;
                }
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.lines();
        let line = lines.next().unwrap_or_default();
        let mut parts = line.split(' ');
        let seen = SeenRequest {
            method: parts.next().unwrap_or("").to_string(),
            target: parts.next().unwrap_or("").to_string(),
            headers: lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect(),
        };
        let len: usize = seen
            .header("content-length")
            .map_or(0, |v| v.parse().unwrap_or(0));
        if !pass_gate(gate, &seen) {
            // An outage as the client sees it: the connection closes without an answer.
            let _ = client.shutdown(std::net::Shutdown::Both);
            let _ = server.shutdown(std::net::Shutdown::Both);
            return;
        }
        log.lock().expect("proxy log").push(seen);
        if server.write_all(&buf[..head_end]).is_err() {
            return;
        }
        buf.drain(..head_end);
        let mut left = len;
        while left > 0 {
            if buf.is_empty() {
                match client.read(&mut tmp) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            }
            let n = left.min(buf.len());
            if server.write_all(&buf[..n]).is_err() {
                return;
            }
            buf.drain(..n);
            left -= n;
        }
    }
}

impl CountingProxy {
    /// Starts a proxy to `upstream` on a free loopback port (threads; lives for the process).
    pub fn start(upstream: SocketAddr) -> CountingProxy {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = l.local_addr().expect("addr");
        let endpoint = format!("http://{addr}");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let gate: SharedGate = Arc::new((
            Mutex::new(Gate {
                mode: GateMode::Open,
                matches: |_| false,
                pass: 0,
                held: 0,
            }),
            Condvar::new(),
        ));
        let g = gate.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let Ok(s) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (c2, s2) = (c.try_clone().expect("clone"), s.try_clone().expect("clone"));
                let (log, g) = (log.clone(), g.clone());
                std::thread::spawn(move || pump_requests(c, s, &log, &g));
                std::thread::spawn(move || {
                    let (mut s2, mut c2) = (s2, c2);
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        CountingProxy {
            endpoint,
            addr,
            requests,
            gate,
        }
    }

    /// From now on, requests for which `matches` holds wait before being forwarded, except
    /// the first `pass` of them. Waiting requests are not recorded until they go on.
    pub fn hold(&self, matches: fn(&SeenRequest) -> bool, pass: usize) {
        let (lock, cv) = &*self.gate;
        let mut g = lock.lock().expect("proxy gate");
        *g = Gate {
            mode: GateMode::Hold,
            matches,
            pass,
            held: g.held,
        };
        cv.notify_all();
    }

    /// Number of requests waiting at the gate now.
    pub fn held(&self) -> usize {
        self.gate.0.lock().expect("proxy gate").held
    }

    /// Let the waiting requests and every later one through.
    pub fn release(&self) {
        self.set_mode(GateMode::Open);
    }

    /// Drop the waiting requests and every later matching one: each connection is closed
    /// unanswered, as when the server goes away (the dropped requests are not recorded).
    pub fn fail_held(&self) {
        self.set_mode(GateMode::Fail);
    }

    fn set_mode(&self, mode: GateMode) {
        let (lock, cv) = &*self.gate;
        lock.lock().expect("proxy gate").mode = mode;
        cv.notify_all();
    }

    /// `METHOD TARGET` of every request seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    }

    /// Every request head seen so far.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.requests.lock().expect("proxy log").clone()
    }

    /// Forgets what was recorded.
    pub fn reset(&self) {
        self.requests.lock().expect("proxy log").clear();
    }

    /// Number of UploadPart requests (`PUT …?partNumber=…`).
    pub fn upload_parts(&self) -> usize {
        self.seen().iter().filter(|r| r.is_upload_part()).count()
    }
}
