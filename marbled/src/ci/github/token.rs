//! The `[github]` token as the daemon holds it: loaded at start, and while its source fails
//! (a Keychain a LaunchDaemon cannot read, a token file with the wrong mode) retried with
//! back-off until stopped — the daemon runs meanwhile, its GitHub side reported unavailable.
//! Exiting instead would only make launchd's KeepAlive restart it into the same failure.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::ci::secret::{TokenCell, TokenSource};
use crate::config::Config;

/// The token shared by the runner lifecycle and the demand poller, and its retry task. A
/// clone shares both (a reload's new config keeps the running token).
#[derive(Debug, Clone)]
pub struct GithubToken {
    /// The token, shared by the runner lifecycle and the demand poller.
    pub cell: Arc<TokenCell>,
    /// Ends the retry task.
    stop: CancellationToken,
}

impl GithubToken {
    /// The token for `config`'s `[github]` (None without the section). `previous` is kept,
    /// and read again at once, when the source is the same (a reload re-reads the token
    /// without dropping one that works); otherwise its retry task ends.
    pub async fn for_config(
        config: &Config,
        previous: Option<GithubToken>,
        shutdown: &CancellationToken,
    ) -> Option<GithubToken> {
        let source = config.github.as_ref().and_then(|section| {
            TokenSource::from_section(
                "github",
                section.token_file.as_ref(),
                section.token_keychain.as_ref(),
            )
            .ok()
        });
        if let Some(previous) = previous {
            if source.is_some() && previous.cell.source() == source.as_ref() {
                previous.cell.kick();
                return Some(previous);
            }
            previous.stop.cancel();
        }
        let cell = TokenCell::load(source?).await;
        let stop = shutdown.child_token();
        tokio::spawn(
            Arc::clone(&cell)
                .retry(stop.clone())
                .instrument(tracing::info_span!("github_token")),
        );
        Some(GithubToken { cell, stop })
    }
}
