//! Session expiry for live subscriptions: one task for the whole server sleeps until the earliest
//! `expirationDate` among the sessions that hold subscriptions, then makes those subscribers
//! re-check (which ends their subscriptions with 401). No timer per connection: an idle
//! connection costs one map entry. The same map finds the live subscribers of one app
//! ([`Deadlines::recheck_app`]) when the app changes or is deleted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use thingline_core::time::now_ms;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Inner;

/// The longest the task sleeps before looking again (wall-clock changes are picked up then).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// A watched subscriber and the app of its session.
type Watched = (Weak<Inner>, Arc<str>);

/// Subscribers by the expiry of their session: (expires_ms, subscriber id) → watched.
#[derive(Default)]
pub(crate) struct Deadlines {
    by_time: Mutex<BTreeMap<(i64, u64), Watched>>,
    wake: Notify,
    started: AtomicBool,
}

impl Deadlines {
    /// Watches a subscriber's session expiry (starting the task on first use).
    pub(super) fn insert(
        self: &Arc<Self>,
        expires_ms: i64,
        id: u64,
        inner: Weak<Inner>,
        app_id: Arc<str>,
        shutdown: &CancellationToken,
    ) {
        let earliest = {
            let mut map = self.by_time.lock();
            map.insert((expires_ms, id), (inner, app_id));
            map.keys().next() == Some(&(expires_ms, id))
        };
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(Arc::clone(self), shutdown.clone()));
        } else if earliest {
            self.wake.notify_one();
        }
    }

    pub(super) fn remove(&self, expires_ms: i64, id: u64) {
        self.by_time.lock().remove(&(expires_ms, id));
    }

    /// Makes every live subscriber whose session belongs to `app_id` (`None`: to any app)
    /// re-check its session and permissions (the app changed or is gone; a product's or many
    /// users' access changed).
    pub(crate) fn recheck_app(&self, app_id: Option<&str>) {
        let due: Vec<Arc<Inner>> = self
            .by_time
            .lock()
            .values()
            .filter(|(_, app)| app_id.is_none_or(|a| a == &**app))
            .filter_map(|(w, _)| w.upgrade())
            .collect();
        for inner in due {
            tokio::spawn(async move { inner.recheck().await });
        }
    }

    /// Takes the entries due at `now`; returns them and the next deadline.
    fn take_due(&self, now: i64) -> (Vec<Arc<Inner>>, Option<i64>) {
        let mut map = self.by_time.lock();
        let later = map.split_off(&(now.saturating_add(1), 0));
        let due = std::mem::replace(&mut *map, later);
        let next = map.keys().next().map(|(t, _)| *t);
        (due.into_values().filter_map(|(w, _)| w.upgrade()).collect(), next)
    }
}

async fn run(deadlines: Arc<Deadlines>, shutdown: CancellationToken) {
    loop {
        let (due, next) = deadlines.take_due(now_ms());
        for inner in due {
            tokio::spawn(async move { inner.recheck().await });
        }
        let sleep = next.map_or(MAX_SLEEP, |t| {
            Duration::from_millis(u64::try_from(t.saturating_sub(now_ms())).unwrap_or(0)).min(MAX_SLEEP)
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = deadlines.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
