//! One module per noun group; each exposes `run(args, &Context) -> Result<Exit, ClientError>`.

pub mod admin;
pub mod fleet;
pub mod host;
pub mod image;
pub mod install;
pub mod migrate;
pub mod runner;
pub mod slot;
pub mod status;
pub mod vm;
pub mod vm_setup;

use std::io::Write;
use std::path::PathBuf;

use marble_proto::{Event, Request, Response};

use crate::client::{Client, ClientError};
use crate::render;

/// What every command needs.
#[derive(Debug)]
pub struct Context {
    /// Socket path.
    pub socket: PathBuf,
    /// JSON output.
    pub json: bool,
    /// Verbosity.
    pub verbose: u8,
}

impl Context {
    /// Connect, send one request, print streamed progress on stderr, return the answer.
    pub async fn call(&self, request: Request) -> Result<Response, ClientError> {
        let show_progress =
            self.verbose > 0 || std::io::IsTerminal::is_terminal(&std::io::stderr());
        self.call_with_progress(request, show_progress).await
    }

    /// Send `request`; streamed progress goes to stderr when `show_progress`.
    pub async fn call_with_progress(
        &self,
        request: Request,
        show_progress: bool,
    ) -> Result<Response, ClientError> {
        let mut client = Client::connect(&self.socket).await?;
        client
            .call(request, |event: &Event| {
                if show_progress {
                    eprintln!("{}", render::event(event));
                }
            })
            .await
    }
}

/// A watched run's events on stderr: a step's progress line as the daemon wrote it, anything
/// else rendered (`vm provision`, `runner install`).
pub fn print_run_event(event: &Event) {
    if let Event::Progress { message, .. } = event {
        eprintln!("{message}");
    } else {
        eprintln!("{}", render::event(event));
    }
}

/// Write to stdout, treating a closed pipe (`marblectl vm list | head`) as success.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| {
        if text.ends_with('\n') {
            Ok(())
        } else {
            stdout.write_all(b"\n")
        }
    });
    let _ = stdout.flush();
}
