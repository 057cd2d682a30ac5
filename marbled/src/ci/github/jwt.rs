//! GitHub App JWTs: the App's private key (the PEM GitHub lets you download, PKCS#1, or
//! PKCS#8) and the short-lived RS256 token signed with it, which buys installation tokens
//! ([`super::app`]). GitHub's rules ("Generating a JSON Web Token (JWT) for a GitHub App"):
//! `alg` RS256, `iat` 60 s in the past against clock drift, `exp` no more than 10 minutes
//! ahead, `iss` the App's id.
//!
//! Owns the signing only: no I/O, no clock (time is an argument). The crypto is aws-lc's
//! (`aws_lc_rs::signature`), the provider rustls already uses (docs/ARCHITECTURE.md, "TLS
//! and crypto: one choice"). Neither the key nor a JWT is ever formatted: both are
//! [`Secret`]s or redacted, and errors name the problem, never the bytes.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};

use crate::ci::secret::Secret;

/// How far `iat` lies in the past: GitHub recommends 60 s against clock drift.
pub const BACKDATE: Duration = Duration::from_secs(60);
/// How far `exp` lies ahead of now. GitHub refuses more than 10 minutes; one minute less
/// leaves room for a clock that runs slightly ahead of GitHub's.
pub const LIFETIME: Duration = Duration::from_secs(9 * 60);

/// The JOSE header of every App JWT (`{"alg":"RS256","typ":"JWT"}`).
const HEADER: &str = r#"{"alg":"RS256","typ":"JWT"}"#;

/// Why the App key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppKeyError {
    /// No PEM private key in the file (the reason never quotes the file).
    #[error(
        "no PEM private key in it (expected \"-----BEGIN RSA PRIVATE KEY-----\" as GitHub's \
         download has it, or \"-----BEGIN PRIVATE KEY-----\")"
    )]
    Pem,
    /// A private key, but not one RS256 can use.
    #[error("not an RSA key GitHub accepts (RSA, 2048 to 8192 bits): {0}")]
    Rejected(String),
    /// aws-lc refused to sign (should not happen with a key it accepted).
    #[error("RS256 signing failed")]
    Sign,
}

/// The claims of an App JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issued at (unix seconds), [`BACKDATE`] before now.
    pub iat: u64,
    /// Expires at (unix seconds), [`LIFETIME`] after now.
    pub exp: u64,
    /// The App's id.
    pub iss: String,
}

impl Claims {
    /// The claims of a JWT for App `app_id` made at `now`.
    pub fn new(app_id: u64, now: SystemTime) -> Self {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self {
            iat: secs.saturating_sub(BACKDATE.as_secs()),
            exp: secs.saturating_add(LIFETIME.as_secs()),
            iss: app_id.to_string(),
        }
    }
}

/// A GitHub App's private key, parsed and ready to sign.
pub struct AppKey(RsaKeyPair);

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppKey(<redacted>)")
    }
}

impl AppKey {
    /// Parse the PEM text of the key file (`-----BEGIN RSA PRIVATE KEY-----` as GitHub
    /// hands it out, or PKCS#8 `-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &Secret) -> Result<Self, AppKeyError> {
        let der =
            PrivateKeyDer::from_pem_slice(pem.expose().as_bytes()).map_err(|_| AppKeyError::Pem)?;
        let parsed = match &der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            _ => {
                return Err(AppKeyError::Rejected(
                    "an EC key; GitHub Apps sign with RSA".into(),
                ));
            }
        };
        parsed
            .map(AppKey)
            .map_err(|e| AppKeyError::Rejected(e.to_string()))
    }

    /// A JWT for App `app_id`, made at `now` (see [`Claims::new`]).
    pub fn jwt(&self, app_id: u64, now: SystemTime) -> Result<Secret, AppKeyError> {
        let claims =
            serde_json::to_vec(&Claims::new(app_id, now)).map_err(|_| AppKeyError::Sign)?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let mut signature = vec![0; self.0.public_modulus_len()];
        self.0
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| AppKeyError::Sign)?;
        Ok(Secret::new(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        )))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    /// The contents of the DER element at the start of `der`, and what follows it.
    fn element(der: &[u8]) -> (&[u8], &[u8]) {
        let (len, start) = match der[1] {
            n if n < 0x80 => (usize::from(n), 2),
            0x81 => (usize::from(der[2]), 3),
            0x82 => (usize::from(der[2]) << 8 | usize::from(der[3]), 4),
            n => panic!("length form {n:#x}"),
        };
        (&der[start..start + len], &der[start + len..])
    }

    /// PEM `label` around `der`, 64 columns as openssl writes it.
    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// A fresh 2048-bit key: its PKCS#1 PEM (as GitHub's download), its PKCS#8 PEM and the
    /// public key (PKCS#1 `RSAPublicKey` DER) to verify with.
    pub(crate) fn key_pair() -> (String, String, Vec<u8>) {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs8 = key.as_der().unwrap();
        // PrivateKeyInfo ::= SEQUENCE { version, algorithm, privateKey OCTET STRING }: the
        // octet string holds the PKCS#1 RSAPrivateKey.
        let (info, _) = element(pkcs8.as_ref());
        let (_, rest) = element(info);
        let (_, rest) = element(rest);
        let (pkcs1, _) = element(rest);
        (
            pem("RSA PRIVATE KEY", pkcs1),
            pem("PRIVATE KEY", pkcs8.as_ref()),
            key.public_key().as_ref().to_vec(),
        )
    }

    /// Check `jwt`'s signature with `public`; its header and claims.
    fn verify(jwt: &str, public: &[u8]) -> (serde_json::Value, Claims) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("signature verifies with the public key");
        let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        (header, claims)
    }

    #[test]
    fn a_jwt_is_rs256_backdated_a_minute_and_lives_under_ten() {
        let (pkcs1, pkcs8, public) = key_pair();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for pem in [pkcs1, pkcs8] {
            let key = AppKey::from_pem(&Secret::new(pem.clone())).unwrap();
            let jwt = key.jwt(123_456, now).unwrap();
            let (header, claims) = verify(jwt.expose(), &public);
            assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT"}));
            assert_eq!(claims.iss, "123456");
            assert_eq!(claims.iat, 1_700_000_000 - 60);
            assert_eq!(claims.exp, 1_700_000_000 + 540);
            assert!(claims.exp - 1_700_000_000 <= 600, "GitHub: at most 10 min");
            assert!(!format!("{key:?}").contains(&pem[40..80]));
        }
    }

    #[test]
    fn a_key_that_is_not_rsa_pem_is_refused_without_quoting_it() {
        let garbage = Secret::new("ghp_notAKeyButAToken0123456789");
        let err = AppKey::from_pem(&garbage).unwrap_err();
        assert_eq!(err, AppKeyError::Pem);
        assert!(err.to_string().contains("BEGIN RSA PRIVATE KEY"), "{err}");
        let truncated = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----\n";
        let err = AppKey::from_pem(&Secret::new(truncated)).unwrap_err();
        assert!(matches!(err, AppKeyError::Rejected(_)), "{err:?}");
        assert!(!err.to_string().contains("MIIB"), "{err}");
    }
}
