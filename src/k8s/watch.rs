//! Watches that survive the API server: every watch of `petdns controller` and
//! `petdns serve --kube` goes through [`with_backoff`], which paces a failed watcher's retries
//! and relists at once after 410 Gone.

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, stream::BoxStream};
use kube::runtime::watcher::{self, Event};
use tracing::debug;

/// A watcher's stream, its retries paced by [`Pace`]: after a failure the watcher is polled
/// again (and so retries) after a [`WatchBackoff`] delay, except after 410 Gone, when it
/// relists at once. Used by every watch of `petdns controller` and `petdns serve --kube`.
///
/// kube's `StreamBackoff` (`.backoff(..)`) cannot do this: its `Backoff` never sees the error,
/// and it resets on any `Ok`, `Event::Init` included, which the watcher yields before it even
/// sends the list request.
pub fn with_backoff<K: Send + 'static>(
    watch: impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
) -> BoxStream<'static, watcher::Result<Event<K>>> {
    let start = (watch.boxed(), Pace::default(), None::<Duration>);
    futures::stream::unfold(start, |(mut watch, mut pace, wait)| async move {
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
        let item = watch.next().await?;
        let wait = pace.after(&item, Instant::now());
        Some((item, (watch, pace, wait)))
    })
    .boxed()
}

/// When a watcher may try again, decided after each item it yields.
#[derive(Default)]
struct Pace {
    backoff: WatchBackoff,
    /// When a 410 Gone last went without a delay.
    last_gone: Option<Instant>,
}

impl Pace {
    /// How long to wait before polling the watcher again after `item`, if at all.
    ///
    /// A 410 Gone (the API server no longer has the history after the watcher's
    /// resourceVersion, as after a restart or an etcd compaction) is no reason to wait: kube's
    /// watcher has already dropped that version and its next step is a fresh list, so it
    /// relists at once. After a long outage the backoff is at its 1 s maximum, and waiting it
    /// out again after the first successful contact would double the time to resync. A second
    /// 410 within [`WatchBackoff::MAX`] of one that went through waits like any error, so a
    /// server that answers nothing but 410 is not hammered.
    fn after<K>(&mut self, item: &watcher::Result<Event<K>>, now: Instant) -> Option<Duration> {
        match item {
            // Yielded before the list is requested: no sign yet that the API server answers.
            Ok(Event::Init) => None,
            Ok(_) => {
                self.backoff.reset();
                None
            }
            Err(e)
                if is_gone(e)
                    && self
                        .last_gone
                        .is_none_or(|t| now.duration_since(t) >= WatchBackoff::MAX) =>
            {
                debug!(error = %e, "resourceVersion expired; relisting at once");
                self.last_gone = Some(now);
                None
            }
            Err(_) => self.backoff.next(),
        }
    }
}

/// Whether the watcher failed with 410 Gone in a way that makes its next step a fresh list:
/// an `ERROR` event with code 410 on a watch (kube's watcher then restarts from scratch, as
/// the real API server reports a too-old resourceVersion), or a list answered 410 (an expired
/// `continue` token). An HTTP 410 to the watch request itself is not one: kube's watcher
/// then retries the watch from the same resourceVersion, so it waits like any error.
fn is_gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::InitialListFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

/// Retry delays of a failed watch: 100 ms doubling to at most 1 s, each shortened by up to a
/// half at random (so replicas do not retry in step), back to 100 ms once the watch gets
/// anything from the API server (see [`Pace`]).
///
/// kube's `default_backoff` (0.8 s doubling to 30 s, reset only after two quiet minutes) can
/// leave a watch idle for seconds to half a minute after the API server is back; the DNS
/// answers must catch up within about a second of recovery.
pub struct WatchBackoff {
    next: Duration,
    jitter: std::collections::hash_map::RandomState,
    tries: u64,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(1);

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff {
            next: Self::FIRST,
            jitter: Default::default(),
            tries: 0,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        use std::hash::BuildHasher;
        let delay = self.next;
        self.next = (delay * 2).min(Self::MAX);
        self.tries += 1;
        // A random fraction in [0.5, 1] from the per-instance random hasher keys.
        let r = self.jitter.hash_one(self.tries) as f64 / u64::MAX as f64;
        Some(delay.mul_f64(0.5 + r / 2.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;
    use kube::core::Status;

    type Item = watcher::Result<Event<()>>;

    fn gone() -> Item {
        let status = Status::failure("too old resource version: 5 (9)", "Expired").with_code(410);
        Err(watcher::Error::WatchError(status.boxed()))
    }

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            Status::failure("injected", "Whatever")
                .with_code(code)
                .boxed(),
        )
    }

    fn in_first_range(d: Option<Duration>) -> bool {
        d.is_some_and(|d| (WatchBackoff::FIRST / 2..=WatchBackoff::FIRST).contains(&d))
    }

    #[test]
    fn errors_back_off_from_100_ms_to_1_s_with_jitter() {
        let mut pace = Pace::default();
        let now = Instant::now();
        let err = || -> Item { Err(watcher::Error::WatchStartFailed(api_error(503))) };
        let delays: Vec<Duration> = (0..6)
            .map(|_| pace.after(&err(), now).expect("a delay"))
            .collect();
        for (d, max) in delays.iter().zip([100, 200, 400, 800, 1000, 1000]) {
            let max = Duration::from_millis(max);
            assert!(max / 2 <= *d && *d <= max, "{delays:?}");
        }
    }

    #[test]
    fn gone_relists_at_once_but_not_twice_within_a_second() {
        let mut pace = Pace::default();
        let now = Instant::now();
        for _ in 0..5 {
            let failed: Item = Err(watcher::Error::WatchFailed(api_error(500)));
            pace.after(&failed, now);
        }
        assert_eq!(
            pace.after(&gone(), now),
            None,
            "the first 410 waits for nothing"
        );
        let again = pace.after(&gone(), now + Duration::from_millis(300));
        assert!(again.is_some(), "a second 410 within a second waits");
        let later = now + WatchBackoff::MAX + Duration::from_millis(1);
        assert_eq!(
            pace.after(&gone(), later),
            None,
            "a 410 a second later does not"
        );
        // An expired continue token fails the list with 410: relisted at once too.
        let list_gone: Item = Err(watcher::Error::InitialListFailed(api_error(410)));
        assert_eq!(pace.after(&list_gone, later + WatchBackoff::MAX), None);
    }

    #[test]
    fn http_410_to_the_watch_request_and_other_errors_wait() {
        // kube's watcher retries such a watch from the same resourceVersion, not a list.
        let mut pace = Pace::default();
        let now = Instant::now();
        let start_gone: Item = Err(watcher::Error::WatchStartFailed(api_error(410)));
        assert!(in_first_range(pace.after(&start_gone, now)));
        let mut pace = Pace::default();
        let status = Status::failure("internal", "InternalError").with_code(500);
        let other: Item = Err(watcher::Error::WatchError(status.boxed()));
        assert!(in_first_range(pace.after(&other, now)));
    }

    #[test]
    fn init_does_not_reset_the_backoff_and_data_does() {
        let mut pace = Pace::default();
        let now = Instant::now();
        let err = || -> Item { Err(watcher::Error::InitialListFailed(api_error(503))) };
        for _ in 0..5 {
            pace.after(&err(), now);
        }
        // After a failed list the watcher starts over with Init before listing again.
        assert_eq!(pace.after(&Ok(Event::<()>::Init), now), None);
        let d = pace.after(&err(), now).expect("a delay");
        assert!(d >= WatchBackoff::MAX / 2, "Init reset the backoff: {d:?}");
        for ok in [
            Event::InitApply(()),
            Event::InitDone,
            Event::Apply(()),
            Event::Delete(()),
        ] {
            pace.after(&err(), now);
            assert_eq!(pace.after(&Ok(ok), now), None);
            assert!(in_first_range(pace.after(&err(), now)));
        }
    }

    #[tokio::test]
    async fn the_stream_waits_after_an_error_but_not_after_a_410() {
        let items: Vec<Item> = vec![
            Ok(Event::InitDone),
            gone(),
            Ok(Event::Init),
            Err(watcher::Error::WatchStartFailed(api_error(503))),
            Ok(Event::Init),
        ];
        let mut s = with_backoff(futures::stream::iter(items));
        assert!(matches!(s.next().await, Some(Ok(Event::InitDone))));
        assert!(matches!(s.next().await, Some(Err(_))));
        // No wait after the 410: the next item is there at the first poll.
        let next = s.next().now_or_never().expect("no wait after 410 Gone");
        assert!(matches!(next, Some(Ok(Event::Init))));
        assert!(matches!(s.next().await, Some(Err(_))));
        // After the 503 the stream sleeps before it polls the watcher again.
        let mut after_503 = s.next();
        assert!(
            (&mut after_503).now_or_never().is_none(),
            "no wait after a 503"
        );
        assert!(matches!(after_503.await, Some(Ok(Event::Init))));
    }
}
