//! The inbound publish pipeline of one connection: writes through the platform in the order the
//! PUBLISH packets arrived, one store write at a time, and acknowledgements (PUBACK, PUBREC) only
//! once the write they answer is committed, in arrival order, as MQTT requires.
//!
//! Publishes that queue up behind a write in progress (a client with several QoS 1 messages in
//! flight) go to the store together when they are for the same thing with the same flags: one
//! append, one commit, then one realtime event and one acknowledgement per publish. A refused publish keeps its place in the line,
//! so that its acknowledgement is not sent before those of the publishes ahead of it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use thingline_core::keys::SETTINGS_KEY;
use thingline_core::model::Thing;
use thingline_core::{Error, Result};

use crate::platform::{Platform, WriteFlags, WriteItem};

/// How a publish is answered once its write is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// QoS 0: nothing.
    None,
    /// QoS 1.
    Puback(u16),
    /// QoS 2 (PUBREL and PUBCOMP follow).
    Pubrec(u16),
}

/// One publish in line.
struct Entry {
    /// `None`: refused (with the MQTT 5 reason code); acknowledged in turn, writes nothing.
    write: std::result::Result<Write, u8>,
    ack: Ack,
}

struct Write {
    thing: Arc<Thing>,
    items: Vec<WriteItem>,
    flags: WriteFlags,
}

/// An acknowledgement due, with its reason code (0: success).
pub type Due = (Ack, u8);

/// The outcome of a finished store write: the acknowledgements it answers, and its error.
pub struct Done {
    pub acks: Vec<Ack>,
    pub result: Result<()>,
}

type Running = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// The line of publishes.
pub struct Writes {
    line: VecDeque<Entry>,
    running: Option<(Vec<Ack>, Running)>,
    /// Most values in one store write (the HTTP write's bound).
    max_values: usize,
}

impl Writes {
    pub fn new(max_values: usize) -> Writes {
        Writes { line: VecDeque::new(), running: None, max_values }
    }

    /// Publishes waiting or being written.
    pub fn len(&self) -> usize {
        self.line.len() + self.running.as_ref().map_or(0, |(acks, _)| acks.len())
    }

    pub fn busy(&self) -> bool {
        self.running.is_some()
    }

    /// Puts a write in line.
    pub fn push(&mut self, thing: Arc<Thing>, items: Vec<WriteItem>, flags: WriteFlags, ack: Ack) {
        self.line.push_back(Entry { write: Ok(Write { thing, items, flags }), ack });
    }

    /// Puts a refused publish in line, answered with `reason` (MQTT 5) in its turn.
    pub fn refuse(&mut self, reason: u8, ack: Ack) {
        self.line.push_back(Entry { write: Err(reason), ack });
    }

    /// When no write runs: answers the refused publishes at the front of the line (into `due`)
    /// and starts the next store write.
    pub fn start(&mut self, platform: &Arc<Platform>, due: &mut Vec<Due>) {
        if self.running.is_some() {
            return;
        }
        while let Some(front) = self.line.front() {
            if let Err(reason) = front.write {
                due.push((front.ack, reason));
                self.line.pop_front();
                continue;
            }
            break;
        }
        let Some(Entry { write: Ok(first), ack }) = self.line.pop_front() else { return };
        let mut acks = vec![ack];
        let Write { thing, items, flags } = first;
        let mut total = items.len();
        let mut batches = vec![items];
        // Join the publishes behind it for the same thing and flags (none holding `$settings`,
        // whose checks happen in the write and would fail the others with it).
        let joinable = |w: &Write, total: usize| {
            Arc::ptr_eq(&w.thing, &thing)
                && w.flags.store == flags.store
                && w.flags.broadcast == flags.broadcast
                && total + w.items.len() <= self.max_values
                && !has_settings(&w.items)
        };
        if !has_settings(&batches[0]) {
            while let Some(Entry { write: Ok(next), .. }) = self.line.front() {
                if !joinable(next, total) {
                    break;
                }
                let Some(Entry { write: Ok(next), ack }) = self.line.pop_front() else { break };
                total += next.items.len();
                batches.push(next.items);
                acks.push(ack);
            }
        }
        let p = Arc::clone(platform);
        self.running = Some((acks, Box::pin(async move { p.write_batches(&thing, batches, flags).await })));
    }

    /// The QoS 2 packet ids whose writes have not finished (waiting, or running).
    pub fn unfinished_pubrecs(&self) -> Vec<u16> {
        let running = self.running.iter().flat_map(|(acks, _)| acks.iter());
        let waiting = self.line.iter().filter(|e| e.write.is_ok()).map(|e| &e.ack);
        running.chain(waiting).filter_map(|a| if let Ack::Pubrec(pid) = a { Some(*pid) } else { None }).collect()
    }

    /// Waits for the running write (pending forever when none runs: use under `if busy()`).
    pub async fn finished(&mut self) -> Done {
        let Some((_, fut)) = self.running.as_mut() else { return std::future::pending().await };
        let result = fut.await;
        let acks = self.running.take().map(|(acks, _)| acks).unwrap_or_default();
        Done { acks, result }
    }
}

fn has_settings(items: &[WriteItem]) -> bool {
    items.iter().any(|i| i.key.starts_with(SETTINGS_KEY))
}

/// The MQTT 5 reason code of a write that failed.
pub fn reason_of(e: &Error) -> u8 {
    match e {
        Error::BadRequest(_) | Error::PayloadTooLarge(_) => 0x99,
        Error::NotFound(_) | Error::Forbidden(_) | Error::Unauthorized(_) => 0x87,
        Error::TooManyRequests(_) => 0x97,
        _ => 0x80,
    }
}
