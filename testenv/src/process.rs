//! Child processes that never outlive the test process, and free loopback ports.
// A pre-exec hook (between fork and exec) is unsafe by nature; it is the crate's only one.
#![allow(unsafe_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` so that the kernel kills it when the test process exits, however it exits
/// (a panic that aborts, SIGKILL, a timeout in CI).
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child ends, not the process, so
/// every child is forked by one thread that lives as long as the process.
pub fn spawn_tied(mut cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testenv-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // SAFETY: only an async-signal-safe prctl runs between fork and exec.
                    unsafe {
                        cmd.pre_exec(|| {
                            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the testenv-spawner thread");
        tx
    });
    let (tx, rx) = mpsc::channel();
    // Process groups make the whole tree killable at once.
    cmd.process_group(0);
    spawner
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("the testenv spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the testenv spawner thread did not answer"))?
}

/// Asks a child's process group to stop, and kills it if it has not after `grace`.
pub fn stop(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pgid = Pid::from_raw(child.id() as i32);
    if let Some(pgid) = pgid {
        let _ = rustix::process::kill_process_group(pgid, Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(pgid) = pgid {
        let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
    }
    let _ = child.wait();
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// User+system CPU seconds and peak RSS (MiB) of process `pid` so far, from /proc (zeros if
/// it cannot be read), for benchmarks.
pub fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the name.
    let clock_ticks = 100.0;
    let cpu = (ticks(11) + ticks(12)) / clock_ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm_kib / 1024.0)
}
