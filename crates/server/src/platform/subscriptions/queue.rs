//! A bounded queue outlet for adapters that pull what a subscription delivers (HTTP streams, CoAP
//! observers): payloads go into a queue of the configured size (a full one drops the subscriber
//! as too slow), and the end of the subscription waits in a slot of its own so that it is never
//! lost behind a full queue.

use std::sync::Arc;

use parking_lot::Mutex;
use thingline_bus::{Payload, SinkError};
use tokio::sync::{Notify, mpsc};

use super::{Ended, Outlet};

/// What [`Inbox::next`] yields.
pub enum Next {
    /// A rendered event.
    Payload(Arc<Payload>),
    /// The subscription ended (access removed, session ended, thing gone, too slow).
    Ended(Ended),
    /// The subscriber was closed (shutdown, or the subscription was dropped): end quietly.
    Closed,
}

/// A queued payload, with its channel when the queue keeps channels ([`queue_with_channels`]).
type Item = (Option<Arc<str>>, Arc<Payload>);

/// The pulling side.
pub struct Inbox {
    rx: mpsc::Receiver<Item>,
    end: Arc<EndSlot>,
}

#[derive(Default)]
struct EndSlot {
    why: Mutex<Option<Ended>>,
    notify: Notify,
}

/// The pushing side, handed to the subscription service.
struct QueueOutlet {
    tx: mpsc::Sender<Item>,
    end: Arc<EndSlot>,
    /// Whether each payload keeps its channel (a subscriber of several subscriptions).
    channels: bool,
}

/// A queue of `capacity` payloads: the outlet for the service and the inbox for the adapter.
pub(super) fn queue(capacity: usize) -> (Arc<dyn Outlet>, Inbox) {
    make(capacity, false)
}

/// Like [`queue`], but each payload keeps the channel it was delivered on
/// ([`Inbox::next_with_channel`]): for one inbox fed by several subscriptions.
pub(super) fn queue_with_channels(capacity: usize) -> (Arc<dyn Outlet>, Inbox) {
    make(capacity, true)
}

fn make(capacity: usize, channels: bool) -> (Arc<dyn Outlet>, Inbox) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let end = Arc::new(EndSlot::default());
    (Arc::new(QueueOutlet { tx, end: Arc::clone(&end), channels }), Inbox { rx, end })
}

impl Outlet for QueueOutlet {
    fn deliver(&self, channel: &str, payload: &Arc<Payload>) -> Result<(), SinkError> {
        let channel = self.channels.then(|| Arc::from(channel));
        self.tx.try_send((channel, Arc::clone(payload))).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SinkError::Full,
            mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
        })
    }

    fn ended(&self, _channel: &str, why: Ended) {
        self.end.why.lock().get_or_insert(why);
        self.end.notify.notify_one();
    }
}

impl Inbox {
    /// The next payload, or the end. An end is reported as soon as it happens, before payloads
    /// still queued: they were sent to a subscriber that is no longer allowed them or too slow.
    pub async fn next(&mut self) -> Next {
        self.next_with_channel().await.1
    }

    /// [`Inbox::next`] with the channel of a payload (when the queue keeps channels).
    pub async fn next_with_channel(&mut self) -> (Option<Arc<str>>, Next) {
        loop {
            if let Some(why) = self.end.why.lock().take() {
                return (None, Next::Ended(why));
            }
            tokio::select! {
                biased;
                _ = self.end.notify.notified() => continue,
                p = self.rx.recv() => return match p {
                    Some((channel, payload)) => (channel, Next::Payload(payload)),
                    None => (None, Next::Closed),
                },
            }
        }
    }
}
