//! Callback delivery: claims due deliveries from the outbox, POSTs each signed event to its
//! notify_url (HTTP or HTTPS), and records the attempt. Deliveries run concurrently with a
//! per-request timeout, so a slow or hanging receiver holds up only its own deliveries.

use std::sync::Arc;
use std::time::Duration;

use paykit_core::signing::{canonical_callback, sign};
use paykit_store::events::{ClaimedDelivery, DeliveryOutcome};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::app::AppState;

/// Deliveries in flight at once, per gateway process.
const MAX_IN_FLIGHT: usize = 512;

/// Builds the HTTP client callbacks go out on: rustls with the ring provider, and the
/// platform's roots plus any extra CA the operator configured (tests use their own). As
/// many idle connections per host as deliveries in flight: with fewer, a busy receiver
/// saw most callbacks open a new connection.
pub fn client(extra_ca_pem: Option<&[u8]>, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    crate::server::install_crypto_provider();
    let mut builder =
        reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).pool_max_idle_per_host(MAX_IN_FLIGHT);
    if let Some(pem) = extra_ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build()?)
}

/// Outcomes recorded per transaction, at most (no more can be waiting than are in flight).
const MAX_RECORD_BATCH: usize = MAX_IN_FLIGHT;

/// Runs forever: claim, deliver, record. Attempts are recorded by one task in batches, so
/// a busy dispatcher commits once per batch of outcomes rather than once per callback.
pub async fn run_dispatcher(state: AppState, http: reqwest::Client) {
    let worker = format!("gw-{}-{}", std::process::id(), paykit_store::ids::random_base32(6));
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let lease_secs = state.config().delivery_lease_secs;
    let (outcomes, finished) = mpsc::unbounded_channel();
    tokio::spawn(record_outcomes(state.clone(), worker.clone(), finished));
    loop {
        // Wait for a free slot rather than poll: when all are busy, the next claim is due
        // the moment a batch of outcomes is recorded. (Only deliveries take slots, so the
        // ones free now stay free until the claimed deliveries below take them.)
        drop(slots.acquire().await.expect("the semaphore is never closed"));
        let free = slots.available_permits() as i64;
        let claimed = match state
            .store()
            .claim_deliveries(&worker, state.clock().now(), state.wall_now(), lease_secs, free)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming deliveries failed; will retry");
                Vec::new()
            }
        };
        if claimed.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        for delivery in claimed {
            let permit = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
            let (state, http, outcomes) = (state.clone(), http.clone(), outcomes.clone());
            tokio::spawn(async move {
                let outcome = deliver(&state, &http, delivery).await;
                // The slot stays taken until the outcome is recorded, so a slow database
                // bounds the work in flight instead of growing a queue.
                let _ = outcomes.send((outcome, permit));
            });
        }
    }
}

async fn record_outcomes(
    state: AppState,
    worker: String,
    mut finished: mpsc::UnboundedReceiver<(DeliveryOutcome, OwnedSemaphorePermit)>,
) {
    let mut batch = Vec::with_capacity(MAX_RECORD_BATCH);
    while finished.recv_many(&mut batch, MAX_RECORD_BATCH).await > 0 {
        // Dropped at the end of this round, freeing the slots.
        let (outcomes, _slots): (Vec<DeliveryOutcome>, Vec<OwnedSemaphorePermit>) = batch.drain(..).unzip();
        let ids: Vec<String> = outcomes.iter().map(|o| o.event_id.clone()).collect();
        match state.store().finish_deliveries(&worker, outcomes).await {
            Ok(kept) => {
                for (event_id, kept) in ids.iter().zip(kept) {
                    if !kept {
                        tracing::warn!(%event_id, "lost the lease on a delivery; another worker owns it");
                    }
                }
            }
            // The leases lapse and the deliveries go out again: at least once, never lost.
            Err(e) => {
                tracing::warn!(error = %e, count = ids.len(), "recording delivery attempts failed; they will be retried")
            }
        }
    }
}

async fn deliver(state: &AppState, http: &reqwest::Client, d: ClaimedDelivery) -> DeliveryOutcome {
    let started = state.clock().now();
    // Receivers check the timestamp against their own clocks: sign with real time, even
    // when the sandbox clock runs ahead.
    let (status, error) = match send(http, &d, state.wall_now().unix_secs()).await {
        Ok(status) => (Some(status), None),
        Err(e) => (None, Some(e)),
    };
    let finished = state.clock().now();
    metrics::counter!("callback_attempts_total", "outcome" => match status {
        Some(s) if (200..300).contains(&s) => "delivered",
        Some(_) => "http_error",
        None => "network_error",
    })
    .increment(1);
    DeliveryOutcome {
        event_id: d.event_id,
        attempts: d.attempts,
        started_at: started,
        finished_at: finished,
        http_status: status,
        error,
    }
}

async fn send(http: &reqwest::Client, d: &ClaimedDelivery, timestamp: i64) -> Result<u16, String> {
    // Nothing can be signed for a party that revoked every key: a failed attempt, retried
    // on the schedule (the party may issue a new key) and in the end dead.
    let (key_id, secret) =
        d.key.as_ref().ok_or_else(|| format!("{} {} has no active key", d.party_kind, d.party_id))?;
    let nonce = paykit_store::ids::random_base32(24);
    let signature = sign(secret.as_bytes(), &canonical_callback(timestamp, &nonce, d.payload.as_bytes()));
    let response = http
        .post(&d.notify_url)
        .header("content-type", "application/json")
        .header("paykit-key-id", key_id)
        .header("paykit-timestamp", timestamp.to_string())
        .header("paykit-nonce", nonce)
        .header("paykit-signature", signature)
        .header("paykit-event-id", &d.event_id)
        .body(d.payload.clone())
        .send()
        .await
        .map_err(|e| if e.is_timeout() { "timed out".to_owned() } else { format!("{e}") })?;
    Ok(response.status().as_u16())
}
