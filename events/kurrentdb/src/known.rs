//! What this process knows of the streams it appended to or read: every
//! event id of a stream's first revisions, for the duplicate check of
//! appends.
//!
//! The port answers an append whose first event id is already stored in the
//! stream as a no-op (`duplicate: true`), wherever in the stream that event
//! is, and refuses one that carries an id stored in the stream past its first
//! event. EventStoreDB checks ids only where the expected revision says the
//! events would go, and only for the events of one earlier append (and, with
//! `Any`, only while they are in its cache of recent events): an append at the
//! stream's current revision whose ids are already further back would be
//! stored twice. So the adapter checks the ids itself, against what it knows
//! of the stream, and makes the server confirm that it knows the whole
//! stream: it appends at the exact revision it knows as the last one (see the
//! crate documentation).
//!
//! Events are never changed once stored, so what is known stays true; only
//! the stream's end moves. Knowledge is kept for revisions `0..next` of each
//! stream, extended only from reads (or appends) that start at or before
//! `next`, so it never has a hole. Revisions missing from a read from 0 (a
//! stream truncated by `$tb`/`$maxCount`) cannot be read by anyone: they
//! count as known, holding nothing.

use std::collections::HashMap;

use ibl_events::{EventData, Position};
use uuid::Uuid;

/// The revision of a stored event, and its position when known (the
/// position of events in the middle of an append of this process is not:
/// the server answers only the last one's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    pub revision: u64,
    pub position: Option<Position>,
}

/// One stream's known events.
#[derive(Debug, Default)]
struct Known {
    /// Revisions `0..next` are known.
    next: u64,
    /// Event id -> where it is stored.
    ids: HashMap<Uuid, Stored>,
}

/// What is known of a stream, in the light of an append.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum View {
    /// Nothing: the stream must be read first (or the server asked).
    Unknown,
    Known {
        /// The last known revision (`None`: no event known).
        last: Option<u64>,
        /// When the append's first event is stored already: the event whose
        /// revision and position answer the append (the last of the earlier
        /// append when the new one carries the same events, else the stored
        /// first event), as the port says.
        duplicate: Option<Stored>,
        /// An event of the append, other than the first, that is stored.
        stored_later: Option<Uuid>,
    },
}

/// The known events of every stream, up to a total of `limit` events.
#[derive(Debug)]
pub(crate) struct KnownStreams {
    streams: HashMap<String, Known>,
    /// Events known in all streams.
    events: usize,
    limit: usize,
}

impl KnownStreams {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            streams: HashMap::new(),
            events: 0,
            limit,
        }
    }

    /// What is known of `stream`, for an append of `events` (not empty).
    pub(crate) fn view(&self, stream: &str, events: &[EventData]) -> View {
        let Some(known) = self.streams.get(stream) else {
            return View::Unknown;
        };
        let duplicate = events.first().and_then(|first| {
            let first = *known.ids.get(&first.event_id)?;
            let last_revision = first.revision + events.len() as u64 - 1;
            let last = events.last().and_then(|last| known.ids.get(&last.event_id));
            Some(match last {
                Some(last) if last.revision == last_revision => *last,
                _ => first,
            })
        });
        let stored_later = events
            .iter()
            .skip(1)
            .find(|e| known.ids.contains_key(&e.event_id))
            .map(|e| e.event_id);
        View::Known {
            last: known.next.checked_sub(1),
            duplicate,
            stored_later,
        }
    }

    /// Where a read that extends what is known of `stream` starts (`None`:
    /// nothing is known, read from 0).
    pub(crate) fn next(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).map(|k| k.next)
    }

    /// Learns that a read of `stream` from revision `from` found `events`
    /// (id, revision, position; in revision order), all the events of the
    /// stream from `from` up to the last one given. Ignored when it would
    /// leave a hole (`from` past what is known).
    pub(crate) fn learn(
        &mut self,
        stream: &str,
        from: u64,
        events: impl IntoIterator<Item = (Uuid, u64, Option<Position>)>,
    ) {
        let known = match self.streams.get_mut(stream) {
            Some(known) if from <= known.next => known,
            Some(_) => return,
            None if from == 0 => self.streams.entry(stream.to_owned()).or_default(),
            None => return,
        };
        let mut added = 0;
        for (id, revision, position) in events {
            if revision >= known.next {
                known.ids.insert(id, Stored { revision, position });
                known.next = revision + 1;
                added += 1;
            } else if let Some(stored) = known.ids.get_mut(&id) {
                // Already known: a read may tell a position an append did
                // not.
                if stored.revision == revision && stored.position.is_none() {
                    stored.position = position;
                }
            }
        }
        self.events += added;
        self.trim(stream);
    }

    /// Learns that `stream` had no event when read from revision 0.
    pub(crate) fn learn_absent(&mut self, stream: &str) {
        self.learn(stream, 0, []);
    }

    /// Forgets `stream` (it could not be read where it was known to go on).
    pub(crate) fn forget(&mut self, stream: &str) {
        if let Some(known) = self.streams.remove(stream) {
            self.events -= known.ids.len();
        }
    }

    /// Past the limit, forgets every stream but `keep` (needed by the append
    /// under way, whatever its size).
    fn trim(&mut self, keep: &str) {
        if self.events > self.limit {
            self.streams.retain(|name, _| name == keep);
            self.events = self.streams.values().map(|k| k.ids.len()).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ibl_events::Metadata;

    fn event(id: Uuid) -> EventData {
        EventData {
            recorded_at: None,
            event_id: id,
            event_type: "T".into(),
            schema_version: 1,
            payload: serde_json::json!({}),
            metadata: Metadata::default(),
        }
    }

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    /// `ids` stored at revisions 0.., at positions 100, 200, ...
    fn stored(known: &mut KnownStreams, stream: &str, ids: &[Uuid]) {
        known.learn(
            stream,
            0,
            ids.iter()
                .enumerate()
                .map(|(i, id)| (*id, i as u64, Some(100 * (i as u64 + 1)))),
        );
    }

    fn view(known: &KnownStreams, stream: &str, ids: &[Uuid]) -> View {
        let events: Vec<EventData> = ids.iter().copied().map(event).collect();
        known.view(stream, &events)
    }

    #[test]
    fn an_unknown_stream_must_be_read() {
        let known = KnownStreams::new(100);
        assert_eq!(view(&known, "s", &ids(1)), View::Unknown);
        assert_eq!(known.next("s"), None);
    }

    #[test]
    fn an_absent_stream_is_known_empty() {
        let mut known = KnownStreams::new(100);
        known.learn_absent("s");
        assert_eq!(known.next("s"), Some(0));
        assert_eq!(
            view(&known, "s", &ids(2)),
            View::Known {
                last: None,
                duplicate: None,
                stored_later: None
            }
        );
    }

    #[test]
    fn a_retry_of_the_same_events_answers_with_the_last_of_them() {
        let mut known = KnownStreams::new(100);
        let batch = ids(3);
        stored(&mut known, "s", &batch);
        assert_eq!(
            view(&known, "s", &batch),
            View::Known {
                last: Some(2),
                duplicate: Some(Stored {
                    revision: 2,
                    position: Some(300)
                }),
                // The batch's own later events are stored too: the port
                // answers the duplicate first.
                stored_later: Some(batch[1]),
            }
        );
    }

    #[test]
    fn another_batch_starting_with_a_stored_event_answers_with_that_event() {
        let mut known = KnownStreams::new(100);
        let batch = ids(3);
        stored(&mut known, "s", &batch);
        let other = [batch[1], Uuid::new_v4()];
        match view(&known, "s", &other) {
            View::Known { duplicate, .. } => assert_eq!(
                duplicate,
                Some(Stored {
                    revision: 1,
                    position: Some(200)
                })
            ),
            v => panic!("{v:?}"),
        }
        // A single event retried.
        match view(&known, "s", &[batch[2]]) {
            View::Known { duplicate, .. } => assert_eq!(
                duplicate,
                Some(Stored {
                    revision: 2,
                    position: Some(300)
                })
            ),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_later_stored_event_is_found() {
        let mut known = KnownStreams::new(100);
        let batch = ids(3);
        stored(&mut known, "s", &batch);
        let new = Uuid::new_v4();
        assert_eq!(
            view(&known, "s", &[new, batch[1]]),
            View::Known {
                last: Some(2),
                duplicate: None,
                stored_later: Some(batch[1]),
            }
        );
    }

    #[test]
    fn knowledge_grows_without_holes() {
        let mut known = KnownStreams::new(100);
        let batch = ids(6);
        // Nothing known: a read from the middle teaches nothing.
        known.learn("s", 2, [(batch[2], 2, Some(3))]);
        assert_eq!(known.next("s"), None);
        stored(&mut known, "s", &batch[..2]);
        assert_eq!(known.next("s"), Some(2));
        // A read past what is known would leave a hole.
        known.learn("s", 3, [(batch[3], 3, Some(4))]);
        assert_eq!(known.next("s"), Some(2));
        // A read that overlaps extends it.
        known.learn(
            "s",
            1,
            [
                (batch[1], 1, Some(200)),
                (batch[2], 2, None),
                (batch[3], 3, Some(400)),
            ],
        );
        assert_eq!(known.next("s"), Some(4));
        // A later read fills in a position an append did not tell.
        known.learn("s", 2, [(batch[2], 2, Some(300))]);
        match view(&known, "s", &[batch[2]]) {
            View::Known { duplicate, .. } => assert_eq!(
                duplicate,
                Some(Stored {
                    revision: 2,
                    position: Some(300)
                })
            ),
            v => panic!("{v:?}"),
        }
        assert_eq!(known.events, 4);
    }

    #[test]
    fn a_truncated_stream_starts_where_it_can_be_read() {
        let mut known = KnownStreams::new(100);
        let batch = ids(2);
        known.learn("s", 0, [(batch[0], 5, Some(50)), (batch[1], 6, Some(60))]);
        assert_eq!(known.next("s"), Some(7));
    }

    #[test]
    fn past_the_limit_other_streams_are_forgotten() {
        let mut known = KnownStreams::new(4);
        stored(&mut known, "a", &ids(3));
        stored(&mut known, "b", &ids(1));
        assert_eq!(known.next("a"), Some(3));
        stored(&mut known, "c", &ids(2));
        assert_eq!(known.next("a"), None);
        assert_eq!(known.next("b"), None);
        assert_eq!(known.next("c"), Some(2));
        // The stream an append needs is kept, however large.
        stored(&mut known, "d", &ids(10));
        assert_eq!(known.next("d"), Some(10));
        assert_eq!(known.next("c"), None);
        assert_eq!(known.events, 10);
        known.forget("d");
        assert_eq!(known.events, 0);
        assert_eq!(known.next("d"), None);
    }
}
