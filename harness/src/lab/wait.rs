//! Polling a condition until it holds or the caller's deadline passes, backing off
//! between polls; on timeout the last state seen goes back to the caller, who words
//! the error in its own type. `cluster::wait::until` is the cluster layer's form.

use std::future::Future;
use std::time::Duration;

/// What one poll saw: the condition holds (with its value), or not yet (with the
/// state to report if the deadline passes).
pub enum Seen<T, S = String> {
    Ready(T),
    NotYet(S),
}

/// How often to poll: `first`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub(crate) first: Duration,
    pub(crate) max: Duration,
}

impl Pace {
    /// Every 10 ms at first, backing off to every 250 ms (a real API server is not
    /// hammered).
    pub const QUICK: Pace = Pace {
        first: Duration::from_millis(10),
        max: Duration::from_millis(250),
    };

    /// The same pause every time.
    pub const fn every(pause: Duration) -> Pace {
        Pace {
            first: pause,
            max: pause,
        }
    }
}

/// Polls `poll` until it sees `Ready` (`Ok(Ok(value))`) or `timeout` has passed
/// since the call (`Ok(Err(last state))`): at least one poll, and one more at the
/// deadline. An error of `poll` ends the wait (`Err`).
pub async fn poll_until<T, S, E, F, Fut>(
    timeout: Duration,
    pace: Pace,
    mut poll: F,
) -> Result<Result<T, S>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Seen<T, S>, E>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = pace.first;
    loop {
        let state = match poll().await? {
            Seen::Ready(value) => return Ok(Ok(value)),
            Seen::NotYet(state) => state,
        };
        if tokio::time::Instant::now() >= deadline {
            return Ok(Err(state));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(pace.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_state_seen_comes_back_at_the_deadline() {
        let mut polls = 0;
        let got = poll_until::<(), _, (), _, _>(
            Duration::from_millis(50),
            Pace::every(Duration::from_millis(10)),
            || {
                polls += 1;
                let seen = polls;
                async move { Ok(Seen::NotYet(seen)) }
            },
        )
        .await;
        assert_eq!(got, Ok(Err(polls)));
        assert!(polls >= 2, "{polls}");
        let err = poll_until::<(), u32, &str, _, _>(Duration::ZERO, Pace::QUICK, || async {
            Err("broken")
        })
        .await;
        assert_eq!(err, Err("broken"));
    }
}
