//! Cases 8, 10, 11 and 12 of issue 15: image pulls and listings that fail for a reason a
//! person must act on — a hostile archive, a bad name, a full disk, an S3 server that answers
//! for another region or replaces an object — through the real CLI and daemon: the right exit
//! code, one line naming the cause, and nothing half-written left on the host.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::e2e_support::{SPI1, SPI2, SimEnv, T, ctl};
use marble_tests::harness::{DaemonProcess, bin_path, wait_until_blocking};
use marble_tests::s3::LocalS3;
use marbled::images::ImageStore;

/// A simulated host whose daemon pulls from `s3` into `<dir>/pulled`.
fn env_with(s3: &LocalS3) -> SimEnv {
    let mut env = SimEnv::new();
    let mut images = s3.config();
    images.bundles_dir = Some(pulled_dir(&env));
    env.config.images = images;
    env
}

fn pulled_dir(env: &SimEnv) -> PathBuf {
    env.dir.path().join("pulled")
}

/// Entries of `dir` (none when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Upload the local file `path` as object `key` with the daemon's own store code.
fn upload(s3: &LocalS3, path: &Path, key: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = ImageStore::new(s3.config()).await.unwrap();
        store.upload_file(path, key).await.unwrap();
    });
}

/// A zip holding `X.macvm/config.pvs` twice (Python's zipfile warns but writes it, as a
/// hostile or broken tool would).
fn zip_with_duplicate(path: &Path) {
    let script = format!(
        "import zipfile, warnings\nwarnings.simplefilter('ignore')\nz=zipfile.ZipFile({:?},'w')\nz.writestr('X.macvm/Snapshots.xml','ok')\nz.writestr('X.macvm/config.pvs','ok')\nz.writestr('X.macvm/config.pvs','pwned')\nz.close()\n",
        path.to_str().unwrap()
    );
    let st = Command::new("python3")
        .args(["-c", &script])
        .status()
        .expect("python3 needed");
    assert!(st.success());
}

/// Case 8: `image pull` of a zip with two entries of one name exits 65 naming the entry;
/// nothing is registered and nothing is left in the bundles directory.
#[test]
fn case_08_duplicate_zip_entries_exit_65_naming_the_entry() {
    let Some(s3) = LocalS3::start() else { return };
    let env = env_with(&s3);
    let name = "2025-02-01-ROOT-VM-dup";
    let zip = env.dir.path().join("dup.zip");
    zip_with_duplicate(&zip);
    upload(&s3, &zip, &format!("ROOT/{name}.zip"));
    let daemon = env.spawn();
    let vm = "macphsft-test-ROOT-VM-dup";
    let out = ctl(&daemon.socket, &["image", "pull", name, "--as", vm]);
    assert_eq!(out.code, 65, "{out}\n{}", daemon.log_text());
    assert!(
        out.stderr.contains("X.macvm/config.pvs"),
        "the message names the duplicated entry: {out}"
    );
    assert!(env.host.vm(vm).is_err(), "nothing registered");
    assert_eq!(
        entries(&pulled_dir(&env)),
        Vec::<String>::new(),
        "nothing left"
    );
}

/// Push a copy of `env`'s VM `SPI1` (a bundle the simulator can register) plus `files`
/// small files as a bundle `<name>.macvm` under image `name`.
fn push_bundle(env: &SimEnv, s3: &LocalS3, name: &str, files: usize) {
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join(format!("{name}.macvm"));
    copy_tree(&env.host.vm(SPI1).unwrap().home, &bundle);
    // Registered under its own name, not as a second SPI1.
    let config = bundle.join("config.pvs");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(SPI1, name)).unwrap();
    for i in 0..files {
        let data = marble_tests::data::noise(i as u64, 64 * 1024);
        std::fs::write(bundle.join(format!("file-{i:02}.bin")), data).unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = ImageStore::new(s3.config()).await.unwrap();
        let image = marbled::images::ImageName::parse(name).unwrap();
        store.push_dir(&bundle, &image, &|_| {}).await.unwrap();
    });
}

/// Copy the directory tree `from` (files and directories only) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Whether this machine lets an unprivileged user mount a tmpfs in private user and mount
/// namespaces (`unshare -r -m`).
fn can_mount_tmpfs() -> bool {
    Command::new("unshare")
        .args(["-r", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Start the daemon of `env` in private user and mount namespaces where `dir` is a tmpfs
/// that holds at most `inodes` files and directories: creating one more fails with a real
/// ENOSPC from the kernel (bytes stay plentiful, so the pull's free-space check passes and
/// the failure comes mid-write, as when a disk fills during a pull). `exec` keeps the pid,
/// so `/proc/<pid>/root` shows the daemon's view of `dir`.
fn spawn_on_tiny_fs(env: &SimEnv, dir: &Path, inodes: u32) -> DaemonProcess {
    let config_path = env.dir.path().join("marbled.toml");
    std::fs::write(&config_path, toml::to_string(&env.config).unwrap()).unwrap();
    let log = env.dir.path().join("marbled-tinyfs.log");
    let script = format!(
        "mount -t tmpfs -o size=1g,nr_inodes={inodes} tmpfs \"$MARBLE_TINY\" && exec \"$0\" \"$@\""
    );
    let child = Command::new("unshare")
        .args(["-r", "-m", "sh", "-c", &script])
        .arg(bin_path("marbled-under-test"))
        .arg("--config")
        .arg(&config_path)
        .arg("run")
        .env("MARBLE_TINY", dir)
        .env("MARBLE_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let daemon = DaemonProcess {
        child,
        socket: env.config.daemon.socket.clone(),
        log,
    };
    env.wait_inventory(&daemon);
    daemon
}

/// Pull `image` as `vm` over a raw connection whose hello announces protocol `1.minor`; the
/// terminal answer's error kind (`None`: it succeeded).
fn pull_kind_as_client_of_minor(
    socket: &Path,
    minor: u16,
    image: &str,
    vm: &str,
) -> Option<marble_proto::ErrorKind> {
    use marble_proto::handshake::Hello;
    use marble_proto::{ClientFrame, FramedConn, Reply, Request, ServerFrame};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
        let mut conn = FramedConn::new(stream);
        let hello = Hello {
            minor,
            ..Hello::current("faults-old-client")
        };
        conn.client_handshake(&hello).await.unwrap();
        let body = Request::ImagePull {
            name: image.into(),
            as_name: Some(vm.into()),
            detach: false,
        };
        conn.send(&ClientFrame { id: 7, body }).await.unwrap();
        loop {
            let frame = tokio::time::timeout(T, conn.recv::<ServerFrame>())
                .await
                .expect("an answer within T")
                .unwrap()
                .expect("an answer before the daemon closes");
            match frame.body {
                Reply::Ok(_) => return None,
                Reply::Err(err) => return Some(err.kind),
                Reply::Event(_) => {}
                Reply::EndOfStream => panic!("end of stream before the answer"),
            }
        }
    })
}

/// Case 11: a pull that runs out of space mid-write exits 73 (EX_CANTCREAT) with the free and
/// needed bytes, not 70 ("internal bug"); the partial download is removed and nothing is
/// registered.
#[test]
fn case_11_enospc_during_a_pull_exits_73_with_the_bytes_and_leaves_nothing() {
    if !can_mount_tmpfs() {
        eprintln!("\n!!!!! SKIPPING case 11: `unshare -r -m` cannot mount a tmpfs here !!!!!\n");
        return;
    }
    let Some(s3) = LocalS3::start() else { return };
    let env = env_with(&s3);
    let name = "2025-03-01-ROOT-VM-full";
    push_bundle(&env, &s3, name, 12);
    let pulled = pulled_dir(&env);
    std::fs::create_dir_all(&pulled).unwrap();
    // The root, the partial directory, its tree, the journal and a few files fit; the
    // twelve files of the bundle do not.
    let daemon = spawn_on_tiny_fs(&env, &pulled, 8);
    let seen = PathBuf::from(format!("/proc/{}/root", daemon.child.id())).join(
        pulled
            .strip_prefix("/")
            .expect("the bundles directory is absolute"),
    );
    assert_eq!(
        entries(&seen),
        Vec::<String>::new(),
        "the tmpfs starts empty"
    );
    let vm = "macphsft-test-ROOT-VM-full";
    let out = ctl(&daemon.socket, &["image", "pull", name, "--as", vm]);
    assert_eq!(out.code, 73, "{out}\n{}", daemon.log_text());
    let line = out.stderr.trim();
    assert!(line.contains("No space left on device"), "{out}");
    assert!(
        line.contains("bytes free") && line.contains("needs"),
        "the free and the needed bytes: {out}"
    );
    assert!(env.host.vm(vm).is_err(), "nothing registered");
    assert_eq!(
        entries(&seen),
        Vec::<String>::new(),
        "no partial download left"
    );
    // A rerun meets the same full disk, not a leftover of the first attempt.
    let again = ctl(&daemon.socket, &["image", "pull", name, "--as", vm]);
    assert_eq!(again.code, 73, "{again}");
    assert_eq!(
        entries(&seen),
        Vec::<String>::new(),
        "no partial download left"
    );
    // A client of protocol 1.5 cannot decode `NoSpace` (1.6): it gets what it meant before.
    use marble_proto::ErrorKind;
    let old = pull_kind_as_client_of_minor(&daemon.socket, 5, name, vm);
    assert_eq!(old, Some(ErrorKind::Unavailable));
    let new = pull_kind_as_client_of_minor(&daemon.socket, 6, name, vm);
    assert_eq!(new, Some(ErrorKind::NoSpace));
}

/// What a Garage server in region `garage` answers a request signed for another region
/// (`reference/s3.md` §1.3: "must equal the configured `s3_region` (400 otherwise)").
const GARAGE_WRONG_REGION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AuthorizationHeaderMalformed</Code><Message>Authorization header malformed, unexpected scope: 20261206/us-east-1/s3/aws4_request expected: '20261206/garage/s3/aws4_request'</Message><Resource>/marble</Resource><Region>garage</Region></Error>";

/// A stand-in S3 endpoint that answers every request with `status` and `body` (an S3 error
/// document), and records each request line.
struct FixedAnswer {
    endpoint: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FixedAnswer {
    fn start(status: &'static str, body: &'static str) -> FixedAnswer {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    // Keep-alive: one answer per request head (and its body) until EOF.
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut len = 0usize;
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':')
                                && k.eq_ignore_ascii_case("content-length")
                            {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut sink = vec![0u8; len];
                        if reader.read_exact(&mut sink).is_err() {
                            return;
                        }
                        seen.lock().unwrap().push(line.trim_end().to_owned());
                        let head_only = line.starts_with("HEAD ");
                        let answer = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{}",
                            body.len(),
                            if head_only { "" } else { body }
                        );
                        if writer.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FixedAnswer { endpoint, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Case 12, first half: a server in another region makes `image ls` exit 69 with one line
/// naming the cause and the key to set (`images.region`), not the SDK's debug dump; the fleet
/// heartbeat, failing every second for the same reason, logs it once.
#[test]
fn case_12_region_mismatch_is_one_line_naming_images_region_logged_once() {
    let Some(s3) = LocalS3::start() else { return };
    let garage = FixedAnswer::start("400 Bad Request", GARAGE_WRONG_REGION);
    let mut env = env_with(&s3);
    env.config.images.endpoint = Some(garage.endpoint.clone());
    env.config.fleet = Some(marbled::config::FleetSection {
        interval: std::time::Duration::from_secs(1),
        ..marbled::config::FleetSection::default()
    });
    let daemon = env.spawn();
    let out = ctl(&daemon.socket, &["image", "ls"]);
    assert_eq!(out.code, 69, "{out}");
    let err = out.stderr.trim();
    assert_eq!(err.lines().count(), 1, "one line: {out}");
    assert!(
        err.contains("images.region") && err.contains("\"garage\"") && err.contains("us-east-1"),
        "names the cause and the key to set: {out}"
    );
    for dump in [
        "Error {",
        "aws_request_id",
        "ErrorMetadata",
        "<?xml",
        "unhandled",
    ] {
        assert!(!err.contains(dump), "no SDK dump ({dump}): {out}");
    }
    // Four heartbeat rounds fail the same way ...
    let heartbeats = || {
        garage
            .requests()
            .iter()
            .filter(|r| r.contains("/fleet/"))
            .count()
    };
    assert!(
        wait_until_blocking(T, || heartbeats() >= 4),
        "heartbeats tried: {:?}\n{}",
        garage.requests(),
        daemon.log_text()
    );
    // ... and the log says so once, in one line naming the key.
    let log = daemon.log_text();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("heartbeat"))
        .collect();
    assert_eq!(warned.len(), 1, "one warning for repeated failures:\n{log}");
    assert!(warned[0].contains("images.region"), "{}", warned[0]);
    for dump in ["Error {", "aws_request_id", "<?xml"] {
        assert!(
            !warned[0].contains(dump),
            "no SDK dump ({dump}): {}",
            warned[0]
        );
    }
}

/// A loopback proxy to s3s-fs that answers every read pinned with `If-Match` with the 412
/// a strict server (Garage, Ceph, AWS) gives when the object was replaced since that ETag —
/// s3s-fs ignores `If-Match` — and forwards everything else. The SDK waits for each answer
/// before sending the next request on a connection, so the injected answer never interleaves
/// with a forwarded one.
fn if_match_refusing_proxy(
    upstream: std::net::SocketAddr,
    refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> String {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    const PRECONDITION_FAILED: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>";
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let (mut back_from, mut back_to) =
                (server.try_clone().unwrap(), client.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut back_from, &mut back_to);
                let _ = back_to.shutdown(std::net::Shutdown::Write);
            });
            let mut server = server;
            let refuse = refuse.clone();
            std::thread::spawn(move || {
                let mut buf: Vec<u8> = Vec::new();
                let mut tmp = vec![0u8; 64 * 1024];
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match client.read(&mut tmp) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap_or(0));
                    while buf.len() < end + len {
                        match client.read(&mut tmp) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    let request: Vec<u8> = buf.drain(..end + len).collect();
                    if head.starts_with("get ")
                        && head.contains("\r\nif-match:")
                        && refuse.load(std::sync::atomic::Ordering::SeqCst)
                    {
                        let answer = format!(
                            "HTTP/1.1 412 Precondition Failed\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{PRECONDITION_FAILED}",
                            PRECONDITION_FAILED.len()
                        );
                        if client.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    } else if server.write_all(&request).is_err() {
                        return;
                    }
                }
            });
        }
    });
    endpoint
}

/// Case 12, second half: a data object replaced under its manifest (the server's 412 to the
/// If-Match-pinned reads) is a data error, 65, not an S3 outage; the partial download is
/// removed, so a rerun (here against an unchanged object) succeeds.
#[test]
fn case_12_object_replaced_under_its_manifest_exits_65_and_a_rerun_succeeds() {
    let Some(s3) = LocalS3::start() else { return };
    let mut env = env_with(&s3);
    let name = "2025-04-01-ROOT-VM-swap";
    push_bundle(&env, &s3, name, 3);
    // The object was replaced since its manifest: the server refuses the pinned reads.
    let refuse = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let strict = if_match_refusing_proxy(s3.addr, refuse.clone());
    env.config.images.endpoint = Some(strict);
    let daemon = env.spawn();
    let vm = "macphsft-test-ROOT-VM-swap";
    let out = ctl(&daemon.socket, &["image", "pull", name, "--as", vm]);
    assert_eq!(out.code, 65, "{out}\n{}", daemon.log_text());
    assert!(out.stderr.contains("replaced"), "says what happened: {out}");
    assert!(env.host.vm(vm).is_err(), "nothing registered");
    assert_eq!(
        entries(&pulled_dir(&env)),
        Vec::<String>::new(),
        "no partial left"
    );
    // The same pull when the object matches its manifest again: nothing stale is in the way.
    refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    let again = ctl(&daemon.socket, &["image", "pull", name, "--as", vm]);
    assert_eq!(again.code, 0, "{again}\n{}", daemon.log_text());
}

/// Case 10: a name that enters from a person is checked at the door with one rule — `image
/// pull --as` with `'`, `;` or `>` is refused (64) naming the rule, before anything is
/// fetched — and every command printed for a person to copy is shell-quoted, so a VM whose
/// (pre-existing) name holds a quote and a space gets a hint that pastes as the right argv.
#[test]
fn case_10_names_are_checked_at_the_door_and_hints_are_quoted() {
    let env = SimEnv::new();
    let odd = "macphsft01-SPI-VM-it's 14";
    env.host.add_vm(odd).unwrap();
    let daemon = env.spawn();
    for bad in ["vm'1", "vm;reboot", "vm>x", "-rf"] {
        let out = ctl(
            &daemon.socket,
            &[
                "image",
                "pull",
                "2026-11-28-ROOT-VM-macOS-14",
                &format!("--as={bad}"),
            ],
        );
        assert_eq!(out.code, 64, "--as {bad:?}: {out}");
        assert!(
            out.stderr.contains("--as") && out.stderr.trim().lines().count() == 1,
            "one line naming the option: {out}"
        );
    }
    let out = ctl(&daemon.socket, &["vm", "start", odd]);
    assert_eq!(out.code, 0, "{out}");
    let out = ctl(&daemon.socket, &["vm", "start", SPI2]);
    assert_eq!(out.code, 75, "{out}");
    let hint = out
        .stderr
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("a command in backquotes: {out}"));
    // Pasted into a shell, the hint runs `marblectl` with exactly these arguments.
    let shell = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("marblectl() {{ printf '%s\\n' \"$@\"; }}; {hint}"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&shell.stdout),
        format!("vm\nstop\n{odd}\n"),
        "hint {hint:?}"
    );
}

/// Case 10, the commands `vm create` reports: an IPSW path with a space and a quote (a
/// download folder can hold anything) is shown so that each `prlctl …` line, pasted into a
/// shell, runs exactly the argv the daemon ran.
#[test]
fn case_10_vm_create_reports_commands_that_paste_as_the_argv_run() {
    let mut env = SimEnv::new();
    let disk = env.dir.path().join("build_drive.hdd");
    std::fs::create_dir(&disk).unwrap();
    let prlsrvctl = env.dir.path().join("prlsrvctl");
    std::os::unix::fs::symlink(bin_path("fake-prlctl"), &prlsrvctl).unwrap();
    env.config.host.build_disk = Some(disk);
    env.config.host.prlsrvctl = prlsrvctl;
    env.config.host.min_free_disk_gib = 0;
    let daemon = env.spawn();
    let downloads = env.dir.path().join("Bob's Downloads");
    std::fs::create_dir(&downloads).unwrap();
    let ipsw = downloads.join("UniversalMac 26.0.ipsw");
    std::fs::write(&ipsw, b"not really an ipsw").unwrap();
    let name = "macphsft01-ROOT-VM-macOS-26";
    env.host.clear_invocations().unwrap();
    let out = ctl(
        &daemon.socket,
        &[
            "vm",
            "create",
            name,
            "--ipsw",
            ipsw.to_str().unwrap(),
            "--team",
            "root",
        ],
    );
    assert_eq!(out.code, 0, "{out}\n{}", daemon.log_text());
    let shown: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("    prlctl "))
        .collect();
    let ran: Vec<Vec<String>> = env
        .host
        .argvs()
        .unwrap()
        .into_iter()
        .filter(|a| matches!(a.first().map(String::as_str), Some("create" | "set")))
        .collect();
    assert_eq!(shown.len(), ran.len(), "{out}\nran: {ran:?}");
    for (line, argv) in shown.iter().zip(&ran) {
        let shell = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "prlctl() {{ printf '%s\\n' \"$@\"; }}; prlctl {line}"
            ))
            .output()
            .unwrap();
        let words: Vec<String> = String::from_utf8_lossy(&shell.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(&words, argv, "shown: prlctl {line}");
    }
}
