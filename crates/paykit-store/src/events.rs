//! The outbox: events are written in the same transaction as the change they report, then
//! delivered by any gateway process that claims them (a lease, taken with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL), on the WeChat Pay retry schedule.

use std::collections::HashMap;

use paykit_core::time::Timestamp;
use sqlx::Row;

use crate::rows_insert::RowsInsert;
use crate::{Engine, Result, Store, StoreError, Tx, for_engine, ids, placeholders, value_rows};

/// Seconds to wait after failed attempt N (1-based) before attempt N+1; after the last,
/// the delivery is dead (about 24 h in all).
pub const RETRY_SCHEDULE_SECS: [i64; 15] =
    [15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600];

/// The delay before the attempt after `attempts` failed ones, or `None` when it is dead.
pub fn next_delay_secs(attempts: i64) -> Option<i64> {
    usize::try_from(attempts - 1).ok().and_then(|i| RETRY_SCHEDULE_SECS.get(i).copied())
}

#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub event_id: String,
    pub notify_url: String,
    pub payload: String,
    pub party_kind: String,
    pub party_id: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// The party's newest active key at claim time (key id, secret), which signs the
    /// callback. None when the party has revoked every key: the attempt fails and follows
    /// the retry schedule like any other failure.
    pub key: Option<(String, String)>,
}

/// What one delivery attempt came to, for [`Store::finish_deliveries`].
#[derive(Debug, Clone)]
pub struct DeliveryOutcome {
    pub event_id: String,
    /// Attempts made before this one (as claimed).
    pub attempts: i64,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub attempt_no: i64,
    pub started_at: Timestamp,
    pub http_status: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Notification {
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: Timestamp,
    /// None when the party has no notify_url.
    pub delivery_status: Option<String>,
    pub next_attempt_at: Option<Timestamp>,
    pub attempts: Vec<Attempt>,
}

/// An event to queue: who it is for, what happened, and where to deliver it.
pub(crate) struct EventToSend<'a> {
    pub party_kind: &'a str,
    pub party_id: &'a str,
    pub event_type: &'a str,
    pub data: serde_json::Value,
    pub notify_url: Option<&'a str>,
    pub now: Timestamp,
}

impl Tx {
    /// Records an event and, when there is somewhere to send it, its pending delivery.
    pub async fn enqueue_event(
        &mut self,
        party_kind: &str,
        party_id: &str,
        event_type: &str,
        data: serde_json::Value,
        notify_url: Option<&str>,
        now: Timestamp,
    ) -> Result<String> {
        let event = EventToSend { party_kind, party_id, event_type, data, notify_url, now };
        let mut ids = self.enqueue_events(&[event]).await?;
        ids.pop().ok_or_else(|| StoreError::Corrupt("an enqueued event has no id".into()))
    }

    /// Queues events (and the deliveries of those with a notify_url) in one statement on
    /// PostgreSQL, one call of two statements on SQLite, however many there are; returns
    /// their ids in order.
    pub(crate) async fn enqueue_events(&mut self, events: &[EventToSend<'_>]) -> Result<Vec<String>> {
        let (ids, rows) = event_rows(events);
        self.insert_rows(rows.into()).await?;
        Ok(ids)
    }

    /// The notify_url for an order's events: the order's own, else its merchant's.
    pub async fn merchant_notify_url(
        &mut self,
        merchant_id: &str,
        order_notify_url: Option<&str>,
    ) -> Result<Option<String>> {
        if let Some(url) = order_notify_url {
            return Ok(Some(url.to_owned()));
        }
        Ok(self.fixed_merchant(merchant_id).await?.notify_url)
    }
}

impl Store {
    /// Leases up to `limit` due deliveries to `worker` until `now + lease_secs`. No two
    /// workers hold the same delivery at once; a lease left by a killed worker lapses.
    /// `now` is the business clock (what is due); `wall_now` times the lease, so moving a
    /// sandbox clock never expires a lease that is still in use.
    pub async fn claim_deliveries(
        &self,
        worker: &str,
        now: Timestamp,
        wall_now: Timestamp,
        lease_secs: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedDelivery>> {
        let engine = self.engine();
        let lock = if engine == Engine::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE deliveries SET lease_until_us = $1, leased_by = $2 WHERE event_id IN ( \
               SELECT event_id FROM deliveries WHERE status = 'PENDING' AND next_attempt_at_us <= $3 \
                 AND (lease_until_us IS NULL OR lease_until_us < $5) ORDER BY next_attempt_at_us LIMIT $4 {lock}) \
             RETURNING event_id, notify_url, attempts"
        );
        let mut tx = self.begin().await?;
        let leased = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(wall_now.plus_secs(lease_secs).unix_micros())
            .bind(worker)
            .bind(now.unix_micros())
            .bind(limit)
            .bind(wall_now.unix_micros())
            .fetch_all(tx.conn())
            .await?;
        if leased.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        // The events and their parties' keys for the whole batch: two reads, not two per
        // delivery.
        let ids: Vec<String> = leased.iter().map(|r| r.try_get(0)).collect::<std::result::Result<_, _>>()?;
        let sql = format!(
            "SELECT id, payload, party_kind, party_id FROM events WHERE id IN ({})",
            placeholders(1, ids.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(for_engine(engine, sql)));
        for id in &ids {
            query = query.bind(id);
        }
        let mut events: HashMap<String, (String, String, String)> = HashMap::with_capacity(ids.len());
        for e in query.fetch_all(tx.conn()).await? {
            events.insert(e.try_get(0)?, (e.try_get(1)?, e.try_get(2)?, e.try_get(3)?));
        }
        let mut parties: Vec<&str> = events.values().map(|(_, _, party_id)| party_id.as_str()).collect();
        parties.sort_unstable();
        parties.dedup();
        let sql = format!(
            "SELECT party_kind, party_id, key_id, secret FROM api_keys WHERE status = 'ACTIVE' AND party_id IN ({}) \
             ORDER BY created_at_us, key_id",
            placeholders(1, parties.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(for_engine(engine, sql)));
        for party in &parties {
            query = query.bind(*party);
        }
        // Ordered oldest first, so the newest key of each party is the one left standing.
        let mut newest: HashMap<(String, String), (String, String)> = HashMap::new();
        for k in query.fetch_all(tx.conn()).await? {
            newest.insert((k.try_get(0)?, k.try_get(1)?), (k.try_get(2)?, k.try_get(3)?));
        }
        tx.commit().await?;

        let mut out = Vec::with_capacity(leased.len());
        for r in leased {
            let event_id: String = r.try_get(0)?;
            let (payload, party_kind, party_id) = events
                .remove(&event_id)
                .ok_or_else(|| StoreError::Corrupt(format!("delivery {event_id} has no event")))?;
            let key = newest.get(&(party_kind.clone(), party_id.clone())).cloned();
            out.push(ClaimedDelivery {
                notify_url: r.try_get(1)?,
                attempts: r.try_get(2)?,
                payload,
                party_kind,
                party_id,
                event_id,
                key,
            });
        }
        Ok(out)
    }

    /// Records attempts and moves each delivery on: delivered on a 2xx, otherwise
    /// scheduled again or dead. The whole batch is two statements in one transaction. For
    /// each outcome, false if this worker no longer held the lease (another took over), in
    /// which case nothing of it is changed.
    pub async fn finish_deliveries(&self, worker: &str, outcomes: Vec<DeliveryOutcome>) -> Result<Vec<bool>> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let worker = worker.to_owned();
        // Through `Store::write` (SQLite's group commit): a busy dispatcher records thousands of attempts a second.
        self.write(move |tx| Box::pin(async move { tx.finish_deliveries(&worker, &outcomes).await })).await
    }

    /// Sends an event again, now, whatever its delivery's state: delivered, dead, waiting
    /// for a retry, or in flight — a worker's lease is taken from it, so its outcome is
    /// not recorded and the event goes out once more after it (a merchant who asks for a
    /// resend the moment the first copy arrives gets a second copy, not a 404). Returns
    /// false when the party has no such event with a delivery.
    pub async fn resend_event(&self, party_id: &str, event_id: &str, now: Timestamp) -> Result<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE deliveries SET status = 'PENDING', next_attempt_at_us = $1, lease_until_us = NULL, leased_by = NULL \
             WHERE event_id = $2 AND event_id IN (SELECT id FROM events WHERE party_id = $3)",
        )
        .bind(now.unix_micros())
        .bind(event_id)
        .bind(party_id)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// A party's events, newest first, each with its delivery attempts.
    pub async fn notifications(&self, party_id: &str, status: Option<&str>, limit: i64) -> Result<Vec<Notification>> {
        let rows = sqlx::query(
            "SELECT e.id, e.event_type, e.payload, e.created_at_us, d.status, d.next_attempt_at_us FROM events e \
             LEFT JOIN deliveries d ON d.event_id = e.id WHERE e.party_id = $1 AND ($2 IS NULL OR d.status = $2) \
             ORDER BY e.created_at_us DESC, e.id DESC LIMIT $3",
        )
        .bind(party_id)
        .bind(status)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let event_id: String = r.try_get(0)?;
            let attempts = sqlx::query(
                "SELECT attempt_no, started_at_us, http_status, error FROM delivery_attempts WHERE event_id = $1 ORDER BY attempt_no",
            )
            .bind(&event_id)
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(|a| {
                Ok(Attempt {
                    attempt_no: a.try_get(0)?,
                    started_at: Timestamp::from_unix_micros(a.try_get(1)?),
                    http_status: a.try_get(2)?,
                    error: a.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
            out.push(Notification {
                event_id,
                event_type: r.try_get(1)?,
                payload: r.try_get(2)?,
                created_at: Timestamp::from_unix_micros(r.try_get(3)?),
                delivery_status: r.try_get(4)?,
                next_attempt_at: r.try_get::<Option<i64>, _>(5)?.map(Timestamp::from_unix_micros),
                attempts,
            });
        }
        Ok(out)
    }

    /// The sandbox clock's offset, in microseconds.
    pub async fn sandbox_clock_offset_us(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT offset_us FROM sandbox_clock WHERE id = 1").fetch_one(self.reader()).await?)
    }

    /// Moves the sandbox clock forward; returns the new offset.
    pub async fn advance_sandbox_clock(&self, secs: i64) -> Result<i64> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE sandbox_clock SET offset_us = offset_us + $1 WHERE id = 1")
            .bind(secs.saturating_mul(1_000_000))
            .execute(tx.conn())
            .await?;
        let offset: i64 =
            sqlx::query_scalar("SELECT offset_us FROM sandbox_clock WHERE id = 1").fetch_one(tx.conn()).await?;
        tx.commit().await?;
        Ok(offset)
    }
}

impl Tx {
    async fn finish_deliveries(&mut self, worker: &str, outcomes: &[DeliveryOutcome]) -> Result<Vec<bool>> {
        // Only the worker still holding the lease, on the attempt it claimed, moves a
        // delivery; the rows that moved come back, and only they get an attempt recorded.
        // VALUES columns are column1… on both engines.
        let sql = format!(
            "UPDATE deliveries SET status = v.column2, attempts = v.column3, next_attempt_at_us = v.column4, \
               lease_until_us = NULL, leased_by = NULL, last_error = v.column5, delivered_at_us = v.column6 \
             FROM (VALUES {}) AS v \
             WHERE deliveries.event_id = v.column1 AND deliveries.leased_by = ${} AND deliveries.attempts = v.column7 \
             RETURNING deliveries.event_id",
            value_rows(1, 7, outcomes.len()),
            7 * outcomes.len() + 1
        );
        let mut update = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(for_engine(self.engine(), sql)));
        for o in outcomes {
            let delivered = o.http_status.is_some_and(|s| (200..300).contains(&s));
            let (status, next) = if delivered {
                ("DELIVERED", o.finished_at)
            } else {
                match next_delay_secs(o.attempts + 1) {
                    Some(delay) => ("PENDING", o.finished_at.plus_secs(delay)),
                    None => ("DEAD", o.finished_at),
                }
            };
            let last_error =
                o.error.clone().or_else(|| o.http_status.filter(|_| !delivered).map(|s| format!("HTTP {s}")));
            update = update
                .bind(&o.event_id)
                .bind(status)
                .bind(o.attempts + 1)
                .bind(next.unix_micros())
                .bind(last_error)
                .bind(delivered.then_some(o.finished_at.unix_micros()))
                .bind(o.attempts);
        }
        update = update.bind(worker);
        let moved: std::collections::HashSet<String> = update.fetch_all(self.conn()).await?.into_iter().collect();
        let kept: Vec<&DeliveryOutcome> = outcomes.iter().filter(|o| moved.contains(&o.event_id)).collect();
        if !kept.is_empty() {
            let sql = format!(
                "INSERT INTO delivery_attempts (id, event_id, attempt_no, worker, started_at_us, finished_at_us, \
                   http_status, error) VALUES {} ON CONFLICT (event_id, attempt_no) DO NOTHING",
                value_rows(1, 8, kept.len())
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(for_engine(self.engine(), sql)));
            for o in &kept {
                insert = insert
                    .bind(ids::new_id("att"))
                    .bind(&o.event_id)
                    .bind(o.attempts + 1)
                    .bind(worker)
                    .bind(o.started_at.unix_micros())
                    .bind(o.finished_at.unix_micros())
                    .bind(o.http_status.map(i64::from))
                    .bind(o.error.as_deref());
            }
            insert.execute(self.conn()).await?;
        }
        Ok(outcomes.iter().map(|o| moved.contains(&o.event_id)).collect())
    }
}

/// New ids for `events`, in order, and their rows: the events, then the deliveries of those
/// with a notify_url.
pub(crate) fn event_rows<'a>(events: &[EventToSend<'a>]) -> (Vec<String>, [RowsInsert<'a>; 2]) {
    let ids: Vec<String> = events.iter().map(|_| ids::new_id("evt")).collect();
    let mut rows =
        RowsInsert::new("INSERT INTO events (id, party_kind, party_id, event_type, payload, created_at_us)", "", 6);
    let mut deliveries =
        RowsInsert::new("INSERT INTO deliveries (event_id, notify_url, status, attempts, next_attempt_at_us)", "", 5)
            .when_set(2);
    for (id, event) in ids.iter().zip(events) {
        let payload = serde_json::json!({
            "event_id": id, "event_type": event.event_type, "created_at": event.now.to_rfc3339(), "data": event.data,
        })
        .to_string();
        rows.row([
            id.clone().into(),
            event.party_kind.into(),
            event.party_id.into(),
            event.event_type.into(),
            payload.into(),
            event.now.unix_micros().into(),
        ]);
        deliveries.row([
            id.clone().into(),
            event.notify_url.into(),
            "PENDING".into(),
            0_i64.into(),
            event.now.unix_micros().into(),
        ]);
    }
    (ids, [rows, deliveries])
}
