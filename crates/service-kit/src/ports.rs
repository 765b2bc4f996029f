//! Picking a free loopback port for a process that binds it itself.
//!
//! Whatever binds in-process binds port 0 and keeps the listener. This is
//! for the other case: `dapr-wasm up` tells each app and sidecar its ports
//! before they start (`DAPR_METRICS_PORT`, ...), so it has to pick ports
//! that are free now and that nobody else will pick meanwhile.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// A port free on 127.0.0.1 now, for a process that binds it itself (as
/// `dapr run` picks a sidecar's metrics port when the run file names none).
///
/// The port comes from below the kernel's ephemeral range, never from it: a
/// port the kernel hands out for `bind(0)` can be handed out again at once,
/// to another listener or to any outgoing connection, before the app binds
/// it (a CI run failed on exactly that: "cannot listen for metrics ...:
/// Address already in use").
///
/// Processes picking side by side (two `up` runs, or tests in parallel)
/// must not pick the same port before either binds it: a CI run failed on
/// that too. So each port given out is also reserved, for as long as this
/// process lives, with a lock on its byte of one file shared by every
/// process ([`Reservations`]); a port another live process reserved is
/// skipped. Ports are tried in turn from a start that differs per process,
/// so pickers seldom even meet.
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 10_000;
    let end = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&low| (FIRST + 1_000..=u32::from(u16::MAX)).contains(&low))
        .unwrap_or(32_768);
    let span = end - FIRST;
    let start = std::process::id().wrapping_mul(7_919) % span;
    let reservations = Reservations::shared();
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let Ok(port) = u16::try_from(FIRST + offset) else {
            continue;
        };
        if reservations.is_some_and(|r| !r.reserve(port)) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("every port from {FIRST} to {end} is taken on 127.0.0.1"),
    ))
}

/// The ports this process reserved: byte `port` of one file in the temp
/// folder, locked with an open file description lock (`F_OFD_SETLK`). The
/// kernel drops the locks when the process ends, however it ends, so a
/// reservation never outlives its holder and the file needs no cleaning.
struct Reservations(File);

impl Reservations {
    /// This process's handle on the shared file, opened once; `None` when
    /// it cannot be opened (then ports are only checked free, as before).
    fn shared() -> Option<&'static Reservations> {
        static SHARED: OnceLock<Option<Reservations>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
                let path = std::env::temp_dir().join("dapr-wasm-port-reservations");
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o666)
                    .open(&path)
                    .inspect_err(|err| {
                        tracing::debug!("ports are not reserved ({}: {err})", path.display());
                    })
                    .ok()?;
                // Another user's processes pick ports too (the umask may
                // have narrowed the mode); failing to widen it is harmless.
                let _ = file.set_permissions(std::fs::Permissions::from_mode(0o666));
                Some(Reservations(file))
            })
            .as_ref()
    }

    /// Reserves `port` for the rest of this process's life: false when
    /// another process holds it.
    fn reserve(&self, port: u16) -> bool {
        // SAFETY: `flock` is plain data; all-zero is a valid value of it.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        lock.l_start = libc::off_t::from(port);
        lock.l_len = 1;
        // SAFETY: the fd is open for as long as `self` lives (forever), and
        // `lock` is a valid `flock` for F_OFD_SETLK (l_pid is 0, as it must
        // be).
        let taken = unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
        // An error other than "held elsewhere" (EAGAIN/EACCES) leaves the
        // port unreserved but usable, as when the file cannot be opened.
        taken == 0
            || !matches!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN | libc::EACCES)
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port reserved by one process is skipped by another: the child
    /// here is a second process (this test binary, run for the helper
    /// below) that reserves ports and reports them, and this process must
    /// be refused each of them while the child lives.
    #[test]
    fn a_port_reserved_by_another_process_is_not_given_out() {
        if let Some(count) = std::env::var_os("PORTS_TEST_RESERVE") {
            // The child: reserve, report, then wait to be killed.
            let count: usize = count.to_str().unwrap().parse().unwrap();
            let ports: Vec<String> = (0..count)
                .map(|_| free_port().unwrap().to_string())
                .collect();
            println!("reserved: {}", ports.join(" "));
            std::thread::sleep(std::time::Duration::from_secs(600));
            return;
        }
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ports::tests::a_port_reserved_by_another_process_is_not_given_out",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PORTS_TEST_RESERVE", "20")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        // The child's own test harness prints around it ("test ... ").
        let held: Vec<u16> = loop {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "the child printed no ports"
            );
            if let Some((_, ports)) = line.split_once("reserved: ") {
                break ports
                    .split_whitespace()
                    .map(|port| port.parse().unwrap())
                    .collect();
            }
        };
        assert_eq!(held.len(), 20);
        let refused = Reservations::shared().map_or(0, |reservations| {
            held.iter()
                .filter(|&&port| !reservations.reserve(port))
                .count()
        });
        let mine: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(refused, held.len(), "ports the child holds: {held:?}");
        assert!(
            mine.iter().all(|port| !held.contains(port)),
            "{mine:?} shares a port with the child's {held:?}"
        );
    }
}
