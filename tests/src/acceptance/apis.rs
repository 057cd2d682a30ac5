//! Group `apis`: the daemon's CI and S3 clients against the real services, when credentials
//! are given (skipped otherwise), or against the project's fakes and local S3 server in
//! simulator mode.
//!
//! - GitHub: mint a JIT runner (`ci::runner::mint_jit`) with a label no workflow uses, read
//!   it back, delete it (`GitHubClient::delete_runner`), check it is gone. The JIT config is a
//!   secret and is never written anywhere.
//! - Jenkins: read a node, take it offline and back online (`JenkinsClient::set_offline`,
//!   `set_online`; the crumb is fetched when the server asks for one). A node that is already
//!   marked offline is left alone. Read-only: the queue as policy `demand` reads it
//!   ([`super::jenkins_queue`]) and the settings behind the simulator's model of Jenkins'
//!   dispatch ([`super::jenkins_any`]).
//! - S3: HEAD of both build-disk keys plus the first bytes of each (zip or MARBLE format), and
//!   a 50 MB sparse bundle pushed, verified, pulled, compared (content and holes) and removed
//!   (`ImageStore::push_dir`, `verify`, `pull_to_dir`, `rm`); and the conditional writes the
//!   fleet lease relies on ([`super::lease`]), and the conditional read of the fleet's
//!   published demand snapshot ([`super::cond_read`]).

use std::io::{Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use marbled::ci::github::{DeleteOutcome, GitHubClient, RunnerScope};
use marbled::ci::jenkins::JenkinsClient;
use marbled::ci::secret::{Secret, read_secret_file};
use marbled::images::{ImageName, ImageStore, ImageStoreConfig};
use serde_json::json;

use super::record::{Obs, Verdict};
use super::target::Env;

/// Labels of the acceptance runner: no workflow asks for the second one, so GitHub never
/// assigns it a job (it never comes online anyway).
pub const RUNNER_LABELS: &[&str] = &["self-hosted", "marble-acceptance-do-not-use"];

/// Size of the sparse test file.
const SPARSE_BYTES: u64 = 50 * 1000 * 1000;

/// GitHub credentials (`--github-token-file`, `--github-scope`).
#[derive(Debug, Clone)]
pub struct GithubCreds {
    /// API base URL.
    pub api: String,
    /// `repo:owner/name` or `org:name`.
    pub scope: RunnerScope,
    /// Token file (mode 0600).
    pub token_file: std::path::PathBuf,
}

/// Jenkins credentials (`--jenkins-url`, `--jenkins-user`, `--jenkins-token-file`,
/// `--jenkins-node`).
#[derive(Debug, Clone)]
pub struct JenkinsCreds {
    /// Controller URL.
    pub url: String,
    /// API user.
    pub user: String,
    /// Token file (mode 0600).
    pub token_file: std::path::PathBuf,
    /// Node that may be toggled offline and back.
    pub node: String,
}

/// Parse `repo:owner/name` or `org:name`.
pub fn parse_scope(s: &str) -> anyhow::Result<RunnerScope> {
    let scope = match s.split_once(':') {
        Some(("repo", r)) => RunnerScope::Repo(r.to_owned()),
        Some(("org", o)) => RunnerScope::Org(o.to_owned()),
        _ => anyhow::bail!("scope {s:?}: expected repo:OWNER/NAME or org:NAME"),
    };
    scope.validate().map_err(anyhow::Error::msg)?;
    Ok(scope)
}

fn t(env: &Env) -> Duration {
    env.pick(Duration::from_secs(120), Duration::from_secs(30))
}

/// Every API check.
pub async fn checks(env: &Env) {
    env.rec
        .check("api.github-jit", t(env), async |obs: &Obs| {
            github(env, obs).await
        })
        .await;
    env.rec
        .check("api.jenkins-toggle", t(env), async |obs: &Obs| {
            jenkins(env, obs).await
        })
        .await;
    super::jenkins_queue::check(env).await;
    super::jenkins_nodes::check(env).await;
    super::jenkins_any::check(env).await;
    super::jenkins_launch::check(env).await;
    // The local S3 server of simulator mode lives as long as both S3 checks.
    let local = if env.is_sim() {
        crate::s3::s3s_fs_binary().and_then(|_| crate::s3::LocalS3::start())
    } else {
        None
    };
    let store_cfg = match (&env.settings.s3_config, &local) {
        (_, Some(l)) => Some(Ok(l.config())),
        (Some(path), None) => Some(load_images_config(path)),
        (None, None) => None,
    };
    let no_s3 = if env.is_sim() {
        "no local S3 server (run scripts/install-s3-server.sh)"
    } else {
        "no S3 config given (--s3-config FILE)"
    };
    match &store_cfg {
        None => {
            env.rec.skip("api.s3-build-disk-keys", no_s3);
            env.rec.skip("api.s3-roundtrip", no_s3);
            env.rec.skip("api.s3-conditional-writes", no_s3);
            env.rec.skip("api.s3-conditional-read", no_s3);
        }
        Some(cfg) => {
            env.rec
                .check("api.s3-build-disk-keys", t(env), async |obs: &Obs| {
                    let cfg = cfg.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
                    build_disk_keys(obs, cfg, local.is_some()).await
                })
                .await;
            env.rec
                .check("api.s3-roundtrip", t(env) * 3, async |obs: &Obs| {
                    let cfg = cfg.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
                    roundtrip(env, obs, cfg).await
                })
                .await;
            env.rec
                .check("api.s3-conditional-writes", t(env), async |obs: &Obs| {
                    let cfg = cfg.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
                    conditional_writes(obs, cfg, local.as_ref()).await
                })
                .await;
            env.rec
                .check("api.s3-conditional-read", t(env), async |obs: &Obs| {
                    let cfg = cfg.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
                    conditional_read(obs, cfg, local.as_ref()).await
                })
                .await;
        }
    }
    drop(local);
}

/// The bucket the conditional-request checks use: the configured one, or the local s3s-fs
/// behind a one-request-at-a-time proxy that also answers `If-None-Match` on GET as S3 and
/// RGW do. The proxy is returned so it lives as long as the bucket is used.
async fn conditional_bucket(
    cfg: &ImageStoreConfig,
    local: Option<&crate::s3::LocalS3>,
) -> anyhow::Result<(
    Option<crate::serial_proxy::SerialProxy>,
    marbled::images::Bucket,
)> {
    let proxy = local.map(|l| crate::serial_proxy::SerialProxy::start(l.addr));
    let cfg = match (&proxy, local) {
        (Some(p), Some(l)) => l.config_for(&p.endpoint),
        _ => cfg.clone(),
    };
    let bucket = marbled::images::Bucket::connect(&cfg)
        .await
        .context("bucket")?;
    Ok((proxy, bucket))
}

/// [`super::lease::conditional_writes`] on the configured bucket, or on the local s3s-fs
/// behind a one-request-at-a-time proxy (it checks and writes without a lock).
async fn conditional_writes(
    obs: &Obs,
    cfg: &ImageStoreConfig,
    local: Option<&crate::s3::LocalS3>,
) -> anyhow::Result<Verdict> {
    let (_proxy, bucket) = conditional_bucket(cfg, local).await?;
    let report = super::lease::conditional_writes(&bucket).await?;
    obs.note(
        "conditional-writes",
        json!({"sequential_ok": report.sequential_ok, "create_winners": report.create_winners,
               "replace_winners": report.replace_winners, "racers": super::lease::RACERS}),
    );
    let rounds = report.create_winners.len() + report.replace_winners.len();
    Ok(if report.exclusive() {
        Verdict::Pass(format!(
            "If-None-Match/If-Match honoured; {rounds} rounds of {} concurrent writers, one winner each",
            super::lease::RACERS
        ))
    } else {
        Verdict::Fail(format!(
            "not usable for the fleet lease: sequential semantics {}, winners per create round {:?}, per replace round {:?}",
            if report.sequential_ok {
                "held"
            } else {
                "FAILED"
            },
            report.create_winners,
            report.replace_winners
        ))
    })
}

/// [`super::cond_read`] on the configured bucket, or on the local s3s-fs behind the proxy
/// that answers `If-None-Match` on GET as S3 and RGW do (s3s-fs ignores it).
async fn conditional_read(
    obs: &Obs,
    cfg: &ImageStoreConfig,
    local: Option<&crate::s3::LocalS3>,
) -> anyhow::Result<Verdict> {
    let (_proxy, bucket) = conditional_bucket(cfg, local).await?;
    let report = super::cond_read::conditional_read(&bucket).await?;
    let show =
        |r: &Option<super::cond_read::Read>| r.as_ref().map(super::cond_read::Read::describe);
    obs.note(
        "conditional-read",
        json!({"plain": show(&report.plain), "unchanged": show(&report.unchanged),
               "changed": show(&report.changed), "unchanged_again": show(&report.unchanged_again)}),
    );
    Ok(super::cond_read::verdict(&report))
}

/// `[images]` from a TOML file (a whole `marbled.toml` or just the table).
pub fn load_images_config(path: &Path) -> anyhow::Result<ImageStoreConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let v: toml::Value =
        toml::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    let table = v.get("images").cloned().unwrap_or(v);
    table
        .try_into()
        .with_context(|| format!("the [images] table of {}", path.display()))
}

async fn github(env: &Env, obs: &Obs) -> anyhow::Result<Verdict> {
    // Simulator: the project's fake GitHub, with a token file like a real one.
    let fake;
    let (api, scope, token) = if env.is_sim() {
        fake = crate::fake_github::FakeGitHub::start("acceptance-token").await;
        (
            fake.url(),
            RunnerScope::Repo("root-project/root".to_owned()),
            Secret::new("acceptance-token"),
        )
    } else {
        let Some(c) = &env.settings.github else {
            return Ok(Verdict::Skip(
                "no GitHub credentials (--github-token-file and --github-scope)".into(),
            ));
        };
        (
            c.api.clone(),
            c.scope.clone(),
            read_secret_file(&c.token_file).context("the GitHub token file")?,
        )
    };
    let client = GitHubClient::new(&api, scope, token, Duration::from_secs(30));
    let name = format!("marble-acceptance-{}", std::process::id());
    let labels: Vec<String> = RUNNER_LABELS.iter().map(|s| (*s).to_owned()).collect();
    let started = Instant::now();
    let jit = marbled::ci::github::runner::mint_jit(&client, &name, &labels, 1, None)
        .await
        .context("mint a JIT runner")?;
    let minted = started.elapsed();
    obs.note("minted", json!({"runner_id": jit.runner_id, "runner_name": jit.runner_name, "config_bytes": jit.encoded_jit_config.expose().len(), "elapsed_ms": minted.as_millis() as u64}));
    let seen = client
        .get_runner(jit.runner_id)
        .await
        .context("read the runner back")?;
    let started = Instant::now();
    let deleted = client
        .delete_runner(jit.runner_id)
        .await
        .context("delete the runner")?;
    let gone = client
        .get_runner(jit.runner_id)
        .await
        .context("read after delete")?;
    obs.note("after", json!({"listed_before_delete": seen.as_ref().map(|r| (&r.name, &r.status)), "delete": format!("{deleted:?}"), "listed_after_delete": gone.is_some(), "rate_limit_remaining": client.rate_limit().remaining}));
    env.rec.timing("github_mint_s", minted);
    Ok(match (seen, deleted, gone) {
        (Some(r), DeleteOutcome::Deleted, None) => Verdict::Pass(format!(
            "minted runner {} ({}, {}) in {:.1} s, deleted in {:.1} s",
            r.id,
            r.name,
            r.status,
            minted.as_secs_f64(),
            started.elapsed().as_secs_f64()
        )),
        (seen, deleted, gone) => Verdict::Fail(format!(
            "listed after mint: {}, delete: {deleted:?}, still listed after delete: {}",
            seen.is_some(),
            gone.is_some()
        )),
    })
}

/// The operator's Jenkins from `--jenkins-*`: URL, user, token and node; or, without them,
/// the skip verdict naming the flags.
pub(super) fn operator_jenkins(
    env: &Env,
) -> anyhow::Result<Result<(String, String, Secret, String), Verdict>> {
    let Some(c) = &env.settings.jenkins else {
        return Ok(Err(Verdict::Skip(
            "no Jenkins credentials (--jenkins-url, --jenkins-user, --jenkins-token-file, --jenkins-node)".into(),
        )));
    };
    let token = read_secret_file(&c.token_file).context("the Jenkins token file")?;
    Ok(Ok((c.url.clone(), c.user.clone(), token, c.node.clone())))
}

/// The Jenkins a check that writes talks to: in simulator mode the fake controller (held here so
/// it lives as long as the client) with its one node, otherwise the operator's `--jenkins-*`.
pub(super) struct WriteJenkins {
    pub(super) client: JenkinsClient,
    pub(super) node: String,
    _fake: Option<crate::fake_jenkins::FakeJenkins>,
}

/// The fake controller in simulator mode, the operator's Jenkins otherwise; without the
/// operator's flags, the skip verdict naming them.
pub(super) async fn fake_or_operator_jenkins(
    env: &Env,
) -> anyhow::Result<Result<WriteJenkins, Verdict>> {
    if env.is_sim() {
        let node = "marble-acceptance-node";
        let fake = crate::fake_jenkins::FakeJenkins::start(&[node]).await;
        let client = JenkinsClient::new(
            &fake.url,
            "acceptance",
            &Secret::new("acceptance-token"),
            Duration::from_secs(20),
        );
        return Ok(Ok(WriteJenkins {
            client,
            node: node.to_owned(),
            _fake: Some(fake),
        }));
    }
    Ok(
        operator_jenkins(env)?.map(|(url, user, token, node)| WriteJenkins {
            client: JenkinsClient::new(&url, &user, &token, Duration::from_secs(20)),
            node,
            _fake: None,
        }),
    )
}

async fn jenkins(env: &Env, obs: &Obs) -> anyhow::Result<Verdict> {
    let target = match fake_or_operator_jenkins(env).await? {
        Ok(target) => target,
        Err(skip) => return Ok(skip),
    };
    let (client, node) = (&target.client, &target.node);
    let before = client.node(node).await.context("read the node")?;
    obs.note("node before", json!({"offline": before.offline, "temporarily_offline": before.temporarily_offline, "idle": before.idle, "executors_busy": before.executors_busy}));
    if before.temporarily_offline {
        return Ok(Verdict::Skip(format!(
            "node {node} is already marked offline ({:?}); the suite does not touch it",
            before.offline_cause
        )));
    }
    let started = Instant::now();
    let off = client
        .set_offline(node, "marble acceptance suite: back online in a moment")
        .await
        .context("take the node offline");
    // Whatever happened, try to bring it back.
    let on = client.set_online(node).await;
    let after = client.node(node).await.context("read the node again")?;
    obs.note("toggle", json!({"offline": format!("{off:?}"), "online": format!("{on:?}"), "temporarily_offline_after": after.temporarily_offline}));
    let off = off?;
    let on = on.context("bring the node back online")?;
    Ok(if !after.temporarily_offline {
        Verdict::Pass(format!(
            "{node}: offline {off:?}, online {on:?} in {:.1} s (crumb fetched when the server asked)",
            started.elapsed().as_secs_f64()
        ))
    } else {
        Verdict::Fail(format!("{node} is still marked offline after set_online"))
    })
}

/// What the first bytes of an object say it is.
pub fn sniff(bytes: &[u8]) -> &'static str {
    match bytes {
        [b'P', b'K', 3, 4, ..] => "zip",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd (MARBLE data)",
        [b'{', ..] => "json (a MARBLE manifest?)",
        [] => "empty",
        _ => "unknown",
    }
}

async fn build_disk_keys(
    obs: &Obs,
    cfg: &ImageStoreConfig,
    simulated: bool,
) -> anyhow::Result<Verdict> {
    let store = ImageStore::new(cfg.clone()).await.context("image store")?;
    let keys = [
        format!("{}build_drive.hdd", cfg.key_prefix),
        format!("{}build_drive.hdd.zip", cfg.key_prefix),
    ];
    if simulated {
        // The local server starts empty: give it the seed's object, a zip without extension.
        store
            .bucket()
            .put_small(
                &keys[0],
                bytes::Bytes::from_static(b"PK\x03\x04 simulated build disk"),
                "application/octet-stream",
            )
            .await
            .context("seed the local bucket")?;
    }
    let mut found = Vec::new();
    for key in &keys {
        let head = store
            .bucket()
            .head(key)
            .await
            .with_context(|| format!("HEAD {key}"))?;
        let kind = match &head {
            Some(h) if h.size > 0 => {
                let n = h.size.min(8);
                let first = store
                    .bucket()
                    .get_range(key, 0, n, h.etag.as_deref())
                    .await
                    .with_context(|| format!("first bytes of {key}"))?;
                Some(sniff(&first))
            }
            Some(_) => Some("empty"),
            None => None,
        };
        obs.note("head", json!({"key": key, "size": head.as_ref().map(|h| h.size), "etag": head.as_ref().and_then(|h| h.etag.clone()), "content": kind}));
        if let (Some(h), Some(kind)) = (head, kind) {
            found.push(format!("{key}: {} bytes, {kind}", h.size));
        } else {
            found.push(format!("{key}: absent"));
        }
    }
    let any = found.iter().any(|f| !f.ends_with("absent"));
    Ok(if any {
        Verdict::Pass(found.join("; "))
    } else {
        Verdict::Fail(format!(
            "neither build-disk key exists: {}",
            found.join("; ")
        ))
    })
}

/// A bundle directory with one 50 MB sparse file: data at the start, in the middle and at
/// the end, holes between. Returns the file's path.
fn make_sparse_bundle(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).context("bundle dir")?;
    std::fs::write(dir.join("config.pvs"), "<ParallelsVirtualMachine/>\n").context("config")?;
    let path = dir.join("sparse.img");
    let mut f = std::fs::File::create(&path).context("sparse file")?;
    f.set_len(SPARSE_BYTES).context("set_len")?;
    for (i, at) in [0u64, SPARSE_BYTES / 2, SPARSE_BYTES - 1024 * 1024]
        .into_iter()
        .enumerate()
    {
        f.seek(SeekFrom::Start(at)).context("seek")?;
        f.write_all(&crate::data::noise(7 + i as u64, 1024 * 1024))
            .context("write")?;
    }
    f.sync_all().context("sync")?;
    Ok(path)
}

async fn roundtrip(env: &Env, obs: &Obs, cfg: &ImageStoreConfig) -> anyhow::Result<Verdict> {
    let mut cfg = cfg.clone();
    if cfg.state_dir.is_none() {
        cfg.state_dir = Some(env.work.join("s3-state"));
    }
    let store = ImageStore::new(cfg).await.context("image store")?;
    let image = ImageName::parse(&format!(
        "{}-ACCEPTANCE-marble-roundtrip-{}",
        super::guest::today(),
        std::process::id()
    ))?;
    let src = env.work.join("s3-src").join(format!("{image}.macvm"));
    let src_file = make_sparse_bundle(&src)?;
    let src_blocks = std::fs::metadata(&src_file)?.blocks() * 512;
    env.rec.cleanup_log(&format!("create s3 {image}"));
    let noop = |_: marbled::images::Progress| {};
    let started = Instant::now();
    let pushed = store.push_dir(&src, &image, &noop).await.context("push")?;
    let push_time = started.elapsed();
    let verified = store.verify(&image, &noop).await.context("verify");
    let dest = env.work.join("s3-dest");
    let started = Instant::now();
    let pulled = store
        .pull_to_dir(&image, &dest, &noop)
        .await
        .context("pull");
    let pull_time = started.elapsed();
    let removed = store.rm(&image).await.context("rm");
    if removed.is_ok() {
        env.rec.cleanup_log(&format!("removed s3 {image}"));
    }
    let verified = verified?;
    let pulled = pulled?;
    removed?;
    let file = pulled.bundle.join("sparse.img");
    let same = std::fs::read(&file).context("read the pulled file")?
        == std::fs::read(&src_file).context("read the pushed file")?;
    let meta = std::fs::metadata(&file)?;
    let allocated = meta.blocks() * 512;
    env.rec.timing("s3_push_50mb_s", push_time);
    env.rec.timing("s3_pull_50mb_s", pull_time);
    obs.note(
        "roundtrip",
        json!({"object_bytes": pushed.object_bytes, "payload_bytes": pushed.payload_bytes, "apparent_bytes": pushed.apparent_bytes, "parts": pushed.parts,
               "verified": format!("{verified:?}"), "pulled_format": pulled.format, "pulled_size": meta.len(), "src_allocated": src_blocks, "pulled_allocated": allocated,
               "push_ms": push_time.as_millis() as u64, "pull_ms": pull_time.as_millis() as u64}),
    );
    let holes_kept = allocated < SPARSE_BYTES / 2;
    Ok(if same && meta.len() == SPARSE_BYTES && holes_kept {
        Verdict::Pass(format!(
            "pushed {} MB as {} bytes in {:.1} s, pulled in {:.1} s; content identical, holes kept ({} MB allocated)",
            SPARSE_BYTES / 1_000_000,
            pushed.object_bytes,
            push_time.as_secs_f64(),
            pull_time.as_secs_f64(),
            allocated / 1_000_000
        ))
    } else {
        Verdict::Fail(format!(
            "content identical: {}, size {} (expected {SPARSE_BYTES}), allocated {allocated} bytes (holes kept: {holes_kept})",
            same,
            meta.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_sniffing() {
        assert!(matches!(
            parse_scope("repo:root-project/root"),
            Ok(RunnerScope::Repo(_))
        ));
        assert!(matches!(
            parse_scope("org:cern-sft"),
            Ok(RunnerScope::Org(_))
        ));
        assert!(parse_scope("root-project/root").is_err());
        assert!(parse_scope("repo:noslash").is_err());
        assert_eq!(sniff(b"PK\x03\x04rest"), "zip");
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), "zstd (MARBLE data)");
        assert_eq!(sniff(b""), "empty");
    }
}
