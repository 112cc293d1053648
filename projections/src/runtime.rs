use std::sync::Arc;
use std::time::Duration;

use ibl_events::{EventStore, Position, RecordedEvent, StoreError, Subscription};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The read-model store port: what the projector runtime needs of a model.
/// Adapters (in memory now, Redis later) implement it and the query methods
/// of their model.
pub trait ReadModel: Send + Sync + 'static {
    /// A stable name, used in logs and for the checkpoint key.
    fn name(&self) -> &'static str;
    /// The position of the last event applied.
    fn checkpoint(&self) -> Position;
    /// Applies a batch in order, skipping events at or below the checkpoint,
    /// and moves the checkpoint to the last event in the same atomic step.
    /// May block (a model in another server waits for it).
    fn apply(&self, batch: &[RecordedEvent]) -> Applied;

    /// Applies a batch as [`apply`](Self::apply) does, but may return
    /// before its checkpoint moves, leaving the batch's writes in flight
    /// while the projector reads the next one (it has one ready). The next
    /// `apply`, `apply_behind`, [`settle`](Self::settle) or `verify`
    /// completes them first.
    fn apply_behind(&self, batch: &[RecordedEvent]) -> Applied {
        self.apply(batch)
    }

    /// Completes the writes in flight: the checkpoint is then the last
    /// batch's.
    fn settle(&self) -> Applied {
        Applied::Done
    }

    /// Checks, while the log is idle, that the model's store still holds
    /// what was applied (a server that came back empty is otherwise
    /// noticed only at the next event). May block.
    fn verify(&self) -> Applied {
        Applied::Done
    }
}

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied: the checkpoint is the batch's last event.
    Done,
    /// The model's store lost what it held (a Redis server that came back
    /// empty): the model was cleared, its checkpoint went back, and the
    /// projector reads the log again from there.
    Rewound,
}

/// The projectors of one process and how far they have got.
#[derive(Clone)]
pub struct Projections {
    /// The models this process applies.
    progress: Vec<(&'static str, watch::Receiver<Position>)>,
    /// The models another process applies.
    observed: Vec<(&'static str, watch::Receiver<Position>)>,
}

const BATCH: usize = 2048;

/// After this long without an event, the models verify their stores.
const IDLE: Duration = Duration::from_secs(1);

impl Projections {
    /// Starts the projector task: it reads the log once, from the lowest
    /// checkpoint of the models, and hands every batch to each model in
    /// turn (each skips what it has already applied).
    pub fn start(
        store: Arc<dyn EventStore>,
        models: Vec<Arc<dyn ReadModel>>,
    ) -> (Self, Vec<JoinHandle<()>>) {
        Self::start_lingering(store, models, Duration::ZERO)
    }

    /// [`start`](Self::start) for models no request's answer waits for
    /// (the audit log): after a batch shorter than the longest, the next is
    /// read `linger` later, so that under a stream of small writes each
    /// batch carries many events and its fixed costs (a read of the store,
    /// a transaction) are paid once for all of them.
    pub fn start_lingering(
        store: Arc<dyn EventStore>,
        models: Vec<Arc<dyn ReadModel>>,
        linger: Duration,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let mut progress = Vec::new();
        let mut followers = Vec::new();
        for model in models {
            let (tx, rx) = watch::channel(model.checkpoint());
            progress.push((model.name(), rx));
            followers.push((model, tx));
        }
        let observed = Vec::new();
        if followers.is_empty() {
            return (Self { progress, observed }, Vec::new()); // nothing to feed
        }
        let task = tokio::spawn(run(store, followers, linger));
        (Self { progress, observed }, vec![task])
    }

    /// Adds a model another process applies (a read model in Redis that
    /// the projections process writes): `progress` follows its checkpoint,
    /// and [`wait_for`](Self::wait_for) waits for it too.
    /// [`catch_up`](Self::catch_up) does not wait for it: that process
    /// may be behind, or down.
    pub fn observe(&mut self, name: &'static str, progress: watch::Receiver<Position>) {
        self.observed.push((name, progress));
    }

    fn all(&self) -> impl Iterator<Item = &(&'static str, watch::Receiver<Position>)> {
        self.progress.iter().chain(&self.observed)
    }

    /// The lowest position every model has reached.
    pub fn position(&self) -> Position {
        self.all().map(|(_, p)| *p.borrow()).min().unwrap_or(0)
    }

    /// Each model's name and the position it has reached.
    pub fn positions(&self) -> Vec<(&'static str, Position)> {
        self.all().map(|(n, p)| (*n, *p.borrow())).collect()
    }

    /// Waits until every model has applied `position`. Returns false on
    /// timeout.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> bool {
        let all = async {
            for (_, rx) in self.all() {
                let mut rx = rx.clone();
                if rx.wait_for(|p| *p >= position).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, all).await.unwrap_or(false)
    }

    /// Waits until every model this process applies has caught up with the
    /// store's head as it is now (used at start-up, before the service
    /// answers `/healthz`).
    pub async fn catch_up(&self, store: &dyn EventStore) -> bool {
        let head = *store.head().borrow();
        let own = Self {
            progress: self.progress.clone(),
            observed: Vec::new(),
        };
        own.wait_for(head, Duration::from_secs(3600)).await
    }
}

async fn run(
    store: Arc<dyn EventStore>,
    mut models: Vec<(Arc<dyn ReadModel>, watch::Sender<Position>)>,
    linger: Duration,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let from = models
            .iter()
            .map(|(m, _)| m.checkpoint())
            .min()
            .unwrap_or(0);
        // The next batch is read while the current one is applied.
        let (batches, mut incoming) = tokio::sync::mpsc::channel(2);
        let reader = tokio::spawn(read_ahead(
            Subscription::new(store.clone(), from),
            batches,
            linger,
        ));
        let mut failure = None;
        loop {
            let batch = match tokio::time::timeout(IDLE, incoming.recv()).await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(_) => {
                    let (back, rewound) = tokio::task::spawn_blocking(move || {
                        let mut rewound = false;
                        for (model, tx) in &models {
                            rewound |= model.verify() == Applied::Rewound;
                            tx.send_replace(model.checkpoint());
                        }
                        (models, rewound)
                    })
                    .await
                    .expect("a read model panicked");
                    models = back;
                    if rewound {
                        failure = Some("a read model was rewound".to_owned());
                        break;
                    }
                    continue;
                }
            };
            match batch {
                Ok(batch) => {
                    // With the next batch already read, a model may leave
                    // this one's writes in flight; the last one read is
                    // settled before the checkpoints are published.
                    let behind = !incoming.is_empty();
                    // Off the async thread: a model may wait for its server.
                    let (back, applied) = tokio::task::spawn_blocking(move || {
                        let mut rewound = false;
                        for (model, tx) in &models {
                            let applied = if behind {
                                model.apply_behind(&batch)
                            } else {
                                match model.apply(&batch) {
                                    Applied::Done => model.settle(),
                                    Applied::Rewound => Applied::Rewound,
                                }
                            };
                            rewound |= applied == Applied::Rewound;
                            tx.send_replace(model.checkpoint());
                        }
                        (models, rewound)
                    })
                    .await
                    .expect("a read model panicked");
                    models = back;
                    backoff = Duration::from_millis(50);
                    if applied {
                        failure = Some("a read model was rewound".to_owned());
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        reader.abort();
        if models.iter().all(|(_, tx)| tx.is_closed()) {
            return;
        }
        let error = failure.unwrap_or_else(|| "subscription ended".into());
        tracing::warn!(%error, "projectors stopped; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn read_ahead(
    mut sub: Subscription,
    batches: tokio::sync::mpsc::Sender<Result<Vec<RecordedEvent>, StoreError>>,
    linger: Duration,
) {
    loop {
        let batch = sub.next_batch(BATCH).await;
        let failed = batch.is_err();
        let short = batch.as_ref().is_ok_and(|b| b.len() < BATCH);
        if batches.send(batch).await.is_err() || failed {
            return;
        }
        if short && !linger.is_zero() {
            tokio::time::sleep(linger).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{CredentialFilter, CredentialsModel};
    use ibl_events::credentials::{CredentialEvent, CredentialFields};
    use ibl_events::memory::MemoryStore;
    use ibl_events::{DomainEvent, ExpectedRevision, Metadata};

    async fn create(store: &dyn EventStore, id: &str) -> Position {
        let event = CredentialEvent::CredentialCreated {
            platform: "acme".into(),
            entity_id: id.into(),
            fields: CredentialFields {
                name: format!("badge {id}"),
                ..CredentialFields::default()
            },
            created_at: chrono::Utc::now(),
        };
        let data = event.to_data(uuid::Uuid::new_v4(), Metadata::default());
        store
            .append(
                &format!("credential-{id}"),
                ExpectedRevision::NoStream,
                vec![data],
            )
            .await
            .expect("append")
            .position
    }

    #[tokio::test]
    async fn a_projector_follows_the_log_live_and_a_rebuild_gives_the_same_model() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        for i in 0..50 {
            create(store.as_ref(), &format!("early-{i}")).await;
        }
        let live = Arc::new(CredentialsModel::new());
        let (projections, _tasks) = Projections::start(store.clone(), vec![live.clone()]);
        assert!(projections.catch_up(store.as_ref()).await);
        assert_eq!(
            live.credentials("acme", &CredentialFilter::default(), 0, 1)
                .count,
            50
        );

        let last = create(store.as_ref(), "late").await;
        assert!(projections.wait_for(last, Duration::from_secs(5)).await);
        assert!(
            live.credential("acme", "late").is_some(),
            "a live event is applied"
        );
        assert_eq!(projections.position(), last);

        let rebuilt = Arc::new(CredentialsModel::new());
        let (again, _tasks) = Projections::start(store.clone(), vec![rebuilt.clone()]);
        assert!(again.wait_for(last, Duration::from_secs(5)).await);
        let all = CredentialFilter::default();
        assert_eq!(
            rebuilt.credentials("acme", &all, 0, 100).items,
            live.credentials("acme", &all, 0, 100).items
        );
    }

    /// A model that sums the positions it applied, and loses everything
    /// once, at the batch that crosses `lose_at` (as a Redis server that
    /// came back empty).
    struct Forgetful {
        state: std::sync::Mutex<(Position, u64, Option<Position>)>,
    }

    impl ReadModel for Forgetful {
        fn name(&self) -> &'static str {
            "forgetful"
        }

        fn checkpoint(&self) -> Position {
            self.state.lock().unwrap().0
        }

        fn apply(&self, batch: &[RecordedEvent]) -> Applied {
            let mut s = self.state.lock().unwrap();
            if s.2.is_some_and(|at| batch.iter().any(|e| e.position >= at)) {
                *s = (0, 0, None);
                return Applied::Rewound;
            }
            for e in batch {
                if e.position > s.0 {
                    s.1 += e.position;
                    s.0 = e.position;
                }
            }
            Applied::Done
        }
    }

    #[tokio::test]
    async fn a_rewound_model_is_fed_the_log_again_from_its_new_checkpoint() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let model = Arc::new(Forgetful {
            state: std::sync::Mutex::new((0, 0, Some(30))),
        });
        let (projections, _tasks) = Projections::start(store.clone(), vec![model.clone()]);
        let mut last = 0;
        for i in 0..60 {
            last = create(store.as_ref(), &format!("c{i}")).await;
        }
        assert!(projections.wait_for(last, Duration::from_secs(5)).await);
        let (checkpoint, sum, lose) = *model.state.lock().unwrap();
        assert_eq!(lose, None, "it lost its state once");
        assert_eq!(checkpoint, last);
        assert_eq!(
            sum,
            (1..=last).sum::<u64>(),
            "every event once, after the loss"
        );
    }

    /// Counts the batches it is handed and the events in them.
    #[derive(Default)]
    struct Counting {
        state: std::sync::Mutex<(Position, usize)>,
    }

    impl ReadModel for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }

        fn checkpoint(&self) -> Position {
            self.state.lock().unwrap().0
        }

        fn apply(&self, batch: &[RecordedEvent]) -> Applied {
            let mut state = self.state.lock().unwrap();
            let fresh: Vec<_> = batch.iter().filter(|e| e.position > state.0).collect();
            if let Some(last) = fresh.last() {
                state.0 = last.position;
                state.1 += 1;
            }
            Applied::Done
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_lingering_projector_takes_a_stream_of_small_writes_in_few_batches() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let model = Arc::new(Counting::default());
        let (projections, _tasks) = Projections::start_lingering(
            store.clone(),
            vec![model.clone()],
            Duration::from_millis(100),
        );
        let mut head = 0;
        for i in 0..40 {
            head = create(store.as_ref(), &format!("c{i}")).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(projections.wait_for(head, Duration::from_secs(5)).await);
        let (position, batches) = *model.state.lock().unwrap();
        assert_eq!(position, head, "every event applied");
        assert!(batches <= 8, "40 writes 5 ms apart in {batches} batches");
    }

    #[tokio::test]
    async fn waiting_for_a_position_not_yet_written_times_out() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let model = Arc::new(CredentialsModel::new());
        let (projections, _tasks) = Projections::start(store.clone(), vec![model]);
        assert!(!projections.wait_for(1, Duration::from_millis(50)).await);
    }
}
