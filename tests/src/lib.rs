//! MARBLE test support: the prlctl simulator, a loopback S3 server, fake CI servers and the
//! daemon harness shared by the end-to-end tests.
pub mod acceptance;
pub mod data;
pub mod docs_commands;
pub mod fake_github;
pub mod fake_jenkins;
pub mod fake_keychain;
pub mod github_app;
pub mod harness;
pub mod prlsim;
pub mod prometheus;
pub mod runner_release;
pub mod s3;
pub mod serial_proxy;
pub mod tls;
