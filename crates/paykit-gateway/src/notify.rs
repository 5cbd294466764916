//! Callback delivery: claims due deliveries from the outbox, POSTs each signed event to its
//! notify_url (HTTP or HTTPS), and records the attempt. Deliveries run concurrently with a
//! per-request timeout, so a slow or hanging receiver holds up only its own deliveries.

use std::sync::Arc;
use std::time::Duration;

use paykit_core::signing::{canonical_callback, sign};
use paykit_store::events::ClaimedDelivery;
use tokio::sync::Semaphore;

use crate::app::AppState;

/// Deliveries in flight at once, per gateway process.
const MAX_IN_FLIGHT: usize = 256;

/// Builds the HTTP client callbacks go out on: rustls with the ring provider, and the
/// platform's roots plus any extra CA the operator configured (tests use their own).
pub fn client(extra_ca_pem: Option<&[u8]>, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    crate::server::install_crypto_provider();
    let mut builder = reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).pool_max_idle_per_host(8);
    if let Some(pem) = extra_ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.build()?)
}

/// Runs forever: claim, deliver, record.
pub async fn run_dispatcher(state: AppState, http: reqwest::Client) {
    let worker = format!("gw-{}-{}", std::process::id(), paykit_store::ids::random_base32(6));
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let lease_secs = state.config().delivery_lease_secs;
    loop {
        let free = slots.available_permits() as i64;
        let claimed = if free == 0 {
            Vec::new()
        } else {
            match state
                .store()
                .claim_deliveries(&worker, state.clock().now(), state.wall_now(), lease_secs, free.min(100))
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming deliveries failed; will retry");
                    Vec::new()
                }
            }
        };
        let idle = claimed.is_empty();
        for delivery in claimed {
            let permit = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
            let (state, http, worker) = (state.clone(), http.clone(), worker.clone());
            tokio::spawn(async move {
                deliver(&state, &http, &worker, &delivery).await;
                drop(permit);
            });
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn deliver(state: &AppState, http: &reqwest::Client, worker: &str, d: &ClaimedDelivery) {
    let started = state.clock().now();
    // Receivers check the timestamp against their own clocks: sign with real time, even
    // when the sandbox clock runs ahead.
    let (status, error) = match send(state, http, d, state.wall_now().unix_secs()).await {
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
    match state.store().finish_delivery(d, worker, started, finished, status, error.as_deref()).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(event_id = %d.event_id, "lost the lease on a delivery; another worker owns it"),
        Err(e) => {
            tracing::warn!(event_id = %d.event_id, error = %e, "recording a delivery attempt failed; it will be retried")
        }
    }
}

async fn send(state: &AppState, http: &reqwest::Client, d: &ClaimedDelivery, timestamp: i64) -> Result<u16, String> {
    let (key_id, secret) =
        state.store().newest_active_secret(&d.party_kind, &d.party_id).await.map_err(|e| e.to_string())?;
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
