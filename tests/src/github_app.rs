//! The GitHub App side of the fake GitHub ([`crate::fake_github`]) and the key pairs tests
//! give it: a real RS256 key pair generated at test time (aws-lc, as the daemon signs), its
//! private key written as GitHub's download has it (PKCS#1 `-----BEGIN RSA PRIVATE
//! KEY-----`, mode 0600).
//!
//! [`FakeApp`] plays GitHub's App endpoints: `GET /repos/{owner}/{repo}/installation`,
//! `GET /orgs/{org}/installation` and `POST /app/installations/{id}/access_tokens`, each
//! only with a JWT whose RS256 signature verifies with the App's public key, whose `iss` is
//! the App's id and whose `exp` lies no more than 10 minutes ahead (GitHub's rules; 401
//! "A JSON web token could not be decoded" otherwise). The installation tokens it hands out
//! expire after a lifetime the test picks (short, to see refreshes), and with an App the
//! fake's other endpoints accept only a live installation token: an expired or revoked one
//! is a 401, counted.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::fake_github::Reply;

/// A GitHub App's key pair, made for one test.
#[derive(Clone)]
pub struct AppKeyPair {
    /// The private key as GitHub's download has it (PKCS#1 PEM).
    pub private_pem: String,
    /// The public key (PKCS#1 `RSAPublicKey` DER), what GitHub keeps to check JWTs.
    pub public_der: Vec<u8>,
}

impl std::fmt::Debug for AppKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKeyPair(<private>)")
    }
}

/// The contents of the DER element at the start of `der`, and what follows it.
fn der_element(der: &[u8]) -> (&[u8], &[u8]) {
    let (len, start) = match der[1] {
        n if n < 0x80 => (usize::from(n), 2),
        0x81 => (usize::from(der[2]), 3),
        0x82 => ((usize::from(der[2]) << 8) | usize::from(der[3]), 4),
        n => panic!("DER length form {n:#x}"),
    };
    (&der[start..start + len], &der[start + len..])
}

impl AppKeyPair {
    /// A fresh 2048-bit RSA key pair.
    pub fn generate() -> Self {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).expect("generate an RSA key");
        let pkcs8 = key.as_der().expect("PKCS#8 of the key");
        // PrivateKeyInfo ::= SEQUENCE { version, algorithm, privateKey OCTET STRING }: the
        // octet string is the PKCS#1 RSAPrivateKey GitHub's download holds.
        let (info, _) = der_element(pkcs8.as_ref());
        let (_, rest) = der_element(info);
        let (_, rest) = der_element(rest);
        let (pkcs1, _) = der_element(rest);
        let b64 = STANDARD.encode(pkcs1);
        let body: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ascii"))
            .collect();
        Self {
            private_pem: format!(
                "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
                body.join("\n")
            ),
            public_der: key.public_key().as_ref().to_vec(),
        }
    }

    /// Write the private key to `dir/name` with mode 0600, as the docs tell operators to.
    pub fn write_key_file(&self, dir: &Path, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, &self.private_pem).expect("write the App key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod 600 the App key");
        path
    }

    /// Lines of the private key's base64 body (what must never show up anywhere).
    pub fn private_lines(&self) -> Vec<String> {
        self.private_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_owned)
            .collect()
    }
}

/// One installation token the fake handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The token.
    pub token: String,
    /// When it was minted (unix ms).
    pub minted_ms: u64,
    /// When it expires (unix ms).
    pub expires_ms: u64,
    /// Whether the token before it was still live when this one was asked for (a refresh
    /// ahead of expiry, not a replacement after it).
    pub previous_live: bool,
}

/// The claims of one JWT the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenJwt {
    /// The JWT itself (to look for in logs).
    pub jwt: String,
    /// `iat`.
    pub iat: u64,
    /// `exp`.
    pub exp: u64,
    /// When it arrived (unix seconds).
    pub received: u64,
}

/// GitHub's App endpoints and installation tokens, as the fake plays them.
#[derive(Debug)]
pub struct FakeApp {
    app_id: u64,
    installation_id: u64,
    public_der: Vec<u8>,
    /// How long the installation tokens handed out from now on live.
    pub lifetime: Duration,
    /// Every installation token handed out, oldest first.
    pub tokens: Vec<IssuedToken>,
    /// Every JWT accepted.
    pub jwts: Vec<SeenJwt>,
    /// JWTs refused (bad signature, claims, or none).
    pub jwt_refusals: u32,
    /// Requests with an installation token that had expired.
    pub expired_uses: u32,
    /// Requests with a token that was revoked or never issued.
    pub unknown_uses: u32,
    /// Tokens minted before this index are revoked.
    revoked_before: usize,
}

fn now_ms() -> u64 {
    crate::fake_github::now_ms()
}

fn unauthorized(message: &str) -> Reply {
    Reply::json(
        StatusCode::UNAUTHORIZED,
        &json!({"message": message,
                "documentation_url": "https://docs.github.com/rest",
                "status": "401"}),
    )
}

impl FakeApp {
    /// App `app_id` installed as `installation_id` (on every repository and organisation),
    /// checking JWTs with `keys`' public key; its installation tokens live `lifetime`.
    pub fn new(app_id: u64, installation_id: u64, keys: &AppKeyPair, lifetime: Duration) -> Self {
        Self {
            app_id,
            installation_id,
            public_der: keys.public_der.clone(),
            lifetime,
            tokens: Vec::new(),
            jwts: Vec::new(),
            jwt_refusals: 0,
            expired_uses: 0,
            unknown_uses: 0,
            revoked_before: 0,
        }
    }

    /// Revoke every token handed out so far (GitHub's `DELETE /installation/token`, or an
    /// admin suspending and re-enabling the App).
    pub fn revoke_all(&mut self) {
        self.revoked_before = self.tokens.len();
    }

    /// The App endpoints' answer, or None for another endpoint.
    pub(crate) fn route(&mut self, req: &Request<()>) -> Option<Reply> {
        let path = req.uri().path();
        let method = req.method().as_str();
        let discovery = method == "GET"
            && path.ends_with("/installation")
            && (path.starts_with("/repos/") || path.starts_with("/orgs/"));
        let mint = method == "POST"
            && path.starts_with("/app/installations/")
            && path.ends_with("/access_tokens");
        if !discovery && !mint {
            return None;
        }
        if let Err(why) = self.check_jwt(bearer(req)) {
            self.jwt_refusals += 1;
            return Some(unauthorized(&format!(
                "A JSON web token could not be decoded ({why})"
            )));
        }
        if discovery {
            return Some(Reply::json(
                StatusCode::OK,
                &json!({"id": self.installation_id, "app_id": self.app_id,
                        "target_type": if path.starts_with("/orgs/") { "Organization" } else { "User" },
                        "permissions": {"administration": "write", "actions": "read"}}),
            ));
        }
        let wanted = format!("/app/installations/{}/access_tokens", self.installation_id);
        if path != wanted {
            return Some(Reply::json(
                StatusCode::NOT_FOUND,
                &json!({"message": "Not Found", "status": "404"}),
            ));
        }
        Some(self.mint())
    }

    fn mint(&mut self) -> Reply {
        let now = now_ms();
        let previous_live = self.tokens.last().is_some_and(|t| now < t.expires_ms);
        let expires_ms = now + u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX);
        let token = format!(
            "ghs_{:036}",
            now.wrapping_mul(2_654_435_761) ^ self.tokens.len() as u64
        );
        self.tokens.push(IssuedToken {
            token: token.clone(),
            minted_ms: now,
            expires_ms,
            previous_live,
        });
        let expires_at =
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(expires_ms));
        Reply::json(
            StatusCode::CREATED,
            &json!({"token": token, "expires_at": expires_at.to_string(),
                    "permissions": {"administration": "write", "actions": "read"},
                    "repository_selection": "all"}),
        )
    }

    /// Whether a request to another endpoint carries a live installation token (counting
    /// the expired and unknown ones).
    pub(crate) fn accepts(&mut self, req: &Request<()>) -> bool {
        let Some(token) = bearer(req) else {
            return false;
        };
        let now = now_ms();
        match self.tokens.iter().position(|t| t.token == token) {
            Some(i) if i < self.revoked_before => {
                self.unknown_uses += 1;
                false
            }
            Some(i) if now >= self.tokens[i].expires_ms => {
                self.expired_uses += 1;
                false
            }
            Some(_) => true,
            None => {
                self.unknown_uses += 1;
                false
            }
        }
    }

    /// GitHub's checks of an App JWT.
    fn check_jwt(&mut self, jwt: Option<&str>) -> Result<(), String> {
        let jwt = jwt.ok_or("no bearer token")?;
        let parts: Vec<&str> = jwt.split('.').collect();
        let [header, claims, signature] = parts[..] else {
            return Err("not three parts".into());
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string());
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.public_der)
            .verify(format!("{header}.{claims}").as_bytes(), &decode(signature)?)
            .map_err(|_| "signature does not verify with the App's public key")?;
        let header: Value = serde_json::from_slice(&decode(header)?).map_err(|e| e.to_string())?;
        if header["alg"] != "RS256" {
            return Err(format!("alg {}", header["alg"]));
        }
        let claims: Value = serde_json::from_slice(&decode(claims)?).map_err(|e| e.to_string())?;
        let iss = match &claims["iss"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if iss != self.app_id.to_string() {
            return Err(format!("iss {iss}"));
        }
        let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
            return Err("iat and exp must be numbers".into());
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if exp <= now || exp > now + 600 || iat > now + 60 || iat >= exp {
            return Err(format!("iat {iat} exp {exp} at {now}"));
        }
        self.jwts.push(SeenJwt {
            jwt: jwt.to_owned(),
            iat,
            exp,
            received: now,
        });
        Ok(())
    }
}

fn bearer(req: &Request<()>) -> Option<&str> {
    req.headers()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}
