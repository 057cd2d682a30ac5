//! Scenario tests of the scheduler rules, driven through `World::handle` exactly as the
//! actor drives it, with a tiny in-memory host (`support`) answering the operations. One
//! module per concern.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod cycle;
mod demand;
mod labels;
mod launch;
mod locks;
mod metrics;
mod order;
mod readiness;
mod restart;
mod share;
mod slots;
mod stagger;
mod stop;
mod swap;
mod warm;
