//! The S3 access layer: builds the aws-sdk-s3 client for S3-compatible servers (Ceph RGW,
//! Garage, s3s-fs) and wraps the handful of calls MARBLE makes, mapping SDK errors to
//! [`ImageError::S3`] and "not found" to `None`. With [`Bucket::count_into`] it also adds the
//! object bytes it moves to a [`WireBytes`] (the daemon's transfer metrics).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::config::{
    BehaviorVersion, Builder, Credentials, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use super::ImageError;
use super::config::{ChecksumMode, ImageStoreConfig};
use super::creds::{self, ResolvedCredentials, S3cfg};
use super::s3error::s3_err;

/// The condition of [`Bucket::put_small_if`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutIf<'a> {
    /// `If-None-Match: *`: create only if no object has the key.
    Absent,
    /// `If-Match`: replace only the object with this (unquoted) ETag.
    Matches(&'a str),
}

/// What a conditional PUT did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written; its new ETag (unquoted) when the server sent one.
    Written {
        /// The new ETag.
        etag: Option<String>,
    },
    /// The condition did not hold (412 or 409): nothing was written by this request.
    ConditionFailed,
}

/// What [`Bucket::get_small_if_changed`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// No object has the key.
    Absent,
    /// The object still has the ETag given (304: no body sent).
    NotModified,
    /// The object, with its ETag (unquoted) when the server sent one.
    Body {
        /// The content.
        data: Bytes,
        /// Its ETag.
        etag: Option<String>,
    },
}

/// One object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, unix seconds.
    pub modified_unix: Option<i64>,
}

/// Size and ETag of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// Size.
    pub size: u64,
    /// ETag without quotes.
    pub etag: Option<String>,
}

/// Object bytes moved by the buckets that count into it, since it was created.
///
/// Counted per request that succeeded, so they are the bytes S3 acknowledged (request bodies
/// of part uploads and puts) or that arrived in full (response bodies of gets): a part that
/// is not sent again because a resumed push found it already stored adds nothing. HTTP
/// headers, XML bodies (listings, multipart completion) and the SDK's own retries of a failed
/// request are not counted.
#[derive(Debug, Default)]
pub struct WireBytes {
    sent: AtomicU64,
    received: AtomicU64,
}

impl WireBytes {
    /// Bytes of object data sent to S3.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Bytes of object data received from S3.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// A bucket on an S3-compatible server.
#[derive(Clone, Debug)]
pub struct Bucket {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Where moved object bytes are added (None: not counted).
    wire: Option<Arc<WireBytes>>,
}

fn is_not_found<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    match e {
        SdkError::ServiceError(s) => {
            matches!(
                s.err().code(),
                Some("NoSuchKey" | "NotFound" | "NoSuchUpload" | "404")
            )
        }
        _ => false,
    }
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

impl Bucket {
    /// Builds the client from config: endpoint (or the s3cfg's), trust roots (`ca_file`),
    /// region, path style, checksum mode, credentials in the configured order.
    pub async fn connect(cfg: &ImageStoreConfig) -> Result<Self, ImageError> {
        cfg.validate()?;
        let http_client = super::trust::http_client(cfg.ca_file.as_deref())?;
        let s3cfg_file = cfg
            .s3cfg
            .clone()
            .or_else(S3cfg::default_path)
            .filter(|p| p.exists());
        let s3cfg = match &s3cfg_file {
            Some(p) => Some(creds::load_private(p)?),
            None => None,
        };
        let endpoint = cfg
            .endpoint
            .clone()
            .or_else(|| s3cfg.as_ref().and_then(S3cfg::endpoint))
            .ok_or_else(|| {
                ImageError::Config("no endpoint configured and no host_base in an s3cfg".into())
            })?;
        let (req, resp) = match cfg.checksums {
            ChecksumMode::WhenRequired => (
                RequestChecksumCalculation::WhenRequired,
                ResponseChecksumValidation::WhenRequired,
            ),
            ChecksumMode::WhenSupported => (
                RequestChecksumCalculation::WhenSupported,
                ResponseChecksumValidation::WhenSupported,
            ),
        };
        let mut b = Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http_client.clone())
            .endpoint_url(&endpoint)
            .region(Region::new(cfg.region.clone()))
            .force_path_style(cfg.path_style)
            .request_checksum_calculation(req)
            .response_checksum_validation(resp)
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(std::time::Duration::from_secs(30))
                    .build(),
            );
        match creds::resolve(cfg)? {
            ResolvedCredentials::Static(k) => {
                tracing::debug!(source = k.source, access_key = %k.access_key, "using static s3 credentials");
                b = b.credentials_provider(Credentials::new(
                    k.access_key,
                    k.secret_key.expose(),
                    k.session_token.map(|t| t.expose().to_string()),
                    None,
                    k.source,
                ));
            }
            ResolvedCredentials::AwsChain => {
                tracing::debug!("using the aws default credentials chain");
                let sdk = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(http_client)
                    .region(Region::new(cfg.region.clone()))
                    .load()
                    .await;
                if let Some(p) = sdk.credentials_provider() {
                    b = b.credentials_provider(p);
                }
            }
        }
        Ok(Self {
            client: aws_sdk_s3::Client::from_conf(b.build()),
            bucket: cfg.bucket.clone(),
            wire: None,
        })
    }

    /// From now on, add the object bytes this bucket (and its clones made afterwards) sends
    /// and receives to `wire`.
    pub fn count_into(&mut self, wire: Arc<WireBytes>) {
        self.wire = Some(wire);
    }

    fn count_sent(&self, n: usize) {
        if let Some(w) = &self.wire {
            w.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn count_received(&self, n: usize) {
        if let Some(w) = &self.wire {
            w.received.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// The bucket name.
    pub fn name(&self) -> &str {
        &self.bucket
    }

    /// HEAD; `None` if the object does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectHead>, ImageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => Ok(Some(ObjectHead {
                size: o.content_length().unwrap_or(0).max(0) as u64,
                etag: o.e_tag().map(unquote),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(s3_err("head", key, &e)),
        }
    }

    /// GET a whole (small) object into memory; `None` if missing.
    pub async fn get_small(&self, key: &str) -> Result<Option<Bytes>, ImageError> {
        Ok(self.get_small_tagged(key).await?.map(|(data, _etag)| data))
    }

    /// Ranged GET of `len` bytes at `offset`, pinned to `etag` when given (`If-Match`), so a
    /// concurrently replaced object cannot be mixed into one download. Short reads are errors.
    pub async fn get_range(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        etag: Option<&str>,
    ) -> Result<Bytes, ImageError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let mut req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", offset, offset + len - 1));
        if let Some(t) = etag {
            req = req.if_match(format!("\"{t}\""));
        }
        let o = req.send().await.map_err(|e| s3_err("get range", key, &e))?;
        let data = o
            .body
            .collect()
            .await
            .map_err(|e| ImageError::S3 {
                op: "get range",
                key: key.to_string(),
                detail: e.to_string(),
            })?
            .into_bytes();
        // Received even when short (the check below then fails the transfer).
        self.count_received(data.len());
        if data.len() as u64 != len {
            return Err(ImageError::Corrupt {
                name: key.to_string(),
                reason: format!("range at {offset} returned {} of {len} bytes", data.len()),
            });
        }
        Ok(data)
    }

    /// PUT a small object from memory (manifests).
    pub async fn put_small(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), ImageError> {
        let md5 = super::md5_base64(&body);
        let len = body.len();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_md5(md5)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| s3_err("put", key, &e))?;
        self.count_sent(len);
        Ok(())
    }

    /// GET a whole (small) object with its ETag (unquoted); `None` if missing. For
    /// read-modify-write with [`Bucket::put_small_if`].
    pub async fn get_small_tagged(
        &self,
        key: &str,
    ) -> Result<Option<(Bytes, Option<String>)>, ImageError> {
        Ok(match self.get_small_if_changed(key, None).await? {
            Fetched::Body { data, etag } => Some((data, etag)),
            // No ETag was given: the server cannot answer "not modified".
            Fetched::Absent | Fetched::NotModified => None,
        })
    }

    /// GET a whole (small) object unless it still has `etag` (`If-None-Match`: the server
    /// answers 304 without the body), for a reader that polls an object which rarely changes.
    pub async fn get_small_if_changed(
        &self,
        key: &str,
        etag: Option<&str>,
    ) -> Result<Fetched, ImageError> {
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some(t) = etag {
            req = req.if_none_match(format!("\"{t}\""));
        }
        match req.send().await {
            Ok(o) => {
                let etag = o.e_tag().map(unquote);
                let data = o.body.collect().await.map_err(|e| ImageError::S3 {
                    op: "get",
                    key: key.to_string(),
                    detail: e.to_string(),
                })?;
                let data = data.into_bytes();
                self.count_received(data.len());
                Ok(Fetched::Body { data, etag })
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 304) => {
                Ok(Fetched::NotModified)
            }
            Err(e) if is_not_found(&e) => Ok(Fetched::Absent),
            Err(e) => Err(s3_err("get", key, &e)),
        }
    }

    /// PUT a small object only if `condition` holds on the server (`If-None-Match: *` or
    /// `If-Match: "<etag>"`), atomically on servers that honour the headers. A failed
    /// condition (412, or 409 `ConditionalRequestConflict` when another conditional write
    /// was in flight) is [`PutOutcome::ConditionFailed`], not an error: the caller lost a race.
    pub async fn put_small_if(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        condition: PutIf<'_>,
    ) -> Result<PutOutcome, ImageError> {
        let md5 = super::md5_base64(&body);
        let len = body.len();
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_md5(md5)
            .body(ByteStream::from(body));
        req = match condition {
            PutIf::Absent => req.if_none_match("*"),
            PutIf::Matches(etag) => req.if_match(format!("\"{etag}\"")),
        };
        match req.send().await {
            Ok(o) => {
                self.count_sent(len);
                Ok(PutOutcome::Written {
                    etag: o.e_tag().map(unquote),
                })
            }
            Err(SdkError::ServiceError(s)) if matches!(s.raw().status().as_u16(), 409 | 412) => {
                Ok(PutOutcome::ConditionFailed)
            }
            Err(e) => Err(s3_err("put", key, &e)),
        }
    }

    /// CreateMultipartUpload; returns the upload id.
    pub async fn create_multipart(&self, key: &str) -> Result<String, ImageError> {
        let o = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .send()
            .await
            .map_err(|e| s3_err("create multipart upload", key, &e))?;
        o.upload_id()
            .map(str::to_string)
            .ok_or_else(|| ImageError::S3 {
                op: "create multipart upload",
                key: key.to_string(),
                detail: "server returned no upload id".into(),
            })
    }

    /// UploadPart with Content-MD5; returns the ETag (unquoted). RGW and S3 return the part's
    /// MD5 as ETag, which the caller compares.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
        md5_b64: &str,
    ) -> Result<String, ImageError> {
        let len = body.len();
        let o = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_md5(md5_b64)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| s3_err("upload part", key, &e))?;
        self.count_sent(len);
        Ok(o.e_tag().map(unquote).unwrap_or_default())
    }

    /// ListParts: `(number, etag, size)`; `None` when the upload no longer exists.
    pub async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<Vec<(i32, String, u64)>>, ImageError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut req = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id);
            if let Some(m) = &marker {
                req = req.part_number_marker(m);
            }
            let o = match req.send().await {
                Ok(o) => o,
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(s3_err("list parts", key, &e)),
            };
            for p in o.parts() {
                out.push((
                    p.part_number().unwrap_or(0),
                    p.e_tag().map(unquote).unwrap_or_default(),
                    p.size().unwrap_or(0).max(0) as u64,
                ));
            }
            match (o.is_truncated(), o.next_part_number_marker()) {
                (Some(true), Some(m)) => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(Some(out))
    }

    /// CompleteMultipartUpload; returns the object's ETag.
    pub async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<Option<String>, ImageError> {
        let parts = parts
            .iter()
            .map(|(n, e)| {
                CompletedPart::builder()
                    .part_number(*n)
                    .e_tag(format!("\"{e}\""))
                    .build()
            })
            .collect();
        let o = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_err("complete multipart upload", key, &e))?;
        Ok(o.e_tag().map(unquote))
    }

    /// AbortMultipartUpload (errors ignored by callers that only tidy up).
    pub async fn abort(&self, key: &str, upload_id: &str) -> Result<(), ImageError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| s3_err("abort multipart upload", key, &e))?;
        Ok(())
    }

    /// DeleteObject (single deletes: several servers want Content-MD5 on DeleteObjects).
    pub async fn delete(&self, key: &str) -> Result<(), ImageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_err("delete", key, &e))?;
        Ok(())
    }

    /// All objects under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ImageError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix);
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let o = req.send().await.map_err(|e| s3_err("list", prefix, &e))?;
            for obj in o.contents() {
                out.push(ObjectInfo {
                    key: obj.key().unwrap_or_default().to_string(),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                    modified_unix: obj.last_modified().map(|t| t.secs()),
                });
            }
            match (o.is_truncated(), o.next_continuation_token()) {
                (Some(true), Some(t)) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }
}
