//! Whether a process's watches are healthy: every one has listed once, and none has failed
//! recently.
//!
//! "Recently" is a time window, not "until its next event": a watch on a quiet resource that
//! resumed after an outage yields no event at all (the kube watcher re-watches from its
//! resourceVersion silently), and counting it as failing until something changed there kept
//! the gauge at 0 long after the API server was back. A watch that keeps failing reports an
//! error at least every [`WatchBackoff::MAX`](super::WatchBackoff) plus a request, so it stays
//! unhealthy; one that stopped failing is healthy again after [`WatchHealth::WINDOW`].

use std::time::{Duration, Instant};

/// The health of a fixed set of watches, by index.
#[derive(Debug)]
pub struct WatchHealth {
    watches: Vec<Watch>,
}

#[derive(Debug, Default, Clone)]
struct Watch {
    synced: bool,
    last_error: Option<Instant>,
}

impl WatchHealth {
    /// How long after its last error a watch counts as failing.
    pub const WINDOW: Duration = Duration::from_secs(3);

    pub fn new(watches: usize) -> WatchHealth {
        WatchHealth {
            watches: vec![Watch::default(); watches],
        }
    }

    /// Watch `i` finished a list; true if it was its first.
    pub fn synced(&mut self, i: usize) -> bool {
        !std::mem::replace(&mut self.watches[i].synced, true)
    }

    /// Watch `i` failed at `now`.
    pub fn failed(&mut self, i: usize, now: Instant) {
        self.watches[i].last_error = Some(now);
    }

    /// Watch `i` delivered something: it works.
    pub fn delivered(&mut self, i: usize) {
        self.watches[i].last_error = None;
    }

    pub fn all_synced(&self) -> bool {
        self.watches.iter().all(|w| w.synced)
    }

    /// Every watch listed once, and none failed within [`Self::WINDOW`] of `now`.
    pub fn healthy(&self, now: Instant) -> bool {
        self.all_synced()
            && self.watches.iter().all(|w| {
                w.last_error
                    .is_none_or(|t| now.saturating_duration_since(t) >= Self::WINDOW)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_once_listed_and_no_error_within_the_window() {
        let t0 = Instant::now();
        let mut h = WatchHealth::new(2);
        assert!(!h.healthy(t0), "nothing listed yet");
        h.synced(0);
        assert!(!h.healthy(t0), "one of two listed");
        h.synced(1);
        assert!(h.healthy(t0));
        h.failed(1, t0);
        assert!(
            !h.healthy(t0 + Duration::from_secs(1)),
            "failed a second ago"
        );
        // Regression: a quiet watch that resumed gives no event; it is healthy again once it
        // has not failed for the window.
        assert!(h.healthy(t0 + WatchHealth::WINDOW));
        h.failed(0, t0 + Duration::from_secs(5));
        h.delivered(0);
        assert!(
            h.healthy(t0 + Duration::from_secs(5)),
            "an event says it works"
        );
    }
}
