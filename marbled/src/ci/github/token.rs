//! The `[github]` credentials as the daemon holds them: a token (file or Keychain) or a
//! GitHub App ([`super::app`]: its private key, and the installation tokens minted with
//! it). The token or the App's key is loaded at start, and while its source fails (a
//! Keychain a LaunchDaemon cannot read, a file with the wrong mode) retried with back-off
//! until stopped — the daemon runs meanwhile, its GitHub side reported unavailable. Exiting
//! instead would only make launchd's KeepAlive restart it into the same failure.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::app::AppAuth;
use super::types::RunnerScope;
use crate::ci::http::HttpClient;
use crate::ci::secret::{Secret, TokenCell, TokenSource, TokenStatus, TokenUnavailable};
use crate::config::{Config, GithubSection};

/// What the GitHub client authenticates with.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A personal (or fine-grained) token, sent as it is.
    Token(Arc<TokenCell>),
    /// A GitHub App: installation tokens minted with its key.
    App(Arc<AppAuth>),
}

impl Credentials {
    /// The token for the next request (an App's may be minted first).
    pub async fn token(
        &self,
        http: &HttpClient,
        api_url: &str,
        scope: &RunnerScope,
    ) -> Result<Secret, TokenUnavailable> {
        match self {
            Credentials::Token(cell) => cell.token(),
            Credentials::App(app) => app.token(http, api_url, scope).await,
        }
    }

    /// GitHub answered 401 to `used`: whether another try may succeed (an App's installation
    /// token is then dropped and minted again; a personal token would only fail again).
    pub fn refused(&self, used: &Secret) -> bool {
        match self {
            Credentials::Token(_) => false,
            Credentials::App(app) => {
                app.invalidate(used);
                true
            }
        }
    }

    /// Whether a token is there, and why not (`status`, metrics).
    pub fn status(&self) -> TokenStatus {
        match self {
            Credentials::Token(cell) => cell.status(),
            Credentials::App(app) => app.status(),
        }
    }

    /// The cell of the secret read from disk or the Keychain (the token, or the App's key).
    fn cell(&self) -> &Arc<TokenCell> {
        match self {
            Credentials::Token(cell) => cell,
            Credentials::App(app) => app.key(),
        }
    }
}

/// A GitHub App: its id and the configured installation (None: asked of GitHub).
type AppId = (u64, Option<u64>);

/// Where the section's secret comes from, and the App it belongs to (None: a token).
fn wanted(section: &GithubSection) -> Option<(TokenSource, Option<AppId>)> {
    if section.uses_app() {
        let key = TokenSource::File(section.app_key_file.clone()?);
        return Some((key, Some((section.app_id?, section.installation_id))));
    }
    TokenSource::from_section(
        "github",
        section.token_file.as_ref(),
        section.token_keychain.as_ref(),
    )
    .ok()
    .map(|source| (source, None))
}

/// The credentials shared by the runner lifecycle and the demand poller, and the retry task
/// of their secret. A clone shares both (a reload's new config keeps the running ones).
#[derive(Debug, Clone)]
pub struct GithubToken {
    /// The token or the App, shared by the runner lifecycle and the demand poller.
    pub credentials: Credentials,
    /// Ends the retry task.
    stop: CancellationToken,
}

impl GithubToken {
    /// The credentials for `config`'s `[github]` (None without the section). `previous` is
    /// kept, and its secret read again at once, when the source (and the App) is the same:
    /// a reload re-reads the token without dropping one that works, and an App keeps its
    /// installation token; otherwise its retry task ends.
    pub async fn for_config(
        config: &Config,
        previous: Option<GithubToken>,
        shutdown: &CancellationToken,
    ) -> Option<GithubToken> {
        let wanted = config.github.as_ref().and_then(wanted);
        if let Some(previous) = previous {
            let same = wanted.as_ref().is_some_and(|(source, app)| {
                previous.credentials.cell().source() == Some(source)
                    && match (&previous.credentials, app) {
                        (Credentials::Token(_), None) => true,
                        (Credentials::App(a), Some((id, installation))) => a.is(*id, *installation),
                        _ => false,
                    }
            });
            if same {
                previous.credentials.cell().kick();
                return Some(previous);
            }
            previous.stop.cancel();
        }
        let (source, app) = wanted?;
        let cell = TokenCell::load(source).await;
        let stop = shutdown.child_token();
        tokio::spawn(
            Arc::clone(&cell)
                .retry(stop.clone())
                .instrument(tracing::info_span!("github_token")),
        );
        let credentials = match app {
            Some((app_id, installation)) => {
                Credentials::App(Arc::new(AppAuth::new(app_id, installation, cell)))
            }
            None => Credentials::Token(cell),
        };
        Some(GithubToken { credentials, stop })
    }
}
