//! The tail: the events this instance committed last, kept in memory as
//! [`RecordedEvent`]s so that the projectors following the log (each one a
//! [`Subscription`](crate::Subscription)) do not each read them back from
//! the file and decode their JSON again.
//!
//! The writer adds each batch's events after its commit and before it moves
//! the head, so a reader woken by the head finds them here. The tail only
//! ever holds a contiguous run of positions: when another process committed
//! between two of this instance's batches, the next batch does not follow
//! the run and starts a new one. A read the run does not cover (older
//! events, or newer ones another process wrote) goes to the file.
//!
//! Each event is built from what the writer stored: the payload and
//! metadata it serialized (JSON numbers are parsed back exactly: serde_json's
//! `float_roundtrip`), and the time as stored (microseconds). The contract
//! case `the_tail_reads_as_the_store` holds the two equal.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use crate::{Position, RecordedEvent};

/// How many events the tail keeps: two of the projectors' largest batches.
pub const TAIL_EVENTS: usize = 4096;

pub struct Tail {
    run: RwLock<Run>,
}

/// Events at positions `after + 1 ..= after + events.len()`. Each is
/// behind an `Arc`, so that a reader holds the lock (which the writer
/// takes after every commit) only to count references, and copies the
/// events after releasing it.
struct Run {
    after: Position,
    events: VecDeque<Arc<RecordedEvent>>,
}

impl Run {
    fn end(&self) -> Position {
        self.after + self.events.len() as Position
    }
}

impl Tail {
    /// An empty tail for a log whose last event is at `head`.
    pub fn new(head: Position) -> Self {
        Self {
            run: RwLock::new(Run {
                after: head,
                events: VecDeque::with_capacity(TAIL_EVENTS),
            }),
        }
    }

    /// Adds events just committed, in position order.
    pub fn push(&self, committed: impl IntoIterator<Item = RecordedEvent>) {
        let mut run = self.run.write().unwrap_or_else(|p| p.into_inner());
        for event in committed {
            if event.position != run.end() + 1 {
                // Another process committed in between (or this is the
                // first batch): a new run starts here.
                run.events.clear();
                run.after = event.position - 1;
            }
            run.events.push_back(Arc::new(event));
            if run.events.len() > TAIL_EVENTS {
                run.events.pop_front();
                run.after += 1;
            }
        }
    }

    /// Up to `max` events after `after`, when the run holds the next one;
    /// `None` sends the read to the file.
    pub fn read(&self, after: Position, max: usize) -> Option<Vec<RecordedEvent>> {
        let shared: Vec<Arc<RecordedEvent>> = {
            let run = self.run.read().unwrap_or_else(|p| p.into_inner());
            if after < run.after || after >= run.end() {
                return None;
            }
            let skip = usize::try_from(after - run.after).ok()?;
            run.events.range(skip..).take(max).cloned().collect()
        };
        Some(shared.iter().map(|e| RecordedEvent::clone(e)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn at(position: Position) -> RecordedEvent {
        RecordedEvent {
            event_id: uuid::Uuid::nil(),
            stream: "s".into(),
            revision: position,
            position,
            event_type: "T".into(),
            schema_version: 1,
            recorded_at: DateTime::UNIX_EPOCH,
            payload: serde_json::Value::Null.into(),
            metadata: crate::Metadata::default(),
        }
    }

    fn positions(events: Option<Vec<RecordedEvent>>) -> Option<Vec<Position>> {
        events.map(|e| e.iter().map(|e| e.position).collect())
    }

    #[test]
    fn it_answers_only_what_its_run_holds() {
        let tail = Tail::new(10);
        assert_eq!(positions(tail.read(10, 5)), None, "empty");
        tail.push((11..=14).map(at));
        assert_eq!(positions(tail.read(10, 2)), Some(vec![11, 12]));
        assert_eq!(positions(tail.read(12, 100)), Some(vec![13, 14]));
        assert_eq!(positions(tail.read(9, 5)), None, "older: the file");
        assert_eq!(positions(tail.read(14, 5)), None, "newer: the file");
        // 15 and 16 were another process's: a new run from 17.
        tail.push((17..=18).map(at));
        assert_eq!(positions(tail.read(12, 5)), None);
        assert_eq!(positions(tail.read(16, 5)), Some(vec![17, 18]));
    }

    #[test]
    fn it_keeps_the_last_events_only() {
        let tail = Tail::new(0);
        let last = TAIL_EVENTS as Position + 100;
        tail.push((1..=last).map(at));
        assert_eq!(positions(tail.read(99, 1)), None);
        assert_eq!(positions(tail.read(100, 1)), Some(vec![101]));
        assert_eq!(positions(tail.read(last - 1, 5)), Some(vec![last]));
    }
}
