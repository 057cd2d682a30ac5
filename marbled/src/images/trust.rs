//! The S3 client's HTTPS stack: the SDK's hyper client over rustls with the aws-lc provider
//! (the project's one TLS/crypto choice, shared with the CI front-ends), trusting the OS's
//! root certificates plus the PEM bundle `[images] ca_file` names (a site CA such as CERN's
//! Root and Grid CAs, or a test CA). The bundle is read and checked here, before the SDK sees
//! it: the SDK only parses it when it opens its first connection, and panics on bad input.

use std::path::Path;

use aws_sdk_s3::config::SharedHttpClient;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use super::ImageError;

/// The HTTP client every S3 request goes through: OS roots, plus `ca_file`'s certificates.
pub(crate) fn http_client(ca_file: Option<&Path>) -> Result<SharedHttpClient, ImageError> {
    let mut trust = TrustStore::default().with_native_roots(true);
    if let Some(path) = ca_file {
        let (pem, count) = read_ca_bundle(path)?;
        tracing::debug!(ca_file = %path.display(), certificates = count, "trusting extra CA certificates for S3");
        trust = trust.with_pem_certificate(pem);
    }
    let tls = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| ImageError::Config(format!("tls context: {e}")))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(tls)
        .build_https())
}

/// Reads a PEM bundle and checks that every certificate in it can serve as a trust anchor.
/// Returns the file's bytes and the number of certificates.
fn read_ca_bundle(path: &Path) -> Result<(Vec<u8>, usize), ImageError> {
    let bad = |reason: String| ImageError::Config(format!("ca_file {}: {reason}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            "no certificate in it (expected PEM blocks `-----BEGIN CERTIFICATE-----`)".into(),
        ));
    }
    // The same check the SDK's rustls client applies when it builds its root store.
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        roots
            .add(cert.clone())
            .map_err(|e| bad(format!("certificate {} is not usable as a CA: {e}", i + 1)))?;
    }
    Ok((pem, certs.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).expect("write");
        p
    }

    #[test]
    fn missing_garbage_and_certificate_free_files_are_config_errors_naming_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("nope.pem");
        let garbage = write(
            dir.path(),
            "garbage.pem",
            b"-----BEGIN CERTIFICATE-----\n%%%not base64%%%\n-----END CERTIFICATE-----\n",
        );
        let empty = write(dir.path(), "empty.pem", b"just some text\n");
        let not_a_cert = write(
            dir.path(),
            "junk-der.pem",
            b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        );
        for (path, want) in [
            (&missing, "cannot read"),
            (&garbage, "not a PEM certificate bundle"),
            (&empty, "no certificate in it"),
            (&not_a_cert, "certificate 1 is not usable as a CA"),
        ] {
            let err = http_client(Some(path)).expect_err("must refuse");
            let msg = err.to_string();
            assert!(matches!(err, ImageError::Config(_)), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(want), "{path:?}: {msg}");
        }
    }

    #[test]
    fn without_a_ca_file_the_client_builds_on_the_os_roots() {
        assert!(http_client(None).is_ok());
    }
}
