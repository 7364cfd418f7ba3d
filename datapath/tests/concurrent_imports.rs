//! Twenty imports at once in one process, half of them resumed after dropped connections: all
//! complete with the right bytes, and afterwards the process has the file descriptors and
//! threads it had before (nothing leaked per import). Alone in its test binary, so no other
//! test's threads or files move the counts.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use cdi_datapath::sink::{TargetOptions, open_target};
use cdi_datapath::source::{HttpOptions, HttpSource, RetryPolicy};
use cdi_datapath::{ImportSpec, Progress, import};
use cdi_testdata::http::{Behaviour, TestServer};
use cdi_testdata::qcow2::Qcow2Builder;

const IMPORTS: usize = 20;

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Open descriptors and threads of this process.
fn resources() -> (usize, usize) {
    (count("/proc/self/fd"), count("/proc/self/task"))
}

fn options() -> HttpOptions {
    HttpOptions {
        retry: RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_total_wait: Duration::from_secs(10),
        },
        ..HttpOptions::default()
    }
}

fn run_one(server: &TestServer, dest: &Path) {
    let source = HttpSource::open_with(&server.url("/file"), options()).expect("open source");
    let sink = open_target(dest, TargetOptions::default()).expect("open target");
    import(
        Box::new(source),
        sink,
        &ImportSpec::default(),
        &Progress::new(),
    )
    .unwrap_or_else(|f| panic!("{}: {}", dest.display(), f.error));
}

#[test]
fn twenty_concurrent_imports_complete_and_leak_no_descriptors_or_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images: Vec<Qcow2Builder> = (0..IMPORTS as u64)
        .map(|seed| Qcow2Builder::mixed(seed, 8 << 20))
        .collect();
    let servers: Vec<TestServer> = images
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let body = b.build();
            let len = body.len() as u64;
            TestServer::start(Behaviour {
                body,
                etag: Some(format!("\"v{i}\"")),
                ranges: true,
                // Every other import loses its connection twice.
                drop_at: if i % 2 == 0 {
                    VecDeque::from([len / 3, len * 2 / 3])
                } else {
                    VecDeque::new()
                },
                ..Behaviour::default()
            })
        })
        .collect();
    // One import first, so that whatever is made once per process (buffer pools, the
    // TLS and HTTP clients' statics) exists before the baseline.
    run_one(&servers[1], &dir.path().join("warm-up.raw"));
    std::fs::remove_file(dir.path().join("warm-up.raw")).expect("remove warm-up");
    servers[1]
        .behaviour
        .lock()
        .expect("behaviour")
        .drop_at
        .clear();
    let (fds, threads) = resources();

    std::thread::scope(|scope| {
        for (i, server) in servers.iter().enumerate() {
            let dest = dir.path().join(format!("disk-{i}.raw"));
            scope.spawn(move || run_one(server, &dest));
        }
    });
    for (i, b) in images.iter().enumerate() {
        let disk = std::fs::read(dir.path().join(format!("disk-{i}.raw"))).expect("disk");
        assert!(disk == b.expected_raw(), "import {i} differs");
    }

    // The servers' connection threads end a moment after their clients close.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut now = resources();
    while now.0 > fds || now.1 > threads {
        assert!(
            Instant::now() < deadline,
            "after {IMPORTS} imports: {} descriptors (before: {fds}), {} threads (before: \
             {threads})",
            now.0,
            now.1
        );
        std::thread::sleep(Duration::from_millis(50));
        now = resources();
    }
}
