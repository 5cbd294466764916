//! Replay protection for signed requests: each (party, nonce) is accepted once.

use paykit_core::signing::TIMESTAMP_TOLERANCE_SECS;
use paykit_core::time::Timestamp;

use crate::{Result, Store};

impl Store {
    /// Records a nonce. Returns false if the party already used it (a replay).
    pub async fn record_nonce(&self, party_id: &str, nonce: &str, now: Timestamp) -> Result<bool> {
        let (party_id, nonce) = (party_id.to_owned(), nonce.to_owned());
        self.write(move |tx| {
            Box::pin(async move {
                let inserted = sqlx::query(
                    "INSERT INTO request_nonces (party_id, nonce, seen_at_us) VALUES ($1, $2, $3) \
                     ON CONFLICT (party_id, nonce) DO NOTHING",
                )
                .bind(&party_id)
                .bind(&nonce)
                .bind(now.unix_micros())
                .execute(tx.conn())
                .await?
                .rows_affected();
                Ok(inserted == 1)
            })
        })
        .await
    }

    /// Forgets nonces old enough that their requests' timestamps are outside the window
    /// anyway (with a margin for clocks on either side). Returns how many were removed.
    pub async fn prune_nonces(&self, now: Timestamp) -> Result<u64> {
        let cutoff = now.plus_secs(-3 * TIMESTAMP_TOLERANCE_SECS);
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM request_nonces WHERE seen_at_us < $1")
            .bind(cutoff.unix_micros())
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}
