//! Leader election on a coordination.k8s.io Lease, so only one replica reconciles at a time.
//! The Lease is upstream's (`cdi-controller-leader-election-helper`); losing it ends the process
//! (the Deployment restarts it as a follower), which is what client-go's elector does too.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};

use crate::Error;

/// Upstream's Lease name.
pub const LEASE_NAME: &str = "cdi-controller-leader-election-helper";
/// How long a Lease holds without renewal.
const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the leader renews.
const RENEW_PERIOD: Duration = Duration::from_secs(5);
/// How often a follower tries to take the Lease.
const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// What to do with the Lease as observed: a pure decision.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// It is ours, or free, or expired: write it with us as holder.
    Take { transitions: i32 },
    /// Someone else holds it.
    Wait,
}

/// Decides from the Lease's spec whether `identity` may take it at `now`.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> LeaseDecision {
    let Some(spec) = spec else {
        return LeaseDecision::Take { transitions: 0 };
    };
    let transitions = spec.lease_transitions.unwrap_or(0);
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == identity {
        return LeaseDecision::Take { transitions };
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    let renewed = spec.renew_time.as_ref().map(|t| t.0);
    match renewed {
        Some(r) if r + duration > now => LeaseDecision::Wait,
        _ => LeaseDecision::Take {
            transitions: transitions + 1,
        },
    }
}

/// Tries once to take or renew the Lease; `Ok(true)` when we hold it afterwards.
pub async fn try_acquire(api: &Api<Lease>, identity: &str) -> Result<bool, Error> {
    let now = Timestamp::now();
    let existing = api.get_opt(LEASE_NAME).await?;
    let decision = decide(
        existing.as_ref().and_then(|l| l.spec.as_ref()),
        identity,
        now,
    );
    let LeaseDecision::Take { transitions } = decision else {
        return Ok(false);
    };
    let previous_holder = existing
        .as_ref()
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.holder_identity.clone());
    let acquire_time = match (&existing, previous_holder.as_deref() == Some(identity)) {
        (Some(l), true) => l.spec.as_ref().and_then(|s| s.acquire_time.clone()),
        _ => Some(MicroTime(now)),
    };
    let spec = LeaseSpec {
        holder_identity: Some(identity.into()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time,
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let result = match existing {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        Some(mut lease) => {
            // resourceVersion makes this a compare-and-swap: a racing replica gets 409.
            lease.spec = Some(spec);
            api.replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Waits until `identity` leads, then keeps renewing in the background. The returned future
/// resolves if the lease is lost.
pub async fn acquire(
    api: Api<Lease>,
    identity: String,
) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
    loop {
        match try_acquire(&api, &identity).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "Could not read or write the leader Lease."),
        }
        tokio::time::sleep(RETRY_PERIOD).await;
    }
    tracing::info!(lease = LEASE_NAME, %identity, "Became the leader.");
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW_PERIOD).await;
            match try_acquire(&api, &identity).await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!("Another replica took the leader Lease.");
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "Could not renew the leader Lease."),
            }
            if last_renewal.elapsed() > LEASE_DURATION - RETRY_PERIOD {
                tracing::error!("Could not renew the leader Lease in time.");
                break;
            }
        }
        let _ = lost_tx.send(());
    });
    async move {
        let _ = lost_rx.await;
    }
}

/// Gives the Lease up (on a clean shutdown), so the next replica need not wait for it to
/// expire. Best effort: a Lease held by someone else is left alone.
pub async fn release(api: &Api<Lease>, identity: &str) {
    let Ok(Some(mut lease)) = api.get_opt(LEASE_NAME).await else {
        return;
    };
    let ours = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        == Some(identity);
    if !ours {
        return;
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
    }
    match api
        .replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => tracing::info!(lease = LEASE_NAME, "Released the leader Lease."),
        Err(e) => tracing::warn!(error = %e, "Could not release the leader Lease."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_secs_ago: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(
                Timestamp::now() - SignedDuration::from_secs(renewed_secs_ago),
            )),
            lease_transitions: Some(3),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_or_own_lease_is_taken() {
        let now = Timestamp::now();
        assert_eq!(
            decide(None, "me", now),
            LeaseDecision::Take { transitions: 0 }
        );
        assert_eq!(
            decide(Some(&spec("me", 1)), "me", now),
            LeaseDecision::Take { transitions: 3 }
        );
    }

    #[test]
    fn a_fresh_lease_of_another_holder_is_respected() {
        assert_eq!(
            decide(Some(&spec("other", 5)), "me", Timestamp::now()),
            LeaseDecision::Wait
        );
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_counted() {
        assert_eq!(
            decide(Some(&spec("other", 30)), "me", Timestamp::now()),
            LeaseDecision::Take { transitions: 4 }
        );
    }
}
