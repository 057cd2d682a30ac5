//! A stand-in for an `actions/runner` release: the macOS arm64 package as a real `.tar.gz`
//! (`actions-runner-osx-arm64-<V>.tar.gz` with the layout of the real one: `run.sh`,
//! `config.sh`, `bin/Runner.Listener`, …) whose `bin/Runner.Listener --version` prints `V`
//! in the simulated guest (an executable guest file runs as a shell script), its SHA-256,
//! and the release object GitHub's REST API returns for it, with the checksum in the body
//! exactly as actions/runner's `releaseNote.md` publishes it
//! (`<!-- BEGIN SHA osx-arm64 -->HEX<!-- END SHA osx-arm64 -->`).

use sha2::Digest as _;

/// One built package.
#[derive(Debug, Clone)]
pub struct RunnerPackage {
    /// Version without the `v` (`2.330.0`).
    pub version: String,
    /// The `.tar.gz` bytes.
    pub tarball: Vec<u8>,
    /// Lower-case hex SHA-256 of `tarball`.
    pub sha256: String,
}

/// The asset name GitHub gives the macOS arm64 package of `version`.
pub fn asset_name(version: &str) -> String {
    format!("actions-runner-osx-arm64-{version}.tar.gz")
}

fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, body: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(mode);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append_data(&mut h, path, body).expect("tar: append");
}

/// Build the package of `version`.
pub fn build(version: &str) -> RunnerPackage {
    build_padded(version, 0)
}

/// [`build`] with `pad` bytes of incompressible data in `externals/pad.bin`, so the package
/// has the real one's order of size (~100–200 MB) when the acceptance suite measures moving
/// it into a guest.
pub fn build_padded(version: &str, pad: usize) -> RunnerPackage {
    let mut b = tar::Builder::new(Vec::new());
    if pad > 0 {
        // xorshift: incompressible enough for gzip, no RNG dependency.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let bytes: Vec<u8> = (0..pad)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        add(&mut b, "./externals/pad.bin", 0o644, &bytes);
    }
    let listener = format!(
        "#!/bin/sh\n# stand-in for the .NET Runner.Listener {version}\n\
         if [ \"${{1:-}}\" = --version ]; then echo {version}; exit 0; fi\nexit 1\n"
    );
    add(&mut b, "./bin/Runner.Listener", 0o755, listener.as_bytes());
    add(&mut b, "./bin/Runner.Worker", 0o755, b"#!/bin/sh\nexit 0\n");
    add(
        &mut b,
        "./run.sh",
        0o755,
        b"#!/bin/sh\nexec ./bin/Runner.Listener run \"$@\"\n",
    );
    add(&mut b, "./config.sh", 0o755, b"#!/bin/sh\nexit 0\n");
    add(&mut b, "./env.sh", 0o755, b"#!/bin/sh\n");
    add(
        &mut b,
        "./externals/README",
        0o644,
        format!("externals of {version}\n").as_bytes(),
    );
    let raw = b.into_inner().expect("tar: finish");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).expect("gzip");
    let tarball = gz.finish().expect("gzip: finish");
    let sha256 = hex::encode(sha2::Sha256::digest(&tarball));
    RunnerPackage {
        version: version.to_owned(),
        tarball,
        sha256,
    }
}

/// The body of a release's notes with `sha` as the published osx-arm64 checksum (the
/// other platforms' lines as the real notes have them).
pub fn release_body(version: &str, sha: &str) -> String {
    format!(
        "## What's Changed\n* things\n\n## SHA-256 Checksums\n\n\
         The SHA-256 checksums for the packages included in this build are shown below:\n\n\
         - actions-runner-osx-x64-{version}.tar.gz <!-- BEGIN SHA osx-x64 -->{x64}<!-- END SHA osx-x64 -->\n\
         - actions-runner-osx-arm64-{version}.tar.gz <!-- BEGIN SHA osx-arm64 -->{sha}<!-- END SHA osx-arm64 -->\n\
         - actions-runner-linux-x64-{version}.tar.gz <!-- BEGIN SHA linux-x64 -->{x64}<!-- END SHA linux-x64 -->\n",
        x64 = "0".repeat(64)
    )
}
