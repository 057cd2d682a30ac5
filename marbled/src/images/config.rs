//! The `[images]` section moved to [`crate::config::images`]; re-exported here so callers not
//! yet moved compile. What stays is the check in this module's error type.

pub use crate::config::{
    ChecksumMode, CredentialSource, ImageStoreConfig, ScrubConfig, VerifyAfterPush,
};

use super::ImageError;

impl ImageStoreConfig {
    /// Checks value ranges; every problem is reported at once.
    pub fn validate(&self) -> Result<(), ImageError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ImageError::Config(problems.join("; ")))
        }
    }
}
