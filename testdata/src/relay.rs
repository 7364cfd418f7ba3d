//! A TCP relay on 127.0.0.1 that breaks connections on purpose, for testing clients that must
//! resume: put it between a client and a server and plan where the cuts fall.
//!
//! ```text
//!  client ──► 127.0.0.1:relay ──(client→server bytes counted)──► 127.0.0.1:target
//!                 │ budget reached: both sockets of that connection shut down, one cut counted
//! ```
//!
//! Cuts are planned in client→server bytes (TLS records and HTTP headers included, since the
//! relay sees only TCP), in one of two ways:
//! - per connection ([`Relay::cut_connections_after`]): the next connections each get a byte
//!   budget, for clients that open one connection per request;
//! - cumulative ([`Relay::cut_at_totals`]): the connection that carries the byte at which the
//!   total sent through the relay (over every connection) reaches each offset is cut, whatever
//!   the client's connection reuse or parallelism; for browsers and other pooled clients.
//!
//! Downloads are cut the same ways in server→client bytes ([`Relay::cut_downloads_after`],
//! [`Relay::cut_downloads_at_totals`]), for clients that must resume a download.
//!
//! Nothing planned (or after [`Relay::pass`]): bytes pass untouched. Independently of cuts,
//! [`Relay::limit_rate`] slows client→server bytes down, for tests that must act while an
//! upload is under way.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the relay does with connections once their planned budgets are used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterBudgets {
    /// Pass them whole.
    Pass,
    /// Refuse them (accept and close at once): the network stays down.
    Refuse,
}

#[derive(Debug, Default)]
struct Plan {
    /// Budgets of the next connections, one each.
    budgets: VecDeque<u64>,
    /// Server→client budgets of the next connections, one each.
    download_budgets: VecDeque<u64>,
    /// Refuse connections once `budgets` is empty.
    refuse: bool,
    /// Cumulative totals (in `forwarded` terms, ascending) at which to cut.
    totals: VecDeque<u64>,
    /// Client→server bytes forwarded so far, over every connection.
    forwarded: u64,
    /// Cumulative server→client totals (in `downloaded` terms, ascending) at which to cut.
    download_totals: VecDeque<u64>,
    /// Server→client bytes forwarded so far, over every connection.
    downloaded: u64,
}

impl Plan {
    /// Of `n` client→server bytes just read on a connection with `left` of its own budget: how
    /// many to pass, and whether to cut the connection after them.
    fn take(&mut self, n: u64, left: &mut u64) -> (u64, bool) {
        take(n, left, &mut self.totals, &mut self.forwarded)
    }

    /// As [`Plan::take`], for `n` server→client bytes.
    fn take_download(&mut self, n: u64, left: &mut u64) -> (u64, bool) {
        take(n, left, &mut self.download_totals, &mut self.downloaded)
    }
}

/// Of `n` bytes just read on a connection with `left` of its own budget, with `totals` the
/// cumulative cut points and `counted` the bytes passed so far in that direction: how many to
/// pass, and whether to cut the connection after them.
fn take(n: u64, left: &mut u64, totals: &mut VecDeque<u64>, counted: &mut u64) -> (u64, bool) {
    let mut pass = n.min(*left);
    let mut cut = pass == *left;
    if let Some(&at) = totals.front() {
        let room = at.saturating_sub(*counted);
        if room <= pass {
            pass = room;
            cut = true;
            totals.pop_front();
        }
    }
    *left -= pass;
    *counted += pass;
    (pass, cut)
}

#[derive(Debug, Default)]
struct Shared {
    plan: Mutex<Plan>,
    cuts: AtomicUsize,
    connections: AtomicUsize,
    /// Client→server bytes per second each connection may send; 0 for no limit.
    rate: AtomicU64,
    /// The port new connections are relayed to.
    target: std::sync::atomic::AtomicU16,
    stop: AtomicBool,
}

/// A relay from 127.0.0.1:`port` to a server on 127.0.0.1, until dropped.
#[derive(Debug)]
pub struct Relay {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Relay {
    /// Relays 127.0.0.1:`port` (chosen by the system) to 127.0.0.1:`target`, passing every
    /// connection until told otherwise.
    pub fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().expect("relay address").port();
        let shared = Arc::new(Shared::default());
        shared.target.store(target, Ordering::Relaxed);
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (budget, download) = {
                    let mut plan = accepting.plan.lock().expect("relay plan");
                    let download = plan.download_budgets.pop_front().unwrap_or(u64::MAX);
                    match plan.budgets.pop_front() {
                        Some(budget) => (budget, download),
                        None if plan.refuse => {
                            drop(client);
                            continue;
                        }
                        None => (u64::MAX, download),
                    }
                };
                let target = accepting.target.load(Ordering::Relaxed);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                accepting.connections.fetch_add(1, Ordering::Relaxed);
                forward(client, server, budget, download, Arc::clone(&accepting));
            }
        });
        Relay { port, shared }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Cuts each of the next connections after its budget of client bytes (one budget per
    /// connection, in order); connections after those are passed or refused as `then` says.
    /// Replaces any earlier plan.
    pub fn cut_connections_after(&self, budgets: &[u64], then: AfterBudgets) {
        let mut plan = self.shared.plan.lock().expect("relay plan");
        plan.budgets = budgets.iter().copied().collect();
        plan.refuse = then == AfterBudgets::Refuse;
        plan.totals.clear();
    }

    /// Cuts whichever connection is carrying client bytes when the total forwarded from now
    /// on (over every connection) reaches each of `offsets`; one cut per offset. Replaces any
    /// earlier plan.
    pub fn cut_at_totals(&self, offsets: &[u64]) {
        let mut plan = self.shared.plan.lock().expect("relay plan");
        let base = plan.forwarded;
        let mut totals: Vec<u64> = offsets.iter().map(|o| base + o).collect();
        totals.sort_unstable();
        plan.totals = totals.into();
        plan.budgets.clear();
        plan.refuse = false;
    }

    /// Cuts each of the next connections after its budget of server→client bytes (one budget
    /// per connection, in order); later connections pass. Replaces any earlier download plan.
    pub fn cut_downloads_after(&self, budgets: &[u64]) {
        let mut plan = self.shared.plan.lock().expect("relay plan");
        plan.download_budgets = budgets.iter().copied().collect();
    }

    /// Cuts whichever connection is carrying server→client bytes when the total downloaded
    /// from now on (over every connection) reaches each of `offsets`; one cut per offset, so
    /// the cuts fall where planned however the client pools its connections. Replaces any
    /// earlier download plan.
    pub fn cut_downloads_at_totals(&self, offsets: &[u64]) {
        let mut plan = self.shared.plan.lock().expect("relay plan");
        let base = plan.downloaded;
        let mut totals: Vec<u64> = offsets.iter().map(|o| base + o).collect();
        totals.sort_unstable();
        plan.download_totals = totals.into();
        plan.download_budgets.clear();
    }

    /// Relays new connections to 127.0.0.1:`port` from now on (a server replaced behind the
    /// same address); connections already open keep theirs.
    pub fn retarget(&self, port: u16) {
        self.shared.target.store(port, Ordering::Relaxed);
    }

    /// Passes every connection from now on (connections already budgeted keep their budget).
    pub fn pass(&self) {
        let mut plan = self.shared.plan.lock().expect("relay plan");
        plan.budgets.clear();
        plan.download_budgets.clear();
        plan.download_totals.clear();
        plan.refuse = false;
        plan.totals.clear();
    }

    /// Limits each connection's client→server bytes to `bytes_per_second` (`None`: no limit),
    /// from its next read on.
    pub fn limit_rate(&self, bytes_per_second: Option<u64>) {
        self.shared
            .rate
            .store(bytes_per_second.unwrap_or(0), Ordering::Relaxed);
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::Relaxed)
    }

    /// Connections relayed so far (refused ones not counted).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Client→server bytes forwarded so far, over every connection.
    pub fn forwarded(&self) -> u64 {
        self.shared.plan.lock().expect("relay plan").forwarded
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies both ways on two threads; the client's bytes stop, and both sockets are shut down,
/// where the plan says.
fn forward(client: TcpStream, server: TcpStream, budget: u64, download: u64, shared: Arc<Shared>) {
    let (Ok(client_reader), Ok(server_writer)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let downloads = Arc::clone(&shared);
    std::thread::spawn(move || {
        let (mut from, mut to) = (client_reader, server_writer);
        let mut left = budget;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (pass, cut) = shared
                .plan
                .lock()
                .expect("relay plan")
                .take(n as u64, &mut left);
            if to.write_all(&buf[..pass as usize]).is_err() {
                break;
            }
            if cut {
                shared.cuts.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let rate = shared.rate.load(Ordering::Relaxed);
            if rate > 0 {
                std::thread::sleep(Duration::from_secs_f64(pass as f64 / rate as f64));
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let (mut from, mut to) = (server, client);
        let mut left = download;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n as u64,
            };
            let (pass, cut) = downloads
                .plan
                .lock()
                .expect("relay plan")
                .take_download(n, &mut left);
            if to.write_all(&buf[..pass as usize]).is_err() {
                break;
            }
            if cut {
                downloads.cuts.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A server that counts what each connection brought, answering nothing.
    fn sink() -> (u16, std::sync::mpsc::Receiver<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let _ = (&conn).read_to_end(&mut got);
                    let _ = tx.send(got.len());
                });
            }
        });
        (port, rx)
    }

    /// Sends `len` bytes on a new connection through `relay` and waits for the relay to close
    /// it (at a cut, or after passing them all).
    fn send(relay: &Relay, len: usize) {
        let mut conn = TcpStream::connect(("127.0.0.1", relay.port)).expect("connect");
        let _ = conn.write_all(&vec![7u8; len]);
        let _ = conn.shutdown(Shutdown::Write);
        // Waits for the relay to close its side (after a cut or the end).
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = conn.read_to_end(&mut Vec::new());
    }

    fn received(rx: &std::sync::mpsc::Receiver<usize>) -> usize {
        rx.recv_timeout(Duration::from_secs(5))
            .expect("server saw the connection end")
    }

    #[test]
    fn unplanned_connections_pass_whole() {
        let (port, rx) = sink();
        let relay = Relay::start(port);
        send(&relay, 300_000);
        assert_eq!(received(&rx), 300_000);
        assert_eq!(relay.cuts(), 0);
        assert_eq!(relay.forwarded(), 300_000);
    }

    #[test]
    fn each_budgeted_connection_is_cut_at_its_budget_then_others_pass() {
        let (port, rx) = sink();
        let relay = Relay::start(port);
        relay.cut_connections_after(&[1000, 70_000], AfterBudgets::Pass);
        send(&relay, 200_000);
        assert_eq!(received(&rx), 1000);
        send(&relay, 200_000);
        assert_eq!(received(&rx), 70_000);
        send(&relay, 200_000);
        assert_eq!(received(&rx), 200_000);
        assert_eq!(relay.cuts(), 2);
    }

    #[test]
    fn after_the_budgets_connections_can_be_refused() {
        let (port, rx) = sink();
        let relay = Relay::start(port);
        relay.cut_connections_after(&[10], AfterBudgets::Refuse);
        send(&relay, 100);
        assert_eq!(received(&rx), 10);
        send(&relay, 100);
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        assert_eq!(relay.connections(), 1);
    }

    #[test]
    fn a_limited_rate_slows_the_client_bytes_down() {
        let (port, rx) = sink();
        let relay = Relay::start(port);
        relay.limit_rate(Some(1 << 20));
        let started = Instant::now();
        send(&relay, 256 << 10);
        assert_eq!(received(&rx), 256 << 10);
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn cumulative_cuts_fall_on_totals_across_connections() {
        let (port, rx) = sink();
        let relay = Relay::start(port);
        send(&relay, 500);
        assert_eq!(received(&rx), 500);
        // Counted from now on: 500 already went through.
        relay.cut_at_totals(&[150_000, 100_000]);
        send(&relay, 60_000);
        assert_eq!(received(&rx), 60_000);
        send(&relay, 60_000);
        assert_eq!(received(&rx), 40_000, "cut at a total of 100,000");
        send(&relay, 60_000);
        assert_eq!(received(&rx), 50_000, "cut at a total of 150,000");
        send(&relay, 60_000);
        assert_eq!(received(&rx), 60_000);
        assert_eq!(relay.cuts(), 2);
        assert_eq!(relay.forwarded(), 500 + 210_000);
    }

    /// A server that sends `len` bytes on every connection, then closes it.
    fn source(len: usize) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = conn.write_all(&vec![9u8; len]);
                });
            }
        });
        port
    }

    fn download(relay: &Relay) -> usize {
        let mut conn = TcpStream::connect(("127.0.0.1", relay.port)).expect("connect");
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let mut got = Vec::new();
        let _ = conn.read_to_end(&mut got);
        got.len()
    }

    #[test]
    fn download_cuts_fall_on_totals_across_connections() {
        let relay = Relay::start(source(60_000));
        assert_eq!(download(&relay), 60_000);
        // Counted from now on: 60,000 already came through.
        relay.cut_downloads_at_totals(&[100_000, 70_000]);
        assert_eq!(download(&relay), 60_000);
        assert_eq!(download(&relay), 10_000, "cut at a total of 70,000");
        assert_eq!(download(&relay), 30_000, "cut at a total of 100,000");
        assert_eq!(download(&relay), 60_000);
        assert_eq!(relay.cuts(), 2);
    }
}
