//! placeholder
pub mod prlsim;
