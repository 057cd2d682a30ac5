//! placeholder
pub mod hypervisor;
pub mod sched;
