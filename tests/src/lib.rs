//! placeholder
pub mod prlsim;
pub mod s3;
