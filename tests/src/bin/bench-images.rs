//! `bench-images push DIR NAME` / `bench-images pull NAME DEST_PARENT`: drives
//! `marbled::images` for `scripts/bench-images.sh`. Config from env: `BENCH_ENDPOINT`,
//! `BENCH_BUCKET`, `BENCH_SECRET_FILE`, optional `BENCH_PART_MIB`, `BENCH_CONCURRENCY`.
//! Prints one JSON line: op, seconds, bytes.

use std::path::Path;
use std::time::Instant;

use marbled::images::{CredentialSource, ImageName, ImageStore, ImageStoreConfig};

fn env(k: &str) -> anyhow::Result<String> {
    std::env::var(k).map_err(|_| anyhow::anyhow!("{k} is not set"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let cfg = ImageStoreConfig {
        endpoint: Some(env("BENCH_ENDPOINT")?),
        bucket: env("BENCH_BUCKET")?,
        credentials: vec![CredentialSource::SecretFile],
        secret_file: Some(env("BENCH_SECRET_FILE")?.into()),
        part_size_mib: env("BENCH_PART_MIB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(16),
        concurrency: env("BENCH_CONCURRENCY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4),
        ..ImageStoreConfig::default()
    };
    let store = ImageStore::new(cfg).await?;
    let t = Instant::now();
    match args.get(1).map(String::as_str) {
        Some("push") if args.len() == 4 => {
            let r = store
                .push_dir(Path::new(&args[2]), &ImageName::parse(&args[3])?, &|_| {})
                .await?;
            let line = format!(
                "{{\"op\":\"push\",\"seconds\":{:.3},\"payload\":{},\"apparent\":{},\"object\":{},\"parts\":{}}}",
                t.elapsed().as_secs_f64(),
                r.payload_bytes,
                r.apparent_bytes,
                r.object_bytes,
                r.parts
            );
            std::io::Write::write_all(&mut std::io::stdout(), format!("{line}\n").as_bytes())?;
        }
        Some("pull") if args.len() == 4 => {
            let r = store
                .pull_to_dir(&ImageName::parse(&args[2])?, Path::new(&args[3]), &|_| {})
                .await?;
            let line = format!(
                "{{\"op\":\"pull\",\"seconds\":{:.3},\"downloaded\":{},\"apparent\":{},\"format\":\"{}\"}}",
                t.elapsed().as_secs_f64(),
                r.downloaded_bytes,
                r.apparent_bytes,
                r.format
            );
            std::io::Write::write_all(&mut std::io::stdout(), format!("{line}\n").as_bytes())?;
        }
        _ => anyhow::bail!("usage: bench-images push DIR NAME | pull NAME DEST_PARENT"),
    }
    Ok(())
}
