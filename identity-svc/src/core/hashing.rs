//! The password-hashing pool: every argon2id hash and verification (Login, AcceptInvitation,
//! CreateUser) runs here, at most `workers` at a time, with at most `queue` more waiting.
//! Beyond that a call is refused at once (RESOURCE_EXHAUSTED, reason `SERVER_BUSY`, with a
//! `RetryInfo`), so a burst of unauthenticated calls costs at most `workers` × argon2's memory
//! (≈19 MiB each) and `workers` cores, however many calls arrive.
//!
//! The permits travel with the blocking task: a caller that hangs up does not free its worker
//! before the hash it started has finished.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::{Error, HASHING_BUSY, Own};

/// The `reason` label of the throttled-login counter for a full pool.
pub const POOL_FULL: &str = "pool_full";

/// The default number of hashes that may wait for a worker.
pub const DEFAULT_QUEUE: usize = 32;

/// What a caller refused by a full pool is told to wait before retrying.
pub const BUSY_RETRY: Duration = Duration::from_secs(1);

/// A bounded pool for password hashing (see the module documentation).
#[derive(Debug)]
pub struct HashPool {
    /// One permit per hash running.
    workers: Arc<Semaphore>,
    /// One permit per hash running or waiting: `workers + queue`.
    admitted: Arc<Semaphore>,
    size: usize,
}

impl HashPool {
    /// A pool of `workers` threads' worth of hashing (0: one per available core) and a queue of
    /// `queue` waiting hashes.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = match workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        };
        Self {
            workers: Arc::new(Semaphore::new(workers)),
            admitted: Arc::new(Semaphore::new(workers.saturating_add(queue))),
            size: workers,
        }
    }

    /// How many hashes may run at once.
    pub fn workers(&self) -> usize {
        self.size
    }

    /// Runs `work` on a blocking thread once a worker is free; RESOURCE_EXHAUSTED at once when
    /// `workers + queue` hashes are already running or waiting.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let Ok(admitted) = Arc::clone(&self.admitted).try_acquire_owned() else {
            metrics::counter!(super::lockout::THROTTLED_TOTAL, "reason" => POOL_FULL).increment(1);
            return Err(Error::Own(Own::Throttled {
                reason: HASHING_BUSY,
                message: "the server is busy checking passwords; retry shortly".into(),
                retry_after: BUSY_RETRY,
            }));
        };
        let worker = Arc::clone(&self.workers)
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(format!("hash pool closed: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let _permits = (admitted, worker);
            work()
        })
        .await
        .map_err(|e| Error::Internal(format!("hash task: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_pool_refuses_with_retry_and_frees_its_slots_after() {
        let pool = Arc::new(HashPool::new(1, 1));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let running = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.run(move || gate.recv().is_ok()).await })
        };
        // The first hash holds the worker; the second waits in the queue.
        let queued = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.run(|| 2).await })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while pool.admitted.available_permits() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "never queued");
            tokio::task::yield_now().await;
        }
        match pool.run(|| 3).await {
            Err(Error::Own(Own::Throttled {
                reason,
                retry_after,
                ..
            })) => {
                assert_eq!(reason, HASHING_BUSY);
                assert_eq!(retry_after, BUSY_RETRY);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        release.send(()).unwrap();
        assert!(running.await.unwrap().unwrap());
        assert_eq!(queued.await.unwrap().unwrap(), 2);
        assert_eq!(pool.run(|| 4).await.unwrap(), 4);
    }
}
