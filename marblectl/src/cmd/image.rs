//! `image push|pull|ls|rm|verify|transfers`. Transfers run inside marbled; this command
//! follows one and draws its progress on stderr (an `indicatif` bar: bytes, rate, ETA) when
//! stderr is a terminal, or prints one line per stage with `-v`, and is quiet otherwise. Results go to stdout
//! (JSON with `--json`). Ctrl-C or a dropped SSH session stops following, not the transfer.

use std::fmt::Write as _;
use std::io::IsTerminal;

use marble_proto::{
    Event, ImageEntry, PullResult, PushResult, Request, Response, TransferInfo, VerifyResult,
};

use crate::cli::ImageCommand;
use crate::client::{Client, ClientError};
use crate::cmd::status::unexpected;
use crate::cmd::{Context, out};
use crate::exit::Exit;
use crate::render;

/// Run an `image` subcommand.
pub async fn run(ctx: &Context, cmd: ImageCommand) -> Result<Exit, ClientError> {
    let request = match cmd {
        ImageCommand::Push(a) => Request::ImagePush {
            vm: a.vm,
            name: a.name,
            detach: a.detach,
        },
        ImageCommand::Pull(a) => Request::ImagePull {
            name: a.name,
            as_name: a.as_name,
            detach: a.detach,
        },
        ImageCommand::Ls(a) => Request::ImageList {
            // Bucket folders are the seed's upper-case team names.
            team: a.team.map(|t| t.to_uppercase()),
        },
        ImageCommand::Rm(a) => {
            if let Some(refused) = confirm_rm(&a.name, a.yes) {
                return Ok(refused);
            }
            Request::ImageRemove { name: a.name }
        }
        ImageCommand::Verify(a) => Request::ImageVerify {
            name: a.name,
            detach: a.detach,
        },
        ImageCommand::Transfers => Request::Transfers,
    };
    let tty = std::io::stderr().is_terminal();
    let mut bar = ProgressBar::new(tty, ctx.verbose > 0);
    let mut client = Client::connect(&ctx.socket).await?;
    let resp = client.call(request, |e| bar.event(e)).await;
    bar.finish();
    let resp = resp?;
    if ctx.json {
        out(&render::json(&resp));
        return Ok(Exit::Ok);
    }
    match resp {
        Response::Images(list) => out(&image_table(&list)),
        Response::ImageRemoved { name, keys } => {
            out(&format!("removed {name} ({} objects)", keys.len()));
        }
        Response::TransferStarted(t) => out(&format!(
            "transfer #{} started ({} {}); follow it with `marblectl image transfers`",
            t.id, t.kind, t.image
        )),
        Response::ImagePushed(r) => out(&pushed(&r)),
        Response::ImagePulled(r) => out(&pulled(&r)),
        Response::ImageVerified(r) => out(&verified(&r)),
        Response::Transfers(list) => out(&transfer_table(&list)),
        other => return Err(unexpected(&other)),
    }
    Ok(Exit::Ok)
}

/// `image rm`'s confirmation: None to go ahead; else the exit code (64: not a terminal and
/// no --yes; 1: the operator said no). A removal cannot be undone and every host loses the
/// image, so a script must say `--yes` and a person must answer.
fn confirm_rm(name: &str, yes: bool) -> Option<Exit> {
    use std::io::{BufRead, Write};
    if yes {
        return None;
    }
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "marblectl: image rm {name} deletes it from the bucket for every host; stdin is not a terminal, so pass --yes to confirm (nothing removed)"
        );
        return Some(Exit::Usage);
    }
    eprint!("remove image {name} from the bucket (every host loses it)? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        None
    } else {
        eprintln!("nothing removed");
        Some(Exit::Failure)
    }
}

/// Binary-prefixed size: `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn secs(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(ms.div_ceil(1000))).to_string()
}

fn rate(n: u64, ms: u64) -> String {
    format!("{}/s", bytes(n.saturating_mul(1000) / ms.max(1)))
}

fn pushed(r: &PushResult) -> String {
    let mut s = format!(
        "pushed {} as {} (object {})\n  {} apparent, {} read, {} stored in {} parts ({} resumed) in {} ({} read)\n",
        r.vm,
        r.image,
        r.data_key,
        bytes(r.apparent_bytes),
        bytes(r.payload_bytes),
        bytes(r.object_bytes),
        r.parts,
        r.parts_resumed,
        secs(r.elapsed_ms),
        rate(r.payload_bytes, r.elapsed_ms),
    );
    if r.scrubbed.is_empty() {
        s.push_str("  scrub: nothing on the scrub list was present\n");
    } else {
        for line in &r.scrubbed {
            let _ = writeln!(s, "  scrub: {line}");
        }
    }
    s
}

fn pulled(r: &PullResult) -> String {
    let mac = r.mac.as_deref().unwrap_or("(unknown)");
    let mut s = format!(
        "pulled {} ({}) as VM {} at {}\n  {} apparent, {} downloaded ({} chunks resumed) in {} ({})\n  MAC: {mac}\n",
        r.image,
        r.format,
        r.vm,
        r.bundle,
        bytes(r.apparent_bytes),
        bytes(r.downloaded_bytes),
        r.chunks_resumed,
        secs(r.elapsed_ms),
        rate(r.downloaded_bytes, r.elapsed_ms),
    );
    if r.build_disk_fetched {
        s.push_str("  the shared build disk was missing and has been fetched\n");
    }
    let _ = writeln!(s, "next: {}", r.operator_steps);
    s
}

fn verified(r: &VerifyResult) -> String {
    if r.chunks == 0 {
        format!(
            "{}: {} present, {} (legacy zips are checked for presence and size only)",
            r.image,
            r.format,
            bytes(r.bytes)
        )
    } else {
        format!(
            "{}: OK, {} chunks, {} read back and checked in {}",
            r.image,
            r.chunks,
            bytes(r.bytes),
            secs(r.elapsed_ms)
        )
    }
}

/// The `image ls` table.
pub fn image_table(list: &[ImageEntry]) -> String {
    let w = list.iter().map(|i| i.name.len()).max().unwrap_or(4).max(4);
    let mut s = format!(
        "{:<w$}  {:<5}  {:<17}  {:>10}  MODIFIED\n",
        "NAME", "TEAM", "FORMAT", "SIZE"
    );
    for i in list {
        let _ = writeln!(
            s,
            "{:<w$}  {:<5}  {:<17}  {:>10}  {}",
            i.name,
            i.team,
            i.format,
            bytes(i.size),
            render::when(i.modified_ms)
        );
    }
    s
}

/// The `image transfers` table (also under `status`).
pub fn transfer_table(list: &[TransferInfo]) -> String {
    if list.is_empty() {
        return "no image transfers since marbled started\n".into();
    }
    let mut s = String::new();
    for t in list {
        let state = if t.finished_ms == 0 {
            let pct = t
                .done
                .saturating_mul(100)
                .checked_div(t.total)
                .map(|p| format!(" {p}%"))
                .unwrap_or_default();
            format!("{} {}/{}{pct}", t.phase, bytes(t.done), bytes(t.total))
        } else {
            match &t.error {
                Some(e) => format!("failed at {}: {e}", render::when(t.finished_ms)),
                None => format!("done at {}", render::when(t.finished_ms)),
            }
        };
        let _ = writeln!(
            s,
            "#{} {} {} ({}) by {} since {}: {state}",
            t.id,
            t.kind,
            t.image,
            t.subject,
            t.by,
            render::when(t.started_ms)
        );
    }
    s
}

/// Progress on stderr: an `indicatif` bar per stage on a TTY (width-aware, rate, ETA), stage
/// lines with `-v` off a TTY, else nothing.
struct ProgressBar {
    tty: bool,
    verbose: bool,
    phase: String,
    /// The current stage's bar (TTY only); a finished stage's bar stays on screen.
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressBar {
    fn new(tty: bool, verbose: bool) -> Self {
        Self {
            tty,
            verbose,
            phase: String::new(),
            bar: None,
        }
    }

    /// The look of a stage's bar; `total` 0 means unknown (bytes and rate, no percentage or
    /// ETA).
    fn style(total: u64) -> indicatif::ProgressStyle {
        let template = if total > 0 {
            "{msg}: {binary_bytes} / {binary_total_bytes} ({percent}%) {wide_bar}  {binary_bytes_per_sec}  ETA {eta}"
        } else {
            "{msg}: {binary_bytes}  {binary_bytes_per_sec}"
        };
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    }

    /// A bar for one stage, drawn on stderr.
    fn stage_bar(message: &str, total: u64) -> indicatif::ProgressBar {
        let bar = indicatif::ProgressBar::with_draw_target(
            (total > 0).then_some(total),
            indicatif::ProgressDrawTarget::stderr(),
        )
        .with_style(Self::style(total))
        .with_message(message.to_owned());
        // Progress arrives at most every 250 ms: redraw between updates so rate and ETA move.
        bar.enable_steady_tick(std::time::Duration::from_millis(500));
        bar
    }

    fn event(&mut self, event: &Event) {
        let Event::Progress {
            done,
            total,
            message,
        } = event
        else {
            if self.verbose {
                let line = render::event(event);
                match &self.bar {
                    Some(bar) => bar.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
            }
            return;
        };
        if *message != self.phase {
            self.phase.clone_from(message);
            if let Some(bar) = self.bar.take() {
                bar.finish();
            }
            if self.tty {
                self.bar = Some(Self::stage_bar(message, *total));
            } else if self.verbose {
                eprintln!("marblectl: {message}");
            }
        }
        if let Some(bar) = &self.bar {
            if *total > 0 && bar.length() != Some(*total) {
                if bar.length().is_none() {
                    bar.set_style(Self::style(*total));
                }
                bar.set_length(*total);
            }
            bar.set_position(*done);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_prefixed() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn transfer_table_shows_progress_and_failures() {
        let t = TransferInfo {
            id: 3,
            kind: "pull".into(),
            subject: "2026-11-28-ROOT-VM-macOS-14".into(),
            image: "2026-11-28-ROOT-VM-macOS-14".into(),
            by: "alice".into(),
            started_ms: 1,
            phase: "download".into(),
            done: 512,
            total: 1024,
            finished_ms: 0,
            error: None,
        };
        let failed = TransferInfo {
            finished_ms: 2,
            error: Some("checksum mismatch".into()),
            ..t.clone()
        };
        let s = transfer_table(&[t, failed]);
        assert!(s.contains("#3 pull"), "{s}");
        assert!(s.contains("download 512 B/1.0 KiB 50%"), "{s}");
        assert!(s.contains("failed at"), "{s}");
        assert!(s.contains("checksum mismatch"), "{s}");
    }
}
