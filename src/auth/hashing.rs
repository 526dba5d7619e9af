//! Password hashing (bcrypt) on tokio's blocking pool, a bounded number at a time.
//!
//! A bcrypt takes tens of milliseconds of CPU by design, so it must not run on the reactor.
//! But the blocking pool is also where file I/O runs (storage reads and writes, htpasswd
//! reloads), and it grows to hundreds of threads: a flood of wrong passwords from many
//! addresses would fill it with bcrypts and starve that I/O. So verifications take a permit
//! from one process-wide semaphore sized to the cores (more could not run any faster), and
//! callers beyond it wait asynchronously, in order, without holding a thread.

use std::sync::{Arc, LazyLock};

use tokio::sync::Semaphore;

/// One permit per core, shared by every provider and server block of the process.
static VERIFICATIONS: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(bound())));

/// `bcrypt::verify` on the blocking pool, at most [`bound`] at once. `Err` only when the
/// task died.
pub async fn bcrypt_verify(
    password: String,
    hash: String,
) -> Result<Result<bool, bcrypt::BcryptError>, tokio::task::JoinError> {
    run(move || bcrypt::verify(password, &hash)).await
}

/// How many verifications may run at once: one per core.
fn bound() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs `work` on the blocking pool once one of the process's permits is free.
async fn run<T, F>(work: F) -> Result<T, tokio::task::JoinError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    run_with(VERIFICATIONS.clone(), work).await
}

/// Runs `work` on the blocking pool once a permit of `limit` is free.
async fn run_with<T, F>(limit: Arc<Semaphore>, work: F) -> Result<T, tokio::task::JoinError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // The semaphore is never closed, so acquiring cannot fail; if it ever did, running
    // unbounded is better than refusing every login.
    let permit = limit.acquire_owned().await.ok();
    // The permit moves into the blocking task: a caller that gives up (the client went
    // away) does not free a slot while its bcrypt still runs.
    tokio::task::spawn_blocking(move || {
        let out = work();
        drop(permit);
        out
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    use super::*;

    /// A flood of verifications (say, wrong passwords from many addresses) never occupies
    /// more blocking threads than the bound, so file I/O on the same pool keeps going.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_verifications_never_exceed_the_bound() {
        // Its own semaphore, sized like the process's, so that other tests' bcrypts neither
        // wait for this one nor take its permits.
        let bound = bound();
        let limit = Arc::new(Semaphore::new(bound));
        let running = Arc::new((Mutex::new(0usize), Condvar::new()));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..bound * 4)
            .map(|_| {
                let (running, most) = (running.clone(), most.clone());
                tokio::spawn(run_with(limit.clone(), move || {
                    let (count, changed) = &*running;
                    let mut n = count.lock().unwrap();
                    *n += 1;
                    most.fetch_max(*n, Ordering::SeqCst);
                    changed.notify_all();
                    // Stay busy until more than the bound run at once (which only an
                    // unbounded pool allows), or for a short while: the window in which an
                    // excess would show.
                    let (mut n, _) = changed
                        .wait_timeout_while(n, Duration::from_millis(100), |n| *n <= bound)
                        .unwrap();
                    *n -= 1;
                }))
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most <= bound, "{most} verifications at once, bound {bound}");
        assert!(most >= 1);
    }

    #[tokio::test]
    async fn a_verification_still_answers() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let ok = bcrypt_verify("right".into(), hash.clone()).await.unwrap();
        assert!(ok.unwrap());
        let wrong = bcrypt_verify("wrong".into(), hash).await.unwrap();
        assert!(!wrong.unwrap());
    }
}
