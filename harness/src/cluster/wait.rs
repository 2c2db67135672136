//! One way to wait for a condition: poll it until it holds or the caller's
//! deadline passes, backing off between polls, and on timeout say what was waited
//! for and the last state seen.

use std::future::Future;
use std::time::Duration;

use super::ClusterError;

/// What one poll saw: the condition holds (with its value), or not yet (with the
/// state to report if the deadline passes).
pub enum Seen<T> {
    Ready(T),
    NotYet(String),
}

/// How often to poll: `first`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub first: Duration,
    pub max: Duration,
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

/// Polls `poll` until it sees `Ready` or `timeout` has passed since the call (at
/// least one poll, and one more at the deadline); an error of `poll` ends the wait.
/// On timeout: `ClusterError::Timeout` naming `what` and the last state seen.
pub async fn until<T, F, Fut>(
    what: impl Into<String>,
    timeout: Duration,
    pace: Pace,
    mut poll: F,
) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Seen<T>, ClusterError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = pace.first;
    loop {
        let state = match poll().await? {
            Seen::Ready(value) => return Ok(value),
            Seen::NotYet(state) => state,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(ClusterError::Timeout {
                what: what.into(),
                seconds: timeout.as_secs(),
                state,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(pace.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_returns_its_value_and_a_timeout_names_the_last_state() {
        let mut n = 0;
        let got = until("n to be 3", Duration::from_secs(5), Pace::QUICK, || {
            n += 1;
            let seen = if n == 3 {
                Seen::Ready(n)
            } else {
                Seen::NotYet(format!("n={n}"))
            };
            async move { Ok(seen) }
        })
        .await
        .unwrap();
        assert_eq!(got, 3);

        let mut polls = 0;
        let err = until::<(), _, _>(
            "the impossible",
            Duration::from_millis(50),
            Pace::every(Duration::from_millis(10)),
            || {
                polls += 1;
                let state = format!("poll {polls}");
                async move { Ok(Seen::NotYet(state)) }
            },
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("the impossible"), "{err}");
        assert!(err.contains(&format!("last state: poll {polls}")), "{err}");
        assert!(polls >= 2, "{polls}");
    }
}
