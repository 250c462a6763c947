//! Bounded waiting: every test step that could hang goes through here, so a
//! broken gateway makes a test fail with a message instead of stalling CI.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// Awaits `future`, panicking with `what` if it takes longer than `limit`.
pub async fn within<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Runs `attempt` every 100 ms until it returns `Ok`, for at most `limit`;
/// panics with `what` and the last error when time runs out.
pub async fn eventually<T, E, F, Fut>(limit: Duration, what: &str, mut attempt: F) -> T
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let last = match tokio::time::timeout(remaining, attempt()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(e)) => format!("{e:?}"),
            Err(_) => "the last attempt was still running".to_owned(),
        };
        if Instant::now() >= deadline {
            panic!("{what}: not true within {limit:?}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sleeps on the tokio timer, for test files that name no tokio item themselves. A test that
/// waits *for* something should poll with [`eventually`] instead; this is for waits that are
/// the point of the test (idle time, a TTL running out) or that show nothing happens.
pub async fn tokio_sleep(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// Runs one test's body on a fresh multi-threaded tokio runtime, failing it
/// if it takes longer than `limit`. Everything the body owns (gateway,
/// upstreams, redis-server) is dropped, and so stopped, when it ends.
///
/// Tests call this from a plain `#[test]`, so the crate under test needs no
/// tokio dependency of its own.
pub fn run<F: Future>(limit: Duration, test: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Enough for client tasks and upstream servers to run beside a test
        // that blocks a worker while it starts a process.
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("build a tokio runtime");
    runtime.block_on(within(limit, "the whole test", test))
}
