//! The password-hashing pool: every argon2id hash and verification (Login, AcceptInvitation,
//! CreateUser) runs here, at most `workers` at a time, with at most `queue` more waiting.
//! Beyond that a call is refused at once (RESOURCE_EXHAUSTED, reason `SERVER_BUSY`, with a
//! `RetryInfo`), so a burst of unauthenticated calls costs at most `workers` × argon2's memory
//! (≈19 MiB each) and `workers` cores, however many calls arrive.
//!
//! The admission permit travels with the job: a caller that hangs up does not free its slot
//! before the hash it started has finished.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::{Error, HASHING_BUSY, Own};

/// The `reason` label of the throttled-login counter for a full pool.
pub const POOL_FULL: &str = "pool_full";

/// The default number of hashes that may wait for a worker.
pub const DEFAULT_QUEUE: usize = crate::config::login::DEFAULT_HASH_QUEUE;

/// What a caller refused by a full pool is told to wait before retrying.
pub const BUSY_RETRY: Duration = Duration::from_secs(1);

/// A job of the pool: it carries its admission permit, released when it has run.
type Job = Box<dyn FnOnce() + Send>;

/// A bounded pool for password hashing (see the module documentation): `workers` threads of
/// its own (so argon2's memory is held by at most that many threads' allocators, not by every
/// thread of the runtime's blocking pool), fed through a channel whose length the admission
/// permits bound.
#[derive(Debug)]
pub struct HashPool {
    /// One permit per hash running or waiting: `workers + queue`.
    admitted: Arc<Semaphore>,
    jobs: std::sync::mpsc::Sender<Job>,
    size: usize,
}

impl HashPool {
    /// The pool `[login]` asks for (`hash_workers`, `hash_queue`).
    pub fn from_settings(settings: &crate::config::LoginSettings) -> Self {
        Self::new(settings.hash_workers, settings.hash_queue)
    }

    /// A pool of `workers` threads (0: one per available core) and a queue of `queue` waiting
    /// hashes. The threads end when the pool is dropped.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = match workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        };
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..workers {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    loop {
                        let next = rx
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        let Ok(job) = next else { return };
                        job();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hashing thread");
            }
        }
        Self {
            admitted: Arc::new(Semaphore::new(workers.saturating_add(queue))),
            jobs,
            size: workers,
        }
    }

    /// How many hashes may run at once.
    pub fn workers(&self) -> usize {
        self.size
    }

    /// Runs `work` on a worker of the pool; RESOURCE_EXHAUSTED at once when `workers + queue`
    /// hashes are already running or waiting.
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let answer = work();
            // The slot is free before the caller hears back: a call made right after this
            // answer finds it free (the other order let a client's next login meet a full pool).
            drop(admitted);
            let _ = tx.send(answer);
        });
        self.jobs
            .send(job)
            .map_err(|_| Error::Internal("the hashing pool has no thread".into()))?;
        rx.await
            .map_err(|_| Error::Internal("a hashing job ended without an answer".into()))
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
