//! KurrentDB (EventStoreDB) adapter of the event store port
//! ([`ibl_events::EventStore`]), over the `kurrentdb` gRPC client.
//!
//! [`KurrentStore::connect`] takes a connection string
//! (`kurrentdb://admin:changeit@localhost:2113?tls=false`,
//! `esdb://localhost:2113?tls=false`, …). A port stream is a server stream of
//! the same name; an event is a JSON record whose id is the event's id, its
//! metadata a JSON object of the port's metadata and schema version (see
//! `codec.rs` for the layout).
//!
//! # Positions
//!
//! The port's [`Position`] of an event is the commit position of its record
//! in `$all`, which is the byte offset in the server's transaction log where
//! the record begins.
//!
//! * Unique: every append through gRPC writes each of its events as a record
//!   of its own that commits itself (a prepare record flagged `IsCommitted`;
//!   the first of an append also carries `TransactionBegin`, the last
//!   `TransactionEnd`). Such a record's commit position and prepare position
//!   are both its own offset, and records do not overlap, so no two events
//!   share one — not even the events of one append, which are consecutive
//!   records. (Only the legacy TCP API's explicit transactions gave several
//!   events one commit position, the offset of their commit record; the
//!   adapter refuses to read such an event, as [`StoreError::Invalid`].)
//! * Increasing: `$all` is the log in order, so the events of one append get
//!   increasing positions and a later append higher ones.
//! * Sparse: consecutive events are a record's length apart (hundreds of
//!   bytes), and the log starts with records of the server's own (an epoch
//!   record at 0, system events), so no event of this store is at 0, and 0
//!   still means "nothing read".
//!
//! [`read_all`](EventStore::read_all)`(after, max)` reads `$all` forwards
//! from the position (`after`, `after`) with the server-side
//! [`StreamFilter`], and drops the event at `after` itself (the server's
//! reads start at the given record, its subscriptions after it). `after`
//! must be 0 or a position this store handed out (an event's, an append's,
//! the head): the server refuses a read from inside a record. A position
//! past the end of the log reads nothing.
//!
//! # Appends, and duplicates
//!
//! The port says that an append whose first event id is already stored in
//! the stream is a no-op answering as the earlier append did
//! (`duplicate: true`), and that one carrying an already stored id past its
//! first event is invalid. EventStoreDB checks ids only where the expected
//! revision says the events go (and, with `Any`, only against a cache of
//! recent events), and its success answer does not say whether it stored
//! anything. So the adapter checks the ids itself against what it knows of
//! the stream (`known.rs`): its ids from revision 0 up to a last
//! revision `r` this process read or appended. It then appends at exactly
//! `r` (or `NoStream`), whatever the caller expected, so that the server
//! confirms nothing was added since. When the server answers "wrong expected
//! version", the adapter reads the stream's new events and decides again: a
//! retry whose events another attempt stored meanwhile is then a duplicate,
//! a caller's expectation that no longer holds a [`StoreError::Conflict`]
//! carrying the stream's actual revision (`None` when it does not exist), and
//! with `Any` the append is simply tried again at the new last revision.
//!
//! An append of a stream this process knows nothing of is sent as is when it
//! expects `NoStream` (the usual creation of a stream costs one call); other
//! appends read the stream first. The knowledge of streams is kept for a
//! bounded number of events ([`KNOWN_EVENTS`]), and every stream read
//! through [`read_stream`](EventStore::read_stream) adds to it, so the
//! command handlers' read-then-append costs no extra call.
//!
//! One case is left to the server: another process (or another task of this
//! one) stores the same events (a retry running twice at once) after this
//! append last read the stream and before it arrives. The server then recognises the retry
//! and answers success without storing anything; the adapter answers
//! `duplicate: true` when the position answered is not past the head it saw
//! before appending (a fresh append always lands past it), and
//! `duplicate: false` otherwise, with the right revision and position either
//! way.
//!
//! # The head
//!
//! [`head`](EventStore::head) starts at the position of the last event of
//! the filtered `$all` when connecting. It moves on when this process
//! appends (to a stream the filter keeps) and when a background task, which
//! follows `$all` with a live subscription under the same filter, sees an
//! event: appends of other processes show within the subscription's latency.
//! When the subscription fails (the server restarts, the connection drops),
//! the task subscribes again after a backoff (100 ms, doubling up to 5 s,
//! back to 100 ms once the server confirms), from the head: the head never
//! goes back, and nothing at or before it is needed again.
//!
//! # Servers
//!
//! Any server of the gRPC API (EventStoreDB 20.6 and later, KurrentDB).
//! Events read from a stream must come with their `$all` position, which
//! servers report for events that commit themselves (all events appended
//! through gRPC); a server that reports none makes
//! [`read_stream`](EventStore::read_stream) fail as
//! [`StoreError::Unavailable`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use ibl_events::checks::{check_expected, validate_append};
use ibl_events::{
    AppendResult, EventData, EventStore, ExpectedRevision, Position, RecordedEvent, StoreError,
};
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, ReadAllOptions,
    ReadStreamOptions, StreamPosition, StreamState, SubscribeToAllOptions, SubscriptionEvent,
};
use tokio::sync::watch;

mod codec;
mod filter;
mod known;

pub use filter::StreamFilter;
use known::{KnownStreams, Stored, View};

/// Events whose ids are kept for the duplicate check of appends, in all
/// streams together (about 60 bytes each). Past it, the streams other than
/// the one appended to are forgotten and read again when needed.
pub const KNOWN_EVENTS: usize = 250_000;

/// Events read per call when learning a stream's ids.
const LEARN_PAGE: usize = 1024;

/// Rounds of one append (appending, and reading the stream again after the
/// server refused the expected revision). Only an `Any` append to a stream
/// that other writers keep moving can need more than three.
const APPEND_ROUNDS: usize = 16;

/// First wait before subscribing again after the subscription failed.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Longest wait between two subscription attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// An [`EventStore`] in a KurrentDB (EventStoreDB) server.
///
/// Dropping the store stops the task that follows `$all`.
pub struct KurrentStore {
    client: Client,
    filter: StreamFilter,
    head: Arc<watch::Sender<Position>>,
    known: Mutex<KnownStreams>,
    follower: tokio::task::JoinHandle<()>,
}

impl KurrentStore {
    /// Connects to the server of this connection string, with the default
    /// [`StreamFilter`] (every stream not starting with `$`).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_filtered(url, StreamFilter::default()).await
    }

    /// Connects to the server of this connection string; `filter` says
    /// which streams of `$all` make this store's global log.
    ///
    /// Reads the position of the last event of the log (the head): an
    /// unreachable server is [`StoreError::Unavailable`], a malformed
    /// connection string [`StoreError::Invalid`]. Must run inside a Tokio
    /// runtime, which then runs the client and the task following `$all`.
    pub async fn connect_filtered(url: &str, filter: StreamFilter) -> Result<Self, StoreError> {
        filter.validate()?;
        let settings: ClientSettings = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("connection string: {e}")))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| StoreError::Unavailable(format!("no Tokio runtime: {e}")))?;
        let client = Client::with_runtime_handle(runtime, settings)
            .map_err(|e| StoreError::Unavailable(format!("cannot create the client: {e}")))?;
        let last = last_position(&client, &filter).await?;
        let (head, _) = watch::channel(last);
        let head = Arc::new(head);
        let follower = tokio::spawn(follow(client.clone(), filter.clone(), Arc::clone(&head)));
        Ok(Self {
            client,
            filter,
            head,
            known: Mutex::new(KnownStreams::new(KNOWN_EVENTS)),
            follower,
        })
    }

    /// The filter this store reads `$all` with.
    pub fn filter(&self) -> &StreamFilter {
        &self.filter
    }

    fn known(&self) -> MutexGuard<'_, KnownStreams> {
        // Nothing panics while holding the lock, and every change leaves
        // the knowledge true: the data behind a poisoned lock is usable.
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Up to `max` records of `stream` from revision `from`; `None` when
    /// the stream does not exist.
    async fn read_records(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Option<Vec<kurrentdb::RecordedEvent>>, StoreError> {
        let options = ReadStreamOptions::default()
            .forwards()
            .position(StreamPosition::Position(from))
            .max_count(max);
        let mut reader = match self.client.read_stream(stream, &options).await {
            Ok(reader) => reader,
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        let mut records = Vec::new();
        loop {
            match reader.next().await {
                Ok(Some(event)) => records.extend(event.event.or(event.link)),
                Ok(None) => return Ok(Some(records)),
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(None),
                Err(e) => return Err(store_error(e)),
            }
        }
    }

    /// Reads the events of `stream` past what is known of it, and learns
    /// their ids.
    async fn catch_up(&self, stream: &str) -> Result<(), StoreError> {
        let mut from = self.known().next(stream).unwrap_or(0);
        loop {
            let Some(records) = self.read_records(stream, from, LEARN_PAGE).await? else {
                let mut known = self.known();
                if from == 0 {
                    known.learn_absent(stream);
                } else {
                    // Deleted since: start again from nothing.
                    known.forget(stream);
                }
                return Ok(());
            };
            self.known().learn(stream, from, records.iter().map(ids));
            match records.last() {
                Some(last) if records.len() == LEARN_PAGE => from = last.revision + 1,
                _ => return Ok(()),
            }
        }
    }

    /// The position of the event at `revision` of `stream`.
    async fn position_of(&self, stream: &str, revision: u64) -> Result<Position, StoreError> {
        let records = self.read_records(stream, revision, 1).await?;
        let record = records
            .and_then(|r| r.into_iter().next())
            .filter(|r| r.revision == revision)
            .ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "{stream}: revision {revision} vanished while appending"
                ))
            })?;
        self.known().learn(stream, revision, [ids(&record)]);
        codec::position(record.position.commit, record.position.prepare)
    }

    /// The answer to an append whose first event is stored as `stored`.
    async fn duplicate(&self, stream: &str, stored: Stored) -> Result<AppendResult, StoreError> {
        let position = match stored.position {
            Some(position) => position,
            None => self.position_of(stream, stored.revision).await?,
        };
        Ok(AppendResult {
            revision: stored.revision,
            position,
            duplicate: true,
        })
    }

    /// Moves the head to `position` (never back).
    fn advance(&self, position: Position) {
        advance(&self.head, position);
    }
}

impl Drop for KurrentStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

#[async_trait]
impl EventStore for KurrentStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        validate_append(stream, &events)?;
        let records = events
            .iter()
            .map(codec::encode)
            .collect::<Result<Vec<_>, _>>()?;
        // True once the stream was read since the last refusal.
        let mut learned = false;
        for _ in 0..APPEND_ROUNDS {
            let head_before = *self.head.borrow();
            let view = self.known().view(stream, &events);
            let last = match view {
                View::Unknown if expected == ExpectedRevision::NoStream => None,
                View::Unknown => {
                    self.catch_up(stream).await?;
                    learned = true;
                    continue;
                }
                View::Known {
                    last,
                    duplicate,
                    stored_later,
                } => {
                    if let Some(stored) = duplicate {
                        return self.duplicate(stream, stored).await;
                    }
                    if let Err(conflict) = check_expected(stream, expected, last) {
                        if learned {
                            return Err(conflict);
                        }
                        // What is known may be old: ask the server.
                        self.catch_up(stream).await?;
                        learned = true;
                        continue;
                    }
                    if let Some(id) = stored_later {
                        return Err(StoreError::Invalid(format!(
                            "event id {id} is already stored in {stream}"
                        )));
                    }
                    last
                }
            };

            let options = AppendToStreamOptions::default().stream_state(server_state(last));
            match self
                .client
                .append_to_stream(stream, &options, records.clone())
                .await
            {
                Ok(written) => {
                    let revision = written.next_expected_version;
                    let position = written.position.commit;
                    let first = (revision + 1).saturating_sub(events.len() as u64);
                    let last_id = events.last().map(|e| e.event_id);
                    self.known().learn(
                        stream,
                        first,
                        events.iter().enumerate().map(|(i, e)| {
                            let at_end = Some(e.event_id) == last_id && position != 0;
                            (e.event_id, first + i as u64, at_end.then_some(position))
                        }),
                    );
                    // A fresh append lands past every event known before
                    // it: an answer at or before the head, or without a
                    // position, is the server recognising events it had.
                    if position == 0 || position <= head_before {
                        let position = if position == 0 {
                            self.position_of(stream, revision).await?
                        } else {
                            position
                        };
                        return Ok(AppendResult {
                            revision,
                            position,
                            duplicate: true,
                        });
                    }
                    if self.filter.matches(stream) {
                        self.advance(position);
                    }
                    return Ok(AppendResult {
                        revision,
                        position,
                        duplicate: false,
                    });
                }
                Err(kurrentdb::Error::WrongExpectedVersion { .. }) => {
                    // The stream moved since it was read: read on, decide
                    // again.
                    self.catch_up(stream).await?;
                    learned = true;
                }
                Err(e) => return Err(append_error(stream, expected, e)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "append to {stream}: the stream kept moving ({APPEND_ROUNDS} attempts)"
        )))
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let Some(records) = self.read_records(stream, from, max).await? else {
            if from == 0 {
                self.known().learn_absent(stream);
            }
            return Ok(Vec::new());
        };
        self.known().learn(stream, from, records.iter().map(ids));
        records
            .iter()
            .map(|r| codec::decode(codec::Raw::of(r)))
            .collect()
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // No log position is past i64::MAX (the server's own type).
        if max == 0 || after > i64::MAX as u64 {
            return Ok(Vec::new());
        }
        let options = ReadAllOptions::default()
            .forwards()
            .position(start(after))
            .filter(self.filter.to_server())
            // The event at `after` itself comes first, and is dropped.
            .max_count(max.saturating_add(1));
        let mut reader = self.client.read_all(&options).await.map_err(store_error)?;
        let mut out = Vec::with_capacity(max.min(1024));
        while out.len() < max {
            let Some(event) = reader.next().await.map_err(store_error)? else {
                break;
            };
            let record = event.get_original_event();
            if record.position.commit > after {
                out.push(codec::decode(codec::Raw::of(record))?);
            }
        }
        Ok(out)
    }

    /// Every read goes to the server: nothing is kept here.
    async fn read_tail(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_all(after, max).await
    }

    fn head(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}

/// Where a read or subscription after `after` starts.
fn start(after: Position) -> StreamPosition<kurrentdb::Position> {
    if after == 0 {
        StreamPosition::Start
    } else {
        StreamPosition::Position(kurrentdb::Position {
            commit: after,
            prepare: after,
        })
    }
}

/// The id, revision and position (when it has one of its own) of a record.
fn ids(record: &kurrentdb::RecordedEvent) -> (uuid::Uuid, u64, Option<Position>) {
    let position = codec::position(record.position.commit, record.position.prepare).ok();
    (record.id, record.revision, position)
}

/// The position of the last event of the filtered `$all` (0 when none).
async fn last_position(client: &Client, filter: &StreamFilter) -> Result<Position, StoreError> {
    let options = ReadAllOptions::default()
        .position(StreamPosition::End)
        .filter(filter.to_server())
        .max_count(1);
    let mut reader = client.read_all(&options).await.map_err(store_error)?;
    Ok(reader
        .next()
        .await
        .map_err(store_error)?
        .map_or(0, |event| event.get_original_event().position.commit))
}

/// Moves `head` to `position` (never back).
fn advance(head: &watch::Sender<Position>, position: Position) {
    head.send_if_modified(|current| {
        let newer = position > *current;
        if newer {
            *current = position;
        }
        newer
    });
}

/// Follows the filtered `$all` from the head, moving the head with every
/// event, until the store is dropped (which aborts the task). Subscribes
/// again after a failure, with a growing backoff, from the head.
async fn follow(client: Client, filter: StreamFilter, head: Arc<watch::Sender<Position>>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let from = *head.borrow();
        let options = SubscribeToAllOptions::default()
            .position(start(from))
            .filter(filter.to_server());
        let mut subscription = client.subscribe_to_all(&options).await;
        loop {
            match subscription.next_subscription_event().await {
                Ok(SubscriptionEvent::EventAppeared(event)) => {
                    let record = event.get_original_event();
                    if filter.matches(record.stream_id()) {
                        advance(&head, record.position.commit);
                    }
                    backoff = MIN_BACKOFF;
                }
                Ok(SubscriptionEvent::Confirmed(_)) => backoff = MIN_BACKOFF,
                // Checkpoints, caught up, ...: not events of this store.
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(
                        "event store subscription to $all dropped ({e}); subscribing again from \
                         {} in {backoff:?}",
                        *head.borrow()
                    );
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The expected state an append is sent with: the stream's last revision as
/// known, or no stream. (The port's `Any` is checked here, never sent as the
/// server's `Any`, so that the server confirms the duplicate check; the
/// server's `StreamExists` has no use.)
fn server_state(last: Option<u64>) -> StreamState {
    last.map_or(StreamState::NoStream, StreamState::StreamRevision)
}

/// The port's actual revision of a stream the server reports.
fn actual_revision(current: CurrentRevision) -> Option<u64> {
    match current {
        CurrentRevision::Current(revision) => Some(revision),
        CurrentRevision::NoStream => None,
    }
}

/// An append's error: the server's wrong expected version is a conflict
/// carrying the stream's actual revision.
fn append_error(stream: &str, expected: ExpectedRevision, e: kurrentdb::Error) -> StoreError {
    match e {
        kurrentdb::Error::WrongExpectedVersion { current, .. } => StoreError::Conflict {
            stream: stream.to_owned(),
            expected,
            actual: actual_revision(current),
        },
        e => store_error(e),
    }
}

/// The port's error for a client error: the request's fault is
/// [`StoreError::Invalid`], everything else (connection, server, access,
/// timeouts) [`StoreError::Unavailable`].
fn store_error(e: kurrentdb::Error) -> StoreError {
    use kurrentdb::Error as E;
    use tonic::Code;
    match e {
        E::ResourceDeleted => StoreError::Invalid("the stream is deleted".into()),
        E::Grpc {
            code: Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition,
            message,
        } => StoreError::Invalid(format!("refused by the event store: {message}")),
        E::AccessDenied => StoreError::Unavailable(
            "access denied by the event store (check the credentials of the connection string)"
                .into(),
        ),
        e => StoreError::Unavailable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kurrentdb::{Endpoint, GrpcConnectionError};
    use tonic::Code;

    #[test]
    fn appends_are_sent_at_the_known_last_revision() {
        assert_eq!(server_state(None), StreamState::NoStream);
        assert_eq!(server_state(Some(0)), StreamState::StreamRevision(0));
        assert_eq!(server_state(Some(41)), StreamState::StreamRevision(41));
    }

    #[test]
    fn a_wrong_expected_version_is_a_conflict_with_the_actual_revision() {
        let e = kurrentdb::Error::WrongExpectedVersion {
            expected: StreamState::StreamRevision(1),
            current: CurrentRevision::Current(7),
        };
        assert_eq!(
            append_error("s", ExpectedRevision::Exact(1), e),
            StoreError::Conflict {
                stream: "s".into(),
                expected: ExpectedRevision::Exact(1),
                actual: Some(7),
            }
        );
        let e = kurrentdb::Error::WrongExpectedVersion {
            expected: StreamState::StreamRevision(0),
            current: CurrentRevision::NoStream,
        };
        assert_eq!(
            append_error("s", ExpectedRevision::Exact(0), e),
            StoreError::Conflict {
                stream: "s".into(),
                expected: ExpectedRevision::Exact(0),
                actual: None,
            }
        );
        assert_eq!(actual_revision(CurrentRevision::Current(0)), Some(0));
        assert_eq!(actual_revision(CurrentRevision::NoStream), None);
    }

    #[test]
    fn connection_and_server_errors_are_unavailable() {
        for e in [
            kurrentdb::Error::ConnectionClosed,
            kurrentdb::Error::ServerError("status: Unavailable".into()),
            kurrentdb::Error::GrpcConnectionError(GrpcConnectionError::Grpc("refused".into())),
            kurrentdb::Error::GrpcConnectionError(GrpcConnectionError::MaxDiscoveryAttemptReached(
                3,
            )),
            kurrentdb::Error::DeadlineExceeded,
            kurrentdb::Error::NotLeaderException(Endpoint {
                host: "other".into(),
                port: 2113,
            }),
            kurrentdb::Error::AccessDenied,
            kurrentdb::Error::UnsupportedFeature,
            kurrentdb::Error::Grpc {
                code: Code::Unavailable,
                message: "down".into(),
            },
            kurrentdb::Error::Grpc {
                code: Code::Cancelled,
                message: "shutting down".into(),
            },
        ] {
            let text = e.to_string();
            assert!(
                matches!(
                    append_error("s", ExpectedRevision::Any, e),
                    StoreError::Unavailable(_)
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn refused_requests_are_invalid() {
        for e in [
            kurrentdb::Error::ResourceDeleted,
            kurrentdb::Error::Grpc {
                code: Code::InvalidArgument,
                message: "Maximum Append Size of 1048576 Exceeded.".into(),
            },
            kurrentdb::Error::Grpc {
                code: Code::FailedPrecondition,
                message: "no".into(),
            },
        ] {
            let text = e.to_string();
            assert!(matches!(store_error(e), StoreError::Invalid(_)), "{text}");
        }
    }

    #[test]
    fn reads_after_a_position_start_at_its_record() {
        assert_eq!(start(0), StreamPosition::Start);
        assert_eq!(
            start(1234),
            StreamPosition::Position(kurrentdb::Position {
                commit: 1234,
                prepare: 1234
            })
        );
    }

    #[test]
    fn the_head_never_goes_back() {
        let (head, mut seen) = watch::channel(10);
        advance(&head, 5);
        assert!(!seen.has_changed().unwrap());
        advance(&head, 10);
        assert!(!seen.has_changed().unwrap());
        advance(&head, 11);
        assert!(seen.has_changed().unwrap());
        assert_eq!(*seen.borrow_and_update(), 11);
    }
}
