//! Back-off kept in memory per object (a restarted controller starts afresh): after failed
//! reconciles ([`FailureBackoff`], used by every controller through
//! [`Context::reconciled`](crate::Context::reconciled) and
//! [`Context::retry_after`](crate::Context::retry_after)), and between worker pods created for
//! the same claim ([`WorkerBackoff`]). Both wait 1 s, doubling to 5 min. And the back-off of
//! every controller's watches after an API error ([`watch_backoff`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(300);

/// The wait after `attempts` earlier attempts: 1 s, 2 s, 4 s, ... at most 5 min.
fn delay(attempts: u32) -> Duration {
    FIRST.saturating_mul(1u32 << attempts.min(16)).min(MAX)
}

/// Consecutive failed reconciles per object (keyed by controller and object), so an object that
/// keeps failing is retried less and less often instead of every few seconds.
#[derive(Debug, Default)]
pub struct FailureBackoff(Mutex<HashMap<String, u32>>);

impl FailureBackoff {
    /// Counts one more failure of `key`; returns how long to wait before retrying it.
    pub fn failed(&self, key: &str) -> Duration {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.to_owned()).or_insert(0);
        let wait = delay(*n);
        *n = n.saturating_add(1);
        wait
    }

    /// Forgets the failures of `key` after a reconcile that worked.
    pub fn succeeded(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// Spaces out worker pods created for one claim, so a pod that keeps failing before it runs
/// (evicted, unschedulable image) is not recreated in a tight loop.
#[derive(Debug, Default)]
pub struct WorkerBackoff {
    created: Mutex<HashMap<String, (Instant, u32)>>,
}

impl WorkerBackoff {
    fn key(claim: &PersistentVolumeClaim) -> String {
        claim.metadata.uid.clone().unwrap_or_default()
    }

    /// How long to wait before another pod may be created for `claim`, if at all.
    pub fn wait(&self, claim: &PersistentVolumeClaim) -> Option<Duration> {
        let map = self.created.lock().unwrap_or_else(|p| p.into_inner());
        let (at, attempts) = map.get(&Self::key(claim))?;
        delay(*attempts)
            .checked_sub(at.elapsed())
            .filter(|d| !d.is_zero())
    }

    /// Records that a pod was created for `claim`.
    pub fn created(&self, claim: &PersistentVolumeClaim) {
        let mut map = self.created.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(Self::key(claim)).or_insert((Instant::now(), 0));
        *entry = (Instant::now(), entry.1.saturating_add(1));
    }

    /// Forgets `claim` once its transfer is done.
    pub fn forget(&self, claim: &PersistentVolumeClaim) {
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&Self::key(claim));
    }
}

/// Doubling delays from `min` to `max`, restarted by [`Backoff::reset`].
#[derive(Clone, Debug)]
pub struct Doubling {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Doubling {
    pub fn new(min: Duration, max: Duration) -> Doubling {
        Doubling {
            min,
            max,
            next: min,
        }
    }
}

impl Iterator for Doubling {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (now * 2).min(self.max);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for Doubling {
    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// The back-off of a controller's watches: 250 ms doubling to 4 s, forgotten after 10 s
/// without errors. One back-off covers all of a controller's watches, so kube-runtime's default
/// (800 ms to 30 s, forgotten after 2 min) lets the burst of errors every watch meets when the
/// API server restarts (refused connections, then `410 Gone` as each resumes from a resource
/// version the new server's cache no longer holds) stall a controller for a minute or more.
pub fn watch_backoff() -> impl kube::runtime::utils::Backoff {
    kube::runtime::utils::ResetTimerBackoff::new(
        Doubling::new(Duration::from_millis(250), Duration::from_secs(4)),
        Duration::from_secs(10),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_exponentially_per_key_and_reset() {
        let failures = FailureBackoff::default();
        let delays: Vec<u64> = (0..4).map(|_| failures.failed("a").as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8]);
        assert_eq!(failures.failed("b"), FIRST, "keys are independent");
        for _ in 0..20 {
            failures.failed("a");
        }
        assert_eq!(failures.failed("a"), MAX);
        failures.succeeded("a");
        assert_eq!(failures.failed("a"), FIRST);
    }

    #[test]
    fn a_claims_second_pod_waits_and_a_finished_claim_is_forgotten() {
        let backoff = WorkerBackoff::default();
        let mut claim = PersistentVolumeClaim::default();
        claim.metadata.uid = Some("uid-1".into());
        assert_eq!(backoff.wait(&claim), None, "the first pod need not wait");
        backoff.created(&claim);
        let wait = backoff.wait(&claim).expect("the second pod waits");
        assert!(wait > Duration::from_millis(1500) && wait <= Duration::from_secs(2));
        backoff.forget(&claim);
        assert_eq!(backoff.wait(&claim), None);
    }

    #[test]
    fn watch_delays_double_to_their_cap_and_restart_on_reset() {
        use kube::runtime::utils::Backoff;
        let mut b = Doubling::new(Duration::from_millis(250), Duration::from_secs(4));
        let delays: Vec<u64> = b.by_ref().take(7).map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 4000, 4000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(250)));
    }
}
