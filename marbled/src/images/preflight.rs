//! What a VM pull checks before it changes the host: the image exists (and in which format),
//! its bundle directory is free, the build disk is present or can be fetched, and the
//! filesystems have room for both. Only then does `pull_vm` download, register and
//! configure; a pull that cannot finish for a reason known up front leaves the host as it was
//! (before, a missing build disk failed after the VM was registered).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::locate::{Located, locate};
use super::pull::check_space;
use super::{ImageError, ImageName, ImageStore};

/// What the checks found: where everything comes from.
#[derive(Debug)]
pub(crate) struct PullPlan {
    /// The image.
    pub image: Located,
    /// The build disk to fetch first (path, source), when it is configured and missing.
    pub build_disk: Option<(PathBuf, Located)>,
}

/// The nearest existing directory at or above `path` (its filesystem is where `path` goes).
fn existing_ancestor(path: &Path) -> &Path {
    path.ancestors()
        .find(|p| p.is_dir())
        .unwrap_or_else(|| Path::new("/"))
}

/// Checks everything the pull of `name` into `bundles_dir` needs; changes nothing.
pub(crate) async fn check(
    store: &ImageStore,
    name: &ImageName,
    bundles_dir: &Path,
) -> Result<PullPlan, ImageError> {
    let image = locate(store, &name.stem(&store.config().key_prefix)).await?;
    let default_bundle = format!("{name}.macvm");
    let bundle = bundles_dir.join(image.bundle().unwrap_or(&default_bundle));
    if std::fs::symlink_metadata(&bundle).is_ok() {
        return Err(ImageError::Exists { path: bundle });
    }
    let mut needs: Vec<(&Path, u64)> = vec![(bundles_dir, image.bytes_needed())];
    let build_disk = match &store.config().build_disk {
        Some(disk) if std::fs::symlink_metadata(disk).is_err() => {
            let key = format!(
                "{}{}",
                store.config().key_prefix,
                store.config().build_disk_key
            );
            match locate(store, &key).await {
                Ok(found) => Some((disk.clone(), found)),
                Err(ImageError::NotFound { .. }) => {
                    return Err(ImageError::BuildDiskMissing {
                        path: disk.clone(),
                        key,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        _ => None,
    };
    if let Some((disk, found)) = &build_disk {
        needs.push((
            disk.parent().unwrap_or(Path::new("/")),
            found.bytes_needed(),
        ));
    }
    // Sum what lands on the same filesystem.
    let mut per_fs: BTreeMap<u64, (PathBuf, u64)> = BTreeMap::new();
    for (dir, need) in needs {
        let dir = existing_ancestor(dir);
        let dev = std::fs::metadata(dir)
            .map_err(ImageError::io("stat", dir))?
            .dev();
        let e = per_fs.entry(dev).or_insert_with(|| (dir.to_path_buf(), 0));
        e.1 = e.1.saturating_add(need);
    }
    for (dir, need) in per_fs.values() {
        check_space(dir, *need)?;
    }
    Ok(PullPlan { image, build_disk })
}

/// Fetches the build disk found by [`check`] into `disk`.
pub(crate) async fn fetch_build_disk(
    store: &ImageStore,
    disk: &Path,
    found: &Located,
    progress: super::ProgressSink<'_>,
) -> Result<(), ImageError> {
    let parent = disk.parent().unwrap_or(Path::new("/"));
    let file = disk
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("build_drive.hdd");
    let r = store.pull_located(found, file, parent, progress).await?;
    if r.bundle != disk {
        std::fs::rename(&r.bundle, disk).map_err(ImageError::io("rename", disk))?;
    }
    Ok(())
}
