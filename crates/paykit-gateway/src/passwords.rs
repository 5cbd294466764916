//! Argon2id hashing of login and pay passwords, with a bound on how much of the machine it
//! may take: at most one hash per two cores at a time, and a short queue past which callers
//! get `RATE_LIMITED` at once, so a flood of password guesses cannot starve other requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use paykit_core::ErrorCode;
use tokio::sync::Semaphore;

use crate::error::ApiError;

pub struct PasswordHashing {
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queued: usize,
}

impl PasswordHashing {
    pub fn new(parallel: usize, max_queued: usize) -> PasswordHashing {
        PasswordHashing { permits: Arc::new(Semaphore::new(parallel.max(1))), queued: AtomicUsize::new(0), max_queued }
    }

    /// Argon2id (19 MiB, t=2, p=1: OWASP's minimum) as a PHC string.
    pub async fn hash(&self, secret: &str) -> Result<String, ApiError> {
        let secret = secret.to_owned();
        self.run(move || {
            PasswordHasher::<PasswordHash>::hash_password(&Argon2::default(), secret.as_bytes()).map(|h| h.to_string())
        })
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::new(ErrorCode::InternalError, "internal error")
        })
    }

    /// Checks `secret` against a stored PHC string, in constant time.
    pub async fn verify(&self, secret: &str, phc: &str) -> Result<bool, ApiError> {
        let (secret, phc) = (secret.to_owned(), phc.to_owned());
        self.run(move || PasswordVerifier::<str>::verify_password(&Argon2::default(), secret.as_bytes(), &phc).is_ok())
            .await
    }

    /// The same work as [`Self::verify`] against a hash nothing matches: a log-in for an
    /// unknown phone or username then takes as long as one with a wrong password, so the
    /// answer's timing does not tell which accounts exist. Always false.
    pub async fn verify_unknown(&self, secret: &str) -> Result<bool, ApiError> {
        static UNMATCHABLE: OnceLock<String> = OnceLock::new();
        let secret = secret.to_owned();
        self.run(move || {
            let phc = UNMATCHABLE.get_or_init(|| {
                let never = paykit_store::ids::random_base32(32);
                PasswordHasher::<PasswordHash>::hash_password(&Argon2::default(), never.as_bytes())
                    .map(|h| h.to_string())
                    .unwrap_or_default()
            });
            let _ = PasswordVerifier::<str>::verify_password(&Argon2::default(), secret.as_bytes(), phc);
            false
        })
        .await
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let queued = self.queued.fetch_add(1, Ordering::SeqCst);
        let _leave = scopeguard(|| {
            self.queued.fetch_sub(1, Ordering::SeqCst);
        });
        if queued >= self.max_queued {
            metrics::counter!("password_hash_rejected_total").increment(1);
            return Err(ApiError::new(ErrorCode::RateLimited, "too many password checks in progress; retry shortly"));
        }
        let permit = self.permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|_| ApiError::new(ErrorCode::InternalError, "internal error"))
    }
}

struct Guard<F: FnMut()>(F);

impl<F: FnMut()> Drop for Guard<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

fn scopeguard<F: FnMut()>(f: F) -> Guard<F> {
    Guard(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unknown_account_costs_a_hash_and_matches_nothing() {
        let hashing = PasswordHashing::new(1, 4);
        assert!(!hashing.verify_unknown("").await.unwrap());
        assert!(!hashing.verify_unknown("correct horse").await.unwrap());
        // It queues for the same hashing slots as a real check: with no room, it is refused
        // the same way, so a flood of unknown phones is throttled like wrong passwords.
        let full = PasswordHashing::new(1, 0);
        assert_eq!(full.verify_unknown("x").await.unwrap_err().code, ErrorCode::RateLimited);
        assert_eq!(full.verify("x", "$argon2id$").await.unwrap_err().code, ErrorCode::RateLimited);
    }
}
