//! One way to wait for a condition on a cluster: poll it until it holds or the
//! caller's deadline passes, backing off between polls (`lab::wait::poll_until`), and
//! on timeout say what was waited for and the last state seen.

use std::future::Future;
use std::time::Duration;

use super::ClusterError;

pub use crate::lab::wait::{Pace, Seen};

/// Polls `poll` until it sees `Ready` or `timeout` has passed since the call (at
/// least one poll, and one more at the deadline); an error of `poll` ends the wait.
/// On timeout: `ClusterError::Timeout` naming `what` and the last state seen.
pub async fn until<T, F, Fut>(
    what: impl Into<String>,
    timeout: Duration,
    pace: Pace,
    poll: F,
) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Seen<T>, ClusterError>>,
{
    match crate::lab::wait::poll_until(timeout, pace, poll).await? {
        Ok(value) => Ok(value),
        Err(state) => Err(ClusterError::Timeout {
            what: what.into(),
            seconds: timeout.as_secs(),
            state,
        }),
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
