//! `vm create` and `vm provision`. Both run in marbled (as the VM owner); this side checks
//! arguments, reads the profile and the files it references with the operator's own
//! permissions (the daemon never opens a path named by an operator), follows progress on
//! stderr, and prints the result on stdout (JSON with `--json`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use marble_proto::{
    CreateResult, ProfileFile, ProfileUpload, ProvisionResult, Request, Response, Team,
};

use crate::cli::{CreateArgs, ProvisionArgs};
use crate::client::{Client, ClientError};
use crate::cmd::status::unexpected;
use crate::cmd::{Context, out, print_run_event};
use crate::exit::Exit;
use crate::render;

/// Largest profile upload (TOML plus referenced files). The frame limit is 1 MiB; bulk
/// installers belong in the guest's downloads, not in the profile.
pub const MAX_PROFILE_BYTES: usize = 768 * 1024;

/// `vm create`.
pub async fn create(ctx: &Context, a: CreateArgs) -> Result<Exit, ClientError> {
    let ipsw = match std::path::absolute(&a.ipsw) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("marblectl: cannot resolve {}: {e}", a.ipsw.display());
            return Ok(Exit::Usage);
        }
    };
    if !ipsw.is_file() {
        eprintln!("marblectl: {} is not a file", ipsw.display());
        return Ok(Exit::Usage);
    }
    let team = if a.team == "spi" {
        Team::Spi
    } else {
        Team::Root
    };
    let request = Request::CreateVm {
        name: a.name,
        ipsw: ipsw.to_string_lossy().into_owned(),
        team,
        cpus: a.cpus,
        memory_mib: a.memory,
    };
    eprintln!("creating the VM (prlctl create reads the whole IPSW; this can take minutes)…");
    match ctx.call(request).await? {
        Response::VmCreated(r) => {
            out(&if ctx.json {
                render::json(&r)
            } else {
                created(&r)
            });
            Ok(Exit::Ok)
        }
        other => Err(unexpected(&other)),
    }
}

fn created(r: &CreateResult) -> String {
    let mut s = format!(
        "created {} ({} CPUs, {} MiB, build disk {})\n",
        r.vm, r.cpus, r.memory_mib, r.build_disk
    );
    if let Some(b) = &r.bundle {
        let _ = writeln!(s, "  bundle: {b}");
    }
    if let Some(m) = &r.mac {
        let _ = writeln!(s, "  net0 MAC: {m}");
    }
    s.push_str("  prlctl commands run:\n");
    for c in &r.commands {
        let _ = writeln!(s, "    prlctl {c}");
    }
    if r.locked {
        let _ = writeln!(
            s,
            "  locked against scheduler starts ({} when set up)",
            marble_proto::names::shell_command(&["marblectl", "unlock", &r.vm])
        );
    }
    s.push_str("\nManual steps:\n");
    for (i, step) in r.manual_steps.iter().enumerate() {
        let _ = writeln!(s, "  {}. {step}", i + 1);
    }
    s
}

/// Why a profile could not be read for upload.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML.
    #[error("{} is not valid TOML", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: toml::de::Error,
    },
    /// Too large for one request.
    #[error(
        "profile with its files is {size} bytes; at most {MAX_PROFILE_BYTES} can be sent (download large installers inside the guest instead)"
    )]
    TooLarge {
        /// Total size.
        size: usize,
    },
}

/// Read a profile and every `script`/`input` file it names (relative to its directory).
/// The daemon validates everything else and reports all problems at once.
pub fn read_profile(path: &Path) -> Result<ProfileUpload, UploadError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| UploadError::Read {
            path: p.to_owned(),
            source,
        })
    };
    let text_bytes = read(path)?;
    let text = String::from_utf8_lossy(&text_bytes).into_owned();
    let value: toml::Table = toml::from_str(&text).map_err(|source| UploadError::Toml {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut files: Vec<ProfileFile> = Vec::new();
    let steps = value
        .get("step")
        .and_then(toml::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for step in steps {
        for key in ["script", "input"] {
            let Some(rel) = step.get(key).and_then(toml::Value::as_str) else {
                continue;
            };
            if files.iter().any(|f| f.path == rel) {
                continue;
            }
            let content = read(&base.join(rel))?;
            files.push(ProfileFile {
                path: rel.to_owned(),
                content,
            });
        }
    }
    let size = text.len() + files.iter().map(|f| f.content.len()).sum::<usize>();
    if size > MAX_PROFILE_BYTES {
        return Err(UploadError::TooLarge { size });
    }
    Ok(ProfileUpload {
        origin: path.display().to_string(),
        text,
        files,
    })
}

/// `vm provision`.
pub async fn provision(ctx: &Context, a: ProvisionArgs) -> Result<Exit, ClientError> {
    let profile = match read_profile(&a.profile) {
        Ok(p) => p,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                let _ = write!(msg, ": {c}");
                src = c.source();
            }
            eprintln!("marblectl: {msg}");
            return Ok(Exit::Usage);
        }
    };
    let request = Request::ProvisionVm { vm: a.vm, profile };
    // Step progress and output always go to stderr: a provisioning run is watched.
    let mut client = Client::connect(&ctx.socket).await?;
    let resp = client.call(request, print_run_event).await?;
    match resp {
        Response::Provisioned(r) => {
            out(&if ctx.json {
                render::json(&r)
            } else {
                provisioned(&r)
            });
            Ok(Exit::Ok)
        }
        other => Err(unexpected(&other)),
    }
}

fn provisioned(r: &ProvisionResult) -> String {
    let ran = r.steps.iter().filter(|s| s.outcome == "ran").count();
    let mut s = format!(
        "provisioned {} (macOS {}): {ran} ran, {} skipped, {}{}\n",
        r.vm,
        r.macos_major,
        r.steps.len() - ran,
        humantime::format_duration(std::time::Duration::from_secs(r.elapsed_ms / 1000)),
        if r.started_vm {
            "; the VM was started for this run and is left running"
        } else {
            ""
        }
    );
    for st in &r.steps {
        if st.outcome == "ran" {
            let _ = writeln!(s, "  ran      {}", st.name);
        } else {
            let _ = writeln!(s, "  skipped  {} ({})", st.name, st.detail);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_the_files_a_profile_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("s")).unwrap();
        std::fs::write(dir.path().join("s/a.sh"), "echo a\n").unwrap();
        std::fs::write(dir.path().join("in.txt"), "x").unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(
            &p,
            "[[step]]\nname = \"a\"\nscript = \"s/a.sh\"\n[[step]]\nname = \"b\"\ncommand = \"cat\"\ninput = \"in.txt\"\n[[step]]\nname = \"c\"\nscript = \"s/a.sh\"\n",
        )
        .unwrap();
        let up = read_profile(&p).unwrap();
        let paths: Vec<&str> = up.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["s/a.sh", "in.txt"]);
        assert_eq!(up.files[0].content, b"echo a\n");
        std::fs::write(&p, "[[step]]\nname = \"a\"\nscript = \"missing.sh\"\n").unwrap();
        let e = read_profile(&p).unwrap_err();
        assert!(e.to_string().contains("missing.sh"), "{e}");
    }
}
