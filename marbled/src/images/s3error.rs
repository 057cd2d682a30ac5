//! What an S3 failure means to the person reading it: the SDK's errors turned into one
//! [`ImageError`] line each. A region mismatch names the region the server expects and the
//! key to set (`images.region`); the server's 412 to a read pinned by `If-Match` means the
//! object was replaced under its manifest (a data error, not an outage); any other answer
//! from the server is its code, message and HTTP status, never the SDK's debug dump (the
//! request, the raw body and the connection details). Failures without an answer (DNS, TLS,
//! timeouts) keep the SDK's error chain, which names the cause.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::ImageError;

/// The [`ImageError`] for a failed S3 call `op` on `key`.
pub(crate) fn s3_err<E>(op: &'static str, key: &str, e: &SdkError<E, HttpResponse>) -> ImageError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    if let SdkError::ServiceError(service) = e {
        let status = service.raw().status().as_u16();
        let code = service.err().code().unwrap_or("");
        let message = service.err().message().unwrap_or("");
        return from_answer(op, key, status, code, message);
    }
    let mut detail = DisplayErrorContext(e).to_string();
    if detail.contains("invalid peer certificate") {
        detail.push_str(
            " (the endpoint's certificate is not trusted: add the CA that issued it, as PEM, to [images] ca_file)",
        );
    }
    ImageError::S3 {
        op,
        key: key.to_string(),
        detail,
    }
}

/// The error for the server's answer `status` with S3 error `code` and `message`.
pub(crate) fn from_answer(
    op: &'static str,
    key: &str,
    status: u16,
    code: &str,
    message: &str,
) -> ImageError {
    if let Some((sent, expected)) = wrong_region(code, message) {
        return ImageError::WrongRegion { op, sent, expected };
    }
    if status == 412 || code == "PreconditionFailed" {
        return ImageError::Replaced {
            key: key.to_string(),
        };
    }
    let code = if code.is_empty() {
        "no error code"
    } else {
        code
    };
    let detail = match (message.is_empty(), status) {
        (true, 0) => code.to_string(),
        (true, s) => format!("{code} (HTTP {s})"),
        (false, 0) => format!("{code}: {message}"),
        (false, s) => format!("{code}: {message} (HTTP {s})"),
    };
    ImageError::S3 {
        op,
        key: key.to_string(),
        detail,
    }
}

/// `(region the request was signed for, region the server expects)` when the answer is a
/// region mismatch: Garage's and Ceph's `AuthorizationHeaderMalformed … unexpected scope:
/// DATE/SENT/s3/aws4_request expected: 'DATE/EXPECTED/s3/aws4_request'`, or AWS's
/// `… the region 'SENT' is wrong; expecting 'EXPECTED'`.
fn wrong_region(code: &str, message: &str) -> Option<(String, String)> {
    if code != "AuthorizationHeaderMalformed" && code != "AuthorizationQueryParametersError" {
        return None;
    }
    let pieces: Vec<&str> = message.split("/s3/aws4_request").collect();
    // Each piece but the last ends with a scope's region.
    let scopes: Vec<&str> = pieces[..pieces.len().saturating_sub(1)]
        .iter()
        .filter_map(|before| before.rsplit('/').next())
        .filter(|r| !r.is_empty() && !r.contains(' '))
        .collect();
    if let [sent, .., expected] = scopes.as_slice() {
        return Some(((*sent).to_string(), (*expected).to_string()));
    }
    let quoted: Vec<&str> = message.split('\'').skip(1).step_by(2).collect();
    if message.contains("expecting")
        && let [sent, .., expected] = quoted.as_slice()
    {
        return Some(((*sent).to_string(), (*expected).to_string()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garage_and_aws_region_mismatches_name_both_regions() {
        let garage = "Authorization header malformed, unexpected scope: 20261206/us-east-1/s3/aws4_request expected: '20261206/garage/s3/aws4_request'";
        assert_eq!(
            wrong_region("AuthorizationHeaderMalformed", garage),
            Some(("us-east-1".into(), "garage".into()))
        );
        let aws = "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'";
        assert_eq!(
            wrong_region("AuthorizationHeaderMalformed", aws),
            Some(("us-east-1".into(), "eu-west-1".into()))
        );
        assert_eq!(wrong_region("AccessDenied", garage), None);
        let err = from_answer("list", "", 400, "AuthorizationHeaderMalformed", garage);
        let line = err.to_string();
        assert!(line.contains("images.region = \"garage\""), "{line}");
        assert!(line.contains("us-east-1"), "{line}");
    }

    #[test]
    fn a_412_is_a_replaced_object_and_other_answers_are_one_line() {
        let err = from_answer("get range", "ROOT/x.marble", 412, "PreconditionFailed", "");
        assert!(matches!(err, ImageError::Replaced { .. }), "{err}");
        let err = from_answer("get", "k", 403, "AccessDenied", "Access Denied.");
        assert_eq!(
            err.to_string(),
            "s3 get k: AccessDenied: Access Denied. (HTTP 403)"
        );
    }
}
