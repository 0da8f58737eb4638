//! What the server sends on its own: separate responses and notifications. Confirmable ones are
//! retransmitted with RFC 7252's exponential back-off (ACK_TIMEOUT 2 s, random factor 1.5,
//! MAX_RETRANSMIT 4) until an ACK or a RST with their message id arrives; a RST in reply to a
//! non-confirmable notification is routed to its observation too (it ends it).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// RFC 7252 §4.8 ACK_TIMEOUT.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// RFC 7252 §4.8 MAX_RETRANSMIT.
const MAX_RETRANSMIT: u32 = 4;

/// How a confirmable message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Acked,
    Reset,
    /// No ACK after every retransmission: the peer is gone.
    TimedOut,
    /// The server is stopping.
    Stopped,
}

enum Waiter {
    Con(oneshot::Sender<Delivery>),
    /// A non-confirmable notification: a RST cancels its observation.
    Non(CancellationToken),
}

/// The socket's sending side.
pub struct Outbox {
    socket: Arc<UdpSocket>,
    next_mid: AtomicU16,
    pending: Mutex<HashMap<(SocketAddr, u16), Waiter>>,
    shutdown: CancellationToken,
}

impl Outbox {
    pub fn new(socket: Arc<UdpSocket>, shutdown: CancellationToken) -> Outbox {
        Outbox { socket, next_mid: AtomicU16::new(rand::random()), pending: Mutex::new(HashMap::new()), shutdown }
    }

    /// A fresh message id for a message the server starts.
    pub fn next_mid(&self) -> u16 {
        self.next_mid.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a datagram without waiting when the socket can take it (the usual case).
    pub fn send(&self, bytes: &[u8], peer: SocketAddr) {
        match self.socket.try_send_to(bytes, peer) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let socket = Arc::clone(&self.socket);
                let bytes = bytes.to_vec();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(ACK_TIMEOUT, socket.send_to(&bytes, peer)).await;
                });
            }
            Err(e) => tracing::debug!(%peer, error = %e, "CoAP send failed"),
        }
    }

    /// Sends a confirmable message with id `mid` until it is acknowledged, reset, or given up.
    pub async fn send_con(&self, bytes: Arc<[u8]>, mid: u16, peer: SocketAddr) -> Delivery {
        self.send_con_then(bytes, mid, peer, || {}).await
    }

    /// [`Outbox::send_con`], calling `after_first` once the first transmission is sent.
    pub async fn send_con_then(
        &self,
        bytes: Arc<[u8]>,
        mid: u16,
        peer: SocketAddr,
        after_first: impl FnOnce(),
    ) -> Delivery {
        let mut after_first = Some(after_first);
        let (tx, mut rx) = oneshot::channel();
        self.pending.lock().insert((peer, mid), Waiter::Con(tx));
        let mut timeout = ACK_TIMEOUT.mul_f64(1.0 + rand::random::<f64>() * 0.5);
        let mut result = Delivery::TimedOut;
        for attempt in 0..=MAX_RETRANSMIT {
            self.send(&bytes, peer);
            if let Some(f) = after_first.take() {
                f();
            }
            tokio::select! {
                r = &mut rx => {
                    result = r.unwrap_or(Delivery::Stopped);
                    break;
                }
                _ = self.shutdown.cancelled() => {
                    result = Delivery::Stopped;
                    break;
                }
                _ = tokio::time::sleep(timeout) => {}
            }
            if attempt < MAX_RETRANSMIT {
                timeout *= 2;
            }
        }
        self.pending.lock().remove(&(peer, mid));
        result
    }

    /// Remembers a non-confirmable notification so that a RST with its id ends `observation`.
    pub fn note_non(&self, peer: SocketAddr, mid: u16, observation: CancellationToken) {
        self.pending.lock().insert((peer, mid), Waiter::Non(observation));
    }

    /// Forgets a non-confirmable notification (it is no longer one of the recent ones).
    pub fn forget(&self, peer: SocketAddr, mid: u16) {
        let mut pending = self.pending.lock();
        if matches!(pending.get(&(peer, mid)), Some(Waiter::Non(_))) {
            pending.remove(&(peer, mid));
        }
    }

    /// An empty ACK arrived.
    pub fn acked(&self, peer: SocketAddr, mid: u16) {
        let mut pending = self.pending.lock();
        if matches!(pending.get(&(peer, mid)), Some(Waiter::Con(_)))
            && let Some(Waiter::Con(tx)) = pending.remove(&(peer, mid))
        {
            let _ = tx.send(Delivery::Acked);
        }
    }

    /// A RST arrived: the message it names was not wanted.
    pub fn reset(&self, peer: SocketAddr, mid: u16) {
        let waiter = self.pending.lock().remove(&(peer, mid));
        match waiter {
            Some(Waiter::Con(tx)) => {
                let _ = tx.send(Delivery::Reset);
            }
            Some(Waiter::Non(observation)) => observation.cancel(),
            None => {}
        }
    }
}
