//! Issue 15's fault-injection suite: the real `marbled` and `marblectl` binaries over the
//! real socket, one test per case of the issue (`case_NN_…`), grouped by concern in the
//! modules below (`faults/<concern>.rs`).
//!
//! - `crash` — 1: `kill -9` during a slow `prlctl start` and a restart leave one VM running
//!   (the restarted daemon waits for the orphaned start, loudly); the same under random kill
//!   points with faults on start, stop and exec (a short run here; `--ignored` for 50); a
//!   host over capacity is a WARN line (once a minute) and a `status` line.
//! - `socket` — 2: accept errors under descriptor pressure do not spin; idle connections are
//!   shed so an admin `status` gets through. 3: silent connections (1 024 silent clients, a
//!   stopped daemon, a long boot, a watch stream) and the connection limit's refusal. 4:
//!   free-text fields bounded at the door; an over-size reply is an explicit error.
//! - `slots` — 5: `request-slot` / `vm start` of a running VM that is locked, or on a
//!   draining host, exit 77 (checked first); the drain empties the host once the job ends.
//!   6: slot requests before the first inventory wait for it (75 without a wait, never 2).
//!   9: `marbled check-config` checks every secret file (existence, owner, mode) and reports
//!   every TOML type error with its key and line.
//! - `push` — 7: an interrupted `image push` re-sends only the parts the S3 server lacks
//!   (counted per part number at a proxy), and a source whose content changed starts over,
//!   saying so. 13: each part is journaled (and shown by `image transfers`) as soon as the
//!   server confirms it; after `kill -9` the re-run skips it.
//! - `images` — 8: a zip with a duplicated entry is refused (65) naming it, nothing left.
//!   10: `image pull --as` with `'`, `;`, `>` or a leading `-` is refused at the door (64);
//!   a busy-host hint naming a VM called `…it's 14`, and the `prlctl` lines `vm create`
//!   reports for an IPSW under `Bob's Downloads/`, paste into `sh` as the argv run.
//!   11: a real ENOSPC mid-pull (a tmpfs with few inodes, in `unshare -r -m`) exits 73 with
//!   the bytes needed and free, the partial download removed. 12: a server in another region
//!   (a stand-in answering Garage's error document) gives one line naming `images.region`,
//!   logged once by the heartbeat; a 412 to the pinned reads (a proxy to s3s-fs that refuses
//!   `If-Match`, which s3s-fs ignores) exits 65, the partial removed.
//!
//! Nothing sleeps to wait for a condition: conditions are waited on with a deadline; the CPU
//! test measures a fixed window on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

/// One module per concern; a crate root's inline module puts its files in `faults/`.
mod faults {
    mod crash;
    mod images;
    mod push;
    mod slots;
    mod socket;
}
