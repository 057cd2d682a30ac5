//! The network side of `marble-sim import` (feature `import`): pages a repository's
//! workflow runs and their jobs through the daemon's GitHub client
//! (`marbled::ci::github::client`: its retries, rate-limit errors and token handling) and a
//! Jenkins job's build history through the daemon's HTTP client (`marbled::ci::http`), with
//! tokens read from files, never from argv, never logged.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use marbled::ci::github::client::GitHubClient;
use marbled::ci::github::types::{GitHubError, RunnerScope};
use marbled::ci::http::{HttpClient, HttpError};
use marbled::ci::secret::{Secret, SecretError, read_secret_file};

use super::{GhJob, JenkinsBuild, JenkinsJob, JobsPage, RunsPage, Window, format_time};

/// GitHub's page size limit.
const PER_PAGE: u64 = 100;
/// GitHub returns at most this many runs for one filtered listing.
pub const MAX_LISTED_RUNS: u64 = 1000;
/// Each request's bound.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The async runtime for the clients could not start.
    #[error("cannot start the http runtime")]
    Runtime(#[source] std::io::Error),
    /// A token file could not be read.
    #[error("cannot read the token file")]
    Secret(#[from] SecretError),
    /// A GitHub request failed.
    #[error("github history")]
    GitHub(#[from] GitHubError),
    /// A GitHub answer was not the documented shape.
    #[error("github {what}: malformed response")]
    GitHubDecode {
        /// Which listing.
        what: &'static str,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A Jenkins request failed.
    #[error("jenkins job {job}")]
    Jenkins {
        /// The job.
        job: String,
        /// Cause.
        #[source]
        source: HttpError,
    },
    /// Jenkins answered with another status than 200.
    #[error("jenkins job {job}: status {status}")]
    JenkinsStatus {
        /// The job.
        job: String,
        /// The status.
        status: u16,
    },
    /// A Jenkins answer was not the documented shape.
    #[error("jenkins job {job}: malformed response")]
    JenkinsDecode {
        /// The job.
        job: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

impl FetchError {
    /// The sysexits code: 74 a token file, 65 a malformed answer, 70 no runtime, 69 the
    /// service.
    pub fn exit_code(&self) -> u8 {
        match self {
            FetchError::Secret(_) => 74,
            FetchError::Runtime(_) => 70,
            FetchError::GitHubDecode { .. } | FetchError::JenkinsDecode { .. } => 65,
            _ => 69,
        }
    }
}

/// Read a token file (the daemon's rules: owner-only permissions, trimmed).
pub fn token(path: &Path) -> Result<Secret, FetchError> {
    Ok(read_secret_file(path)?)
}

/// Every job of every workflow run of `repo` (`owner/name`) created in `window`, and the
/// number of runs listed (GitHub lists at most [`MAX_LISTED_RUNS`] for one query).
pub async fn github_jobs(
    api_url: &str,
    repo: &str,
    token: Secret,
    window: Window,
) -> Result<(Vec<GhJob>, u64), FetchError> {
    let client = GitHubClient::new(api_url, RunnerScope::Repo(repo.to_owned()), token, TIMEOUT);
    let created = format!(
        "{}..{}",
        format_time(window.since_ms),
        format_time(window.until_ms.saturating_sub(1000))
    );
    let mut runs = Vec::new();
    let mut total = 0;
    for page in 1.. {
        let path =
            format!("/repos/{repo}/actions/runs?created={created}&per_page={PER_PAGE}&page={page}");
        let body = client.get_cached("import-runs", &path).await?;
        let listed: RunsPage =
            serde_json::from_slice(&body).map_err(|source| FetchError::GitHubDecode {
                what: "workflow runs",
                source,
            })?;
        total = listed.total_count;
        let n = listed.workflow_runs.len() as u64;
        runs.extend(listed.workflow_runs);
        if n < PER_PAGE || runs.len() as u64 >= total.min(MAX_LISTED_RUNS) {
            break;
        }
    }
    let mut jobs = Vec::new();
    for run in &runs {
        for page in 1.. {
            let path = format!(
                "/repos/{repo}/actions/runs/{}/jobs?per_page={PER_PAGE}&page={page}",
                run.id
            );
            let body = client.get_cached("import-jobs", &path).await?;
            let listed: JobsPage =
                serde_json::from_slice(&body).map_err(|source| FetchError::GitHubDecode {
                    what: "workflow jobs",
                    source,
                })?;
            let n = listed.jobs.len() as u64;
            jobs.extend(listed.jobs);
            if n < PER_PAGE || (page * PER_PAGE) >= listed.total_count {
                break;
            }
        }
    }
    Ok((jobs, total))
}

/// The `tree` query of a job's build history (brackets and commas percent-encoded).
pub const BUILDS_TREE: &str = "builds%5Bnumber%2Ctimestamp%2Cduration%2Cresult%2CbuiltOn%2C\
                               actions%5BqueuingDurationMillis%5D%5D";

/// `/job/a/job/b` for `a/b` (a job in a folder).
fn job_path(job: &str) -> String {
    job.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| format!("/job/{s}"))
        .collect()
}

/// The build history of Jenkins job `job` (a folder path `a/b` allowed), as `user` with
/// the API token, or anonymously.
pub async fn jenkins_builds(
    base: &str,
    job: &str,
    auth: Option<(&str, &Secret)>,
) -> Result<Vec<JenkinsBuild>, FetchError> {
    let http = HttpClient::new(TIMEOUT);
    let url = format!(
        "{}{}/api/json?tree={BUILDS_TREE}",
        base.trim_end_matches('/'),
        job_path(job)
    );
    let basic = auth.map(|(user, token)| {
        let raw = format!("{user}:{}", token.expose());
        Secret::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    });
    let mut headers = vec![("accept", "application/json"), ("user-agent", "marble-sim")];
    if let Some(b) = &basic {
        headers.push(("authorization", b.expose()));
    }
    let resp = http
        .send(Method::GET, &url, &headers, None::<Bytes>)
        .await
        .map_err(|source| FetchError::Jenkins {
            job: job.to_owned(),
            source,
        })?;
    if resp.status != StatusCode::OK {
        return Err(FetchError::JenkinsStatus {
            job: job.to_owned(),
            status: resp.status.as_u16(),
        });
    }
    let parsed: JenkinsJob =
        serde_json::from_slice(&resp.body).map_err(|source| FetchError::JenkinsDecode {
            job: job.to_owned(),
            source,
        })?;
    Ok(parsed.builds)
}

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// GitHub repository `owner/name`; none: no ROOT jobs.
    pub repo: Option<String>,
    /// GitHub API base URL.
    pub github_api: String,
    /// The GitHub token's file.
    pub github_token_file: Option<std::path::PathBuf>,
    /// Labels a job must carry to be a ROOT job of the fleet.
    pub require_labels: Vec<String>,
    /// Jenkins base URL; none: no SPI builds.
    pub jenkins: Option<String>,
    /// Jenkins jobs whose builds to import.
    pub jenkins_jobs: Vec<String>,
    /// Jenkins user and the API token's file (anonymous when absent).
    pub jenkins_auth: Option<(String, std::path::PathBuf)>,
    /// The period.
    pub window: Window,
    /// The fleet.
    pub fleet: super::FleetSource,
}

/// Fetch the history and build the trace (blocking: runs its own small runtime).
pub fn import(opts: &ImportOptions) -> Result<(super::Trace, super::Summary), FetchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(FetchError::Runtime)?;
    runtime.block_on(import_async(opts))
}

async fn import_async(opts: &ImportOptions) -> Result<(super::Trace, super::Summary), FetchError> {
    let fleet = super::fleet_trace(&opts.fleet);
    let mut summary = super::Summary::default();
    let mut root = Vec::new();
    if let (Some(repo), Some(file)) = (&opts.repo, &opts.github_token_file) {
        let (jobs, runs) = github_jobs(&opts.github_api, repo, token(file)?, opts.window).await?;
        if runs > MAX_LISTED_RUNS {
            eprintln!(
                "marble-sim: github lists only {MAX_LISTED_RUNS} of the {runs} runs of the \
                 window; import shorter windows and merge them"
            );
        }
        root = super::root_jobs(&jobs, opts.window, &opts.require_labels, &mut summary);
    }
    let mut builds = Vec::new();
    if let Some(base) = &opts.jenkins {
        let secret = match &opts.jenkins_auth {
            Some((user, file)) => Some((user.as_str(), token(file)?)),
            None => None,
        };
        for job in &opts.jenkins_jobs {
            let auth = secret.as_ref().map(|(u, t)| (*u, t));
            builds.extend(jenkins_builds(base, job, auth).await?);
        }
    }
    let spi = super::spi_vms(&fleet);
    let jenkins = super::jenkins_builds(&builds, opts.window, &spi, &mut summary);
    Ok((super::assemble(&fleet, opts.window, root, jenkins), summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_jobs_have_a_job_segment_each() {
        assert_eq!(job_path("roottest"), "/job/roottest");
        assert_eq!(job_path("spi/nightly"), "/job/spi/job/nightly");
    }
}
