//! The macOS major version of a VM, for its runner's `macNN` label when the label mapping
//! cannot give it: from the VM's name, from `prlctl list -i`, or from the guest's `sw_vers`.

use std::time::Duration;

use super::lifecycle::RunnerError;
use crate::hypervisor::{Hypervisor, PrlctlError};
use crate::sched::LabelMap;

/// The macOS major version in a VM name (`…-macOS-14`, `…-macos15`, `…_macOS_26`): the
/// scheduler's parser ([`crate::sched::macos_major`]), so both read a name alike.
pub fn macos_from_name(vm: &str) -> Option<u32> {
    crate::sched::macos_major(vm)
}

/// The major version of a `sw_vers -productVersion` answer (`14.6.1` → 14).
fn macos_from_product_version(text: &str) -> Option<u32> {
    text.trim()
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .filter(|n| (11..=99).contains(n))
}

/// The macOS major version of `vm` as far as it is known without the guest (which need not
/// be running): from its name, else from `prlctl list -i` (`OS`).
pub async fn macos_without_guest(hv: &dyn Hypervisor, vm: &str) -> Option<u32> {
    if let Some(n) = macos_from_name(vm) {
        return Some(n);
    }
    let details = hv.info(vm).await.ok()?;
    details.os.as_deref().and_then(macos_from_name)
}

/// The macOS major version of `vm`: from its name, else from `prlctl list -i` (`OS`), else
/// from the guest itself (`sw_vers -productVersion`; the guest answers by now).
pub async fn macos_version(
    hv: &dyn Hypervisor,
    vm: &str,
    timeout: Duration,
) -> Result<u32, RunnerError> {
    if let Some(n) = macos_from_name(vm) {
        return Ok(n);
    }
    let info = hv.info(vm).await;
    if let Ok(details) = &info
        && let Some(n) = details.os.as_deref().and_then(macos_from_name)
    {
        return Ok(n);
    }
    let argv = vec!["/usr/bin/sw_vers".to_owned(), "-productVersion".to_owned()];
    let guest: Result<_, PrlctlError> = hv.exec(vm, &argv, None, timeout).await;
    match guest {
        Ok(out) if out.status == 0 => match macos_from_product_version(&out.stdout) {
            Some(n) => Ok(n),
            None => Err(RunnerError::MacosVersion {
                vm: vm.to_owned(),
                why: format!("sw_vers printed {:?}", out.stdout.trim()),
            }),
        },
        Ok(out) => Err(RunnerError::MacosVersion {
            vm: vm.to_owned(),
            why: format!("sw_vers exited {}", out.status),
        }),
        Err(err) => Err(RunnerError::MacosVersion {
            vm: vm.to_owned(),
            why: format!(
                "prlctl list -i said OS {:?}; sw_vers failed: {}",
                info.ok().and_then(|d| d.os).unwrap_or_default(),
                crate::chain::ErrorChain(&err)
            ),
        }),
    }
}

/// `vm`'s runner labels at readiness ([`LabelMap::for_registration`]), asking
/// [`macos_version`] only when neither the name nor a `[labels]` rule gives the version.
pub async fn runner_labels(
    map: &LabelMap,
    hv: &dyn Hypervisor,
    vm: &str,
    timeout: Duration,
) -> Result<Vec<String>, RunnerError> {
    if let Some(labels) = map.for_registration(vm, None) {
        return Ok(labels);
    }
    let major = macos_version(hv, vm, timeout).await?;
    Ok(map.for_registration(vm, Some(major)).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macos_version_from_names() {
        assert_eq!(macos_from_name("macphsft01-ROOT-VM-macOS-14"), Some(14));
        assert_eq!(macos_from_name("h-ROOT-VM-macos15"), Some(15));
        assert_eq!(macos_from_name("h_macOS_26_beta"), Some(26));
        assert_eq!(macos_from_name("macphsft01-ROOT-VM-1"), None);
        assert_eq!(macos_from_name("macosx"), None);
        assert_eq!(macos_from_product_version("14.6.1\n"), Some(14));
        assert_eq!(macos_from_product_version("garbage"), None);
    }
}
