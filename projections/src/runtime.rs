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
    fn apply(&self, batch: &[RecordedEvent]);
}

/// The projectors of one process and how far they have got.
#[derive(Clone)]
pub struct Projections {
    progress: Vec<watch::Receiver<Position>>,
}

const BATCH: usize = 2048;

impl Projections {
    /// Starts one projector task per model, each following the store from the
    /// model's own checkpoint.
    pub fn start(
        store: Arc<dyn EventStore>,
        models: Vec<Arc<dyn ReadModel>>,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let mut progress = Vec::new();
        let mut tasks = Vec::new();
        for model in models {
            let (tx, rx) = watch::channel(model.checkpoint());
            progress.push(rx);
            tasks.push(tokio::spawn(run(store.clone(), model, tx)));
        }
        (Self { progress }, tasks)
    }

    /// The lowest position every model has reached.
    pub fn position(&self) -> Position {
        self.progress.iter().map(|p| *p.borrow()).min().unwrap_or(0)
    }

    /// Waits until every model has applied `position`. Returns false on
    /// timeout.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> bool {
        let all = async {
            for rx in &self.progress {
                let mut rx = rx.clone();
                if rx.wait_for(|p| *p >= position).await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, all).await.unwrap_or(false)
    }

    /// Waits until every model has caught up with the store's head as it is
    /// now (used at start-up, before the service answers `/healthz`).
    pub async fn catch_up(&self, store: &dyn EventStore) -> bool {
        let head = *store.head().borrow();
        self.wait_for(head, Duration::from_secs(3600)).await
    }
}

async fn run(store: Arc<dyn EventStore>, model: Arc<dyn ReadModel>, tx: watch::Sender<Position>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut sub = Subscription::new(store.clone(), model.checkpoint());
        let err: StoreError = loop {
            match sub.next_batch(BATCH).await {
                Ok(batch) => {
                    model.apply(&batch);
                    backoff = Duration::from_millis(50);
                    tx.send_replace(model.checkpoint());
                }
                Err(e) => break e,
            }
        };
        if tx.is_closed() {
            return;
        }
        tracing::warn!(model = model.name(), error = %err, "projector stopped; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
