//! Applying the client timeouts (`crate::client_timeouts`) to the connection's reads and
//! writes: a timer is armed only for an operation that has to wait.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use super::coarse_timer::CoarseTimer;

/// The operation did not finish in the time allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out")]
pub(super) struct TimedOut;

/// Runs `operation`, giving up after `limit` if it has to wait; a timer is armed only when
/// it does (most reads and writes complete at once).
pub(super) async fn within<F: Future>(
    timer: &CoarseTimer,
    limit: Option<Duration>,
    operation: F,
) -> Result<F::Output, TimedOut> {
    let mut operation = pin!(operation);
    if let Poll::Ready(output) =
        std::future::poll_fn(|cx| Poll::Ready(operation.as_mut().poll(cx))).await
    {
        return Ok(output);
    }
    let Some(limit) = limit else {
        return Ok(operation.await);
    };
    tokio::select! {
        output = operation => Ok(output),
        () = timer.sleep(limit) => Err(TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn within_gives_up_only_on_what_waits() {
        let timer = CoarseTimer::start();
        let ready = within(&timer, Some(Duration::ZERO), async { 7 }).await;
        assert_eq!(ready, Ok(7));
        let stuck = within(
            &timer,
            Some(Duration::from_millis(50)),
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(stuck, Err(TimedOut));
    }
}
