//! Twenty upload servers on one machine at once, each taking a resumable upload of its own
//! qcow2: all complete with the image they were sent, none grows past a bounded memory, and the
//! client side (what the upload proxy does for them) ends with the file descriptors and threads
//! it started with.

mod support;

use std::time::{Duration, Instant};

use cdi_testdata::qcow2::Qcow2Builder;
use support::*;

/// Servers and uploads at once.
const SERVERS: usize = 20;
/// The disk each upload holds (16 MiB, a third compressed clusters).
const VIRTUAL: u64 = 16 << 20;
/// Peak resident memory a server may reach while converting one (KiB).
const MAX_SERVER_RSS_KIB: u64 = 160 << 10;

/// Open descriptors of this process.
fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Threads of this process.
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Waits up to `within` for `now()` to come back to `before`; returns what it last saw.
fn settles(before: usize, within: Duration, now: impl Fn() -> usize) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let seen = now();
        if seen <= before || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn twenty_concurrent_uploads_complete_in_bounded_memory_and_leak_nothing() {
    let images: Vec<Qcow2Builder> = (0..SERVERS as u64)
        .map(|seed| Qcow2Builder::mixed(100 + seed, VIRTUAL))
        .collect();
    let bodies: Vec<Vec<u8>> = images.iter().map(Qcow2Builder::build).collect();
    let mut pods: Vec<Pod> = (0..SERVERS).map(|_| Pod::start(&[])).collect();
    let rt = runtime();
    let (fds_before, threads_before) = (fds(), threads());

    // All but the last byte of every upload, at once.
    let locations: Vec<String> = pods
        .iter()
        .zip(&bodies)
        .map(|(pod, body)| tus_create(&rt, pod, body.len(), None))
        .collect();
    rt.block_on(async {
        let uploads =
            pods.iter()
                .zip(&bodies)
                .zip(&locations)
                .map(|((pod, body), location)| async move {
                    let head = body[..body.len() - 1].to_vec();
                    let r = tus_patch(pod, location, head, 0, None).await;
                    assert_eq!(r.status(), 204, "{}", pod.log());
                });
        futures_util::future::join_all(uploads).await;
    });
    // Every server has converted all but the end; its peak memory is what a whole import costs.
    for (i, pod) in pods.iter().enumerate() {
        let rss = pod.peak_rss_kib();
        assert!(
            rss < MAX_SERVER_RSS_KIB,
            "server {i} reached {} MiB",
            rss >> 10
        );
    }
    rt.block_on(async {
        let ends =
            pods.iter()
                .zip(&bodies)
                .zip(&locations)
                .map(|((pod, body), location)| async move {
                    let last = body.len() - 1;
                    let r =
                        tus_patch(pod, location, body[last..].to_vec(), last as u64, None).await;
                    assert_eq!(r.status(), 204, "{}", pod.log());
                });
        futures_util::future::join_all(ends).await;
    });

    for ((pod, image), i) in pods.iter_mut().zip(&images).zip(0..) {
        let (code, message) = pod.wait();
        assert_eq!(code, 0, "server {i}: {message}\n{}", pod.log());
        let written = pod.image();
        let raw = image.expected_raw();
        assert!(written[..raw.len()] == raw[..], "server {i}: image differs");
        assert!(
            written[raw.len()..].iter().all(|b| *b == 0),
            "server {i}: tail"
        );
    }

    // Connections closed, tasks and blocking threads gone (tokio keeps an idle blocking thread
    // for 10 s).
    let fds_after = settles(fds_before, Duration::from_secs(5), fds);
    assert!(
        fds_after <= fds_before,
        "descriptors: {fds_before} before, {fds_after} after"
    );
    let threads_after = settles(threads_before, Duration::from_secs(15), threads);
    assert!(
        threads_after <= threads_before,
        "threads: {threads_before} before, {threads_after} after"
    );
}
