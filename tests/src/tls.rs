//! HTTPS for the loopback S3 server, so image tests run over TLS as production does (CERN's
//! endpoint is `https://`, and the SDK encodes uploads differently over TLS than over plain
//! http). [`TestCa`] makes a private certificate authority and a server certificate for
//! `localhost` / `127.0.0.1` (rcgen) and writes the CA as the PEM file `[images] ca_file`
//! points at; [`TlsFront`] terminates TLS on a free loopback port and forwards the decrypted
//! bytes to an upstream address (s3s-fs, or a [`crate::s3::CountingProxy`] in front of it).
//!
//! Both use rustls with the aws-lc provider, the one TLS stack of the project.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Host name the test server's certificate is issued for (a DNS name, so the client sends SNI
/// and checks a DNS subject name as it does against a real endpoint).
pub const TLS_HOST: &str = "localhost";

/// A private CA (written to `<dir>/ca.pem`) and one server certificate it signed.
pub struct TestCa {
    dir: tempfile::TempDir,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("ca_file", &self.ca_file())
            .finish()
    }
}

impl TestCa {
    /// A fresh CA and a server certificate for [`TLS_HOST`] and `127.0.0.1`.
    pub fn new() -> TestCa {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: two test CAs must not look like one to a verifier.
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "MARBLE test CA {}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        ca_params.distinguished_name.push(DnType::CommonName, name);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("ca key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-signed ca");
        let issuer = Issuer::new(ca_params, ca_key);

        let mut server_params =
            CertificateParams::new(vec![TLS_HOST.to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        server_params
            .distinguished_name
            .push(DnType::CommonName, TLS_HOST);
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let server_key = KeyPair::generate().expect("server key");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("server cert");

        let dir = tempfile::Builder::new()
            .prefix("marble-ca-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
        TestCa {
            dir,
            server_chain: vec![server_cert.der().clone()],
            server_key: server_key.serialize_der(),
        }
    }

    /// The CA certificate as PEM: what `[images] ca_file` names.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A directory that lives as long as the CA (for other test files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(self.server_chain.clone(), key)
            .expect("server certificate");
        Arc::new(config)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts of TLS handshakes the front saw.
#[derive(Debug, Default)]
struct Handshakes {
    completed: AtomicUsize,
    failed: AtomicUsize,
}

/// A TLS-terminating TCP proxy on a free loopback port, run by its own thread and runtime
/// (so sync tests and daemon processes can use it too); stopped on drop.
pub struct TlsFront {
    /// Listening address (127.0.0.1).
    pub addr: SocketAddr,
    /// `https://localhost:PORT`.
    pub endpoint: String,
    handshakes: Arc<Handshakes>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TlsFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFront")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl TlsFront {
    /// Serves `ca`'s server certificate and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr, ca: &TestCa) -> TlsFront {
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tls front");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let handshakes = Arc::new(Handshakes::default());
        let counts = handshakes.clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tls front runtime");
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((tcp, _)) = accepted else { continue };
                            let acceptor = acceptor.clone();
                            let counts = counts.clone();
                            tokio::spawn(async move {
                                // A client that does not trust the CA aborts the handshake.
                                let Ok(mut tls) = acceptor.accept(tcp).await else {
                                    counts.failed.fetch_add(1, Ordering::Relaxed);
                                    return;
                                };
                                counts.completed.fetch_add(1, Ordering::Relaxed);
                                let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await
                                else {
                                    return;
                                };
                                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                            });
                        }
                    }
                }
            });
        });
        TlsFront {
            addr,
            endpoint: format!("https://{TLS_HOST}:{}", addr.port()),
            handshakes,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// TLS handshakes completed so far (connections that really carried requests over TLS).
    pub fn handshakes_completed(&self) -> usize {
        self.handshakes.completed.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed (e.g. a client that does not trust the CA).
    pub fn handshakes_failed(&self) -> usize {
        self.handshakes.failed.load(Ordering::Relaxed)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
