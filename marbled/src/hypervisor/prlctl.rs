//! The production [`super::Hypervisor`]: `prlctl` through `tokio::process`. (Being written.)

/// Configuration of the prlctl adapter.
#[derive(Debug, Clone)]
pub struct PrlctlConfig {}

/// Errors from running prlctl.
#[derive(Debug, thiserror::Error)]
pub enum PrlctlError {
    /// Placeholder.
    #[error("not implemented")]
    NotImplemented,
}

/// The prlctl adapter.
#[derive(Debug)]
pub struct Prlctl {}
