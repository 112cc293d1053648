//! What every read model kept in Redis shares: its connections, its global
//! checkpoint and layout, the per-platform scripts that apply a batch, the
//! retries, and the sweep and rebuild after the server lost the model.
//!
//! A model named `N` keeps:
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `ibl:checkpoint:N` | string | the position of the last event every platform has applied: where the projector resumes |
//! | `ibl:layout:N` | string | the layout of the model's keys; another layout is refused at open |
//! | `<platform prefix>checkpoint:N` | string | the position of the last event applied to the platform's keys |
//!
//! A batch is turned by the model into operations grouped by platform
//! prefix (every key of a platform carries its hash tag, so a script
//! touches one Redis Cluster slot). Each platform's operations, in log
//! order, go to the model's apply script in runs of about `chunk`, cut
//! between two events: the script compares the platform's checkpoint,
//! applies only what is past it and moves it, in one atomic step. When
//! every platform's scripts have succeeded the global checkpoint moves to
//! the batch's last event. So a projector killed at any point resumes
//! without skipping or doubling an event.
//!
//! The apply script takes KEYS[1] the platform's checkpoint, ARGV[1] the
//! platform's prefix, ARGV[2] a parameter of the model, ARGV[3] the
//! position to move to, then each operation: its name, its position and
//! its arguments.
//!
//! While the projector catches up (the next batch is already read), a
//! model may take a batch "behind" ([`RedisModel::apply_behind`]): the
//! batch is planned on the projector's thread (its lookups written), and
//! its scripts run on a thread of their own, over a connection of their
//! own, while the projector reads, decodes and plans the next one. The
//! next batch, or [`RedisModel::settle`], waits for it first: at most one
//! batch is in flight, the scripts of two batches never interleave, and
//! the checkpoint (what the runtime publishes, and where it resumes) moves
//! only once the batch's scripts and its global checkpoint are written.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ibl_events::{Position, RecordedEvent};
use redis::{FromRedisValue, RedisError, RedisResult, Script, ScriptInvocation};
use tokio::sync::watch;

use crate::assertions::ReadError;
use crate::redis_link::{self, Reader, Servers, Writer};
use crate::Applied;

/// Moves KEYS[1] forward to ARGV[1] (never back); answers where it was.
static MOVE_CHECKPOINT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1])
end
return current
"#,
    )
});

/// The next [`RedisModel`]'s id.
static NEXT_MODEL: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// Each thread's connections for queries, by model id.
    static READERS: std::cell::RefCell<std::collections::HashMap<usize, Reader>> =
        std::cell::RefCell::default();
}

/// The largest offset or limit sent to a script (no list is longer).
pub(crate) const MAX_RANGE: usize = 1 << 40;

/// A name's part, percent-encoded so that it holds no `:` and no braces.
pub(crate) fn esc(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', ':', '{', '}']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Runs blocking work: on a multi-threaded runtime the worker's other
/// tasks move to another thread meanwhile.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

pub(crate) fn read_error(e: RedisError) -> ReadError {
    ReadError::new(format!("redis: {e}"))
}

/// A value the projector could not encode, as a Redis client error.
pub(crate) fn encode_error(what: &'static str, e: serde_json::Error) -> RedisError {
    RedisError::from((redis::ErrorKind::Client, what, e.to_string()))
}

/// The count a list script answers first.
pub(crate) fn list_count(reply: &mut impl Iterator<Item = String>) -> Result<usize, ReadError> {
    reply
        .next()
        .and_then(|c| c.parse::<usize>().ok())
        .ok_or_else(|| ReadError::new("a list's count is missing"))
}

/// At most this many of a long needle's trigrams are intersected (any of
/// them narrow the candidates; the recheck makes the answer exact).
pub(crate) const NEEDLE_GRAMS: usize = 16;

/// The grams whose postings a text holding `needle` (in lower case) is
/// in, percent-encoded: the needle itself up to 3 characters (exact), else
/// (up to [`NEEDLE_GRAMS`] of) its trigrams (candidates to recheck); and
/// whether the needle is one gram.
pub(crate) fn needle_grams(needle: &str) -> (Vec<String>, bool) {
    let at: Vec<usize> = needle
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(needle.len()))
        .collect();
    let chars = at.len() - 1;
    if chars <= 3 {
        return (vec![esc(needle).into_owned()], true);
    }
    let mut grams: Vec<String> = Vec::new();
    for start in 0..chars - 2 {
        let gram = esc(&needle[at[start]..at[start + 3]]).into_owned();
        if !grams.contains(&gram) {
            grams.push(gram);
        }
        if grams.len() == NEEDLE_GRAMS {
            break;
        }
    }
    (grams, false)
}

/// The grams of a text (in lower case) a search may look up: every run
/// of 1 to 3 characters, percent-encoded.
pub(crate) fn text_grams(text: &str) -> std::collections::BTreeSet<String> {
    let at: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let mut out = std::collections::BTreeSet::new();
    for start in 0..at.len() - 1 {
        for len in 1..=3 {
            if let Some(end) = at.get(start + len) {
                out.insert(esc(&text[at[start]..*end]).into_owned());
            }
        }
    }
    out
}

/// How far [`RedisModel::write`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    Done,
    /// Stopped after the scripts it was allowed (tests).
    Partly,
    /// The server had lost the model: nothing can be resumed.
    Lost,
}

/// One operation of a platform's script: its position and its arguments
/// (the operation's name first).
pub(crate) struct Op {
    pub position: Position,
    pub args: Vec<String>,
}

/// Each platform's operations, in log order, by the platform's prefix.
pub(crate) type Plan = BTreeMap<String, Vec<Op>>;

/// Cuts `ops` (in log order) into runs of about `size`, between events
/// unless `anywhere`.
fn chunks(ops: &[Op], size: usize, anywhere: bool) -> Vec<&[Op]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < ops.len() {
        let mut end = (start + size.max(1)).min(ops.len());
        while !anywhere && end < ops.len() && ops[end].position == ops[end - 1].position {
            end += 1;
        }
        out.push(&ops[start..end]);
        start = end;
    }
    out
}

/// A batch whose scripts run on another thread (see the module).
struct InFlight {
    last: Position,
    written: JoinHandle<Written>,
}

/// The connections and checkpoints of one read model in Redis.
pub(crate) struct RedisModel {
    name: &'static str,
    servers: Servers,
    /// The projector's connection (`None`: reconnect before the next use).
    writer: Mutex<Option<Writer>>,
    /// The connection of the scripts of batches in flight.
    behind: Arc<Mutex<Option<Writer>>>,
    in_flight: Mutex<Option<InFlight>>,
    /// The last position planned: the checkpoint, or past it by the batch
    /// in flight.
    planned: AtomicU64,
    /// Its key in each thread's [`READERS`].
    id: usize,
    checkpoint: AtomicU64,
    layout: String,
    /// The patterns of the model's keys, deleted after a loss.
    keys: &'static [&'static str],
    chunk: usize,
    /// Whether a script may apply part of an event's operations: the
    /// model's operations write state, not changes, and its script applies
    /// a run at or past its platform's checkpoint again.
    idempotent: bool,
}

impl RedisModel {
    /// Connects to `url` and reads where the model `name` is. Refuses a
    /// database whose keys have another layout than `layout`.
    pub async fn open(
        name: &'static str,
        url: &str,
        layout: String,
        keys: &'static [&'static str],
        chunk: usize,
    ) -> Result<Self, ReadError> {
        let servers = Servers::open(url).map_err(read_error)?;
        let mut reader = servers.reader().await.map_err(read_error)?;
        let writer = blocking(|| servers.writer()).map_err(read_error)?;
        let layout_key = format!("ibl:layout:{name}");
        // (Two keys of two slots: one command each.)
        redis::cmd("SET")
            .arg(&layout_key)
            .arg(&layout)
            .arg("NX")
            .query_async::<()>(&mut reader)
            .await
            .map_err(read_error)?;
        let stored: String = redis::cmd("GET")
            .arg(&layout_key)
            .query_async(&mut reader)
            .await
            .map_err(read_error)?;
        let checkpoint: Option<Position> = redis::cmd("GET")
            .arg(format!("ibl:checkpoint:{name}"))
            .query_async(&mut reader)
            .await
            .map_err(read_error)?;
        if stored != layout {
            return Err(ReadError::new(format!(
                "the Redis database holds the {name} read model in layout {stored:?}, this \
                 code's is {layout:?}: delete its keys ({}) to rebuild it",
                keys.join(", ")
            )));
        }
        Ok(Self {
            name,
            servers,
            writer: Mutex::new(Some(writer)),
            behind: Arc::new(Mutex::new(None)),
            in_flight: Mutex::new(None),
            planned: AtomicU64::new(checkpoint.unwrap_or(0)),
            id: NEXT_MODEL.fetch_add(1, Ordering::Relaxed),
            checkpoint: AtomicU64::new(checkpoint.unwrap_or(0)),
            layout,
            keys,
            chunk,
            idempotent: false,
        })
    }

    /// Marks the model's operations as idempotent (see `idempotent`).
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Moves where this process believes the model is, once it wrote the
    /// model whole up to `to` (see [`Self::clear`]).
    pub fn restored(&self, to: Position) {
        self.settle();
        self.moved(to);
    }

    /// The checkpoint moved to `to`, nothing in flight.
    fn moved(&self, to: Position) {
        self.checkpoint.store(to, Ordering::Release);
        self.planned.store(to, Ordering::Release);
    }

    fn global_checkpoint(&self) -> String {
        format!("ibl:checkpoint:{}", self.name)
    }

    pub fn checkpoint(&self) -> Position {
        self.checkpoint.load(Ordering::Acquire)
    }

    /// Where this process believes the model is (the tests rewind it, as a
    /// process that read an older checkpoint would).
    #[cfg(test)]
    pub fn set_checkpoint(&self, to: Position) {
        self.moved(to);
    }

    /// This thread's connection for the model's queries, connected at its
    /// first use: each worker of a server (a runtime of its own) talks to
    /// Redis from its own thread, with no wake-up of another thread in a
    /// round trip.
    pub async fn reader(&self) -> Result<Reader, ReadError> {
        if let Some(con) = READERS.with(|r| r.borrow().get(&self.id).cloned()) {
            return Ok(con);
        }
        let con = self.servers.reader().await.map_err(read_error)?;
        READERS.with(|r| r.borrow_mut().insert(self.id, con.clone()));
        Ok(con)
    }

    /// A query's failure: a broken connection of this thread is dropped,
    /// for the next query to connect again. Answers whether it was broken.
    pub fn failed(&self, e: &RedisError) -> bool {
        let broken = e.is_unrecoverable_error() || e.is_connection_dropped() || e.is_io_error();
        if broken {
            READERS.with(|r| r.borrow_mut().remove(&self.id));
        }
        broken
    }

    /// Runs a command of a query on this thread's connection. A connection
    /// found broken (the server restarted since this thread last asked) is
    /// replaced and the query sent once more: queries only read.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, ReadError> {
        let mut con = self.reader().await?;
        match cmd.query_async(&mut con).await {
            Ok(v) => Ok(v),
            Err(e) if self.failed(&e) => {
                let mut con = self.reader().await?;
                cmd.query_async(&mut con).await.map_err(|e| {
                    self.failed(&e);
                    read_error(e)
                })
            }
            Err(e) => Err(read_error(e)),
        }
    }

    /// Runs a script of a query on this thread's connection (a broken
    /// connection replaced once, as [`Self::query`] does).
    pub async fn invoke<T: FromRedisValue>(
        &self,
        call: &ScriptInvocation<'_>,
    ) -> Result<T, ReadError> {
        let mut con = self.reader().await?;
        match call.invoke_async(&mut con).await {
            Ok(v) => Ok(v),
            Err(e) if self.failed(&e) => {
                let mut con = self.reader().await?;
                call.invoke_async(&mut con).await.map_err(|e| {
                    self.failed(&e);
                    read_error(e)
                })
            }
            Err(e) => Err(read_error(e)),
        }
    }

    /// The digest of the model's keys, sorted, each with its type and
    /// content (hash fields and set members sorted, sorted sets in their
    /// order with their scores), less its checkpoints and what a query
    /// writes for a while (scratch keys, kept searches). Unlike the
    /// models' in memory, positions are in it (the assertions' scores and
    /// blocks are positions): compare models of one store.
    pub fn digest(&self) -> Result<String, String> {
        if self.settle() == Applied::Rewound {
            return Err(format!("{} lost what it held", self.name));
        }
        let mut keys = Vec::new();
        self.with_writer(|con| {
            for pattern in self.keys {
                keys.extend(redis_link::keys_matching(con, pattern)?);
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        keys.retain(|k| {
            !(k.contains(":checkpoint:") || k.ends_with(":scratch") || k.contains(":found:"))
        });
        keys.sort();
        keys.dedup();
        let text = |bytes: Vec<u8>| {
            String::from_utf8(bytes).unwrap_or_else(|e| format!("0x{}", hex::encode(e.as_bytes())))
        };
        let mut rows = crate::replay::Rows::new();
        for key in keys {
            let row = self
                .with_writer(|con| {
                    let kind: String = redis::cmd("TYPE").arg(&key).query(con)?;
                    let content: Vec<String> = match kind.as_str() {
                        "string" => vec![text(redis::cmd("GET").arg(&key).query(con)?)],
                        "hash" => {
                            let mut fields: Vec<(Vec<u8>, Vec<u8>)> =
                                redis::cmd("HGETALL").arg(&key).query(con)?;
                            fields.sort();
                            fields
                                .into_iter()
                                .flat_map(|(f, v)| [text(f), text(v)])
                                .collect()
                        }
                        "set" => {
                            let mut members: Vec<Vec<u8>> =
                                redis::cmd("SMEMBERS").arg(&key).query(con)?;
                            members.sort();
                            members.into_iter().map(text).collect()
                        }
                        "zset" => {
                            let members: Vec<(Vec<u8>, String)> = redis::cmd("ZRANGE")
                                .arg(&key)
                                .arg(0)
                                .arg(-1)
                                .arg("WITHSCORES")
                                .query(con)?;
                            members
                                .into_iter()
                                .flat_map(|(m, score)| [text(m), score])
                                .collect()
                        }
                        "list" => redis::cmd("LRANGE")
                            .arg(&key)
                            .arg(0)
                            .arg(-1)
                            .query::<Vec<Vec<u8>>>(con)?
                            .into_iter()
                            .map(text)
                            .collect(),
                        // Gone since the scan (a key that expires).
                        _ => Vec::new(),
                    };
                    Ok((key.clone(), kind, content))
                })
                .map_err(|e| e.to_string())?;
            rows.row(&row)?;
        }
        Ok(rows.finish())
    }

    /// Runs `f` on the projector's connection, connecting first if needed;
    /// a failure drops the connection.
    pub fn with_writer<T>(&self, f: impl FnOnce(&mut Writer) -> RedisResult<T>) -> RedisResult<T> {
        with_connection(&self.writer, &self.servers, f)
    }

    /// Follows the model as another process writes it: its global
    /// checkpoint, read every `every`, as a watch (what a read with
    /// `X-Min-Position` waits on). A failed read keeps the last position
    /// (queries answer 503 meanwhile). The task stops when the model or
    /// every receiver is dropped.
    pub fn follow(self: &Arc<Self>, every: Duration) -> watch::Receiver<Position> {
        let (tx, rx) = watch::channel(self.checkpoint());
        let model = Arc::downgrade(self);
        let key = self.global_checkpoint();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                let Some(model) = model.upgrade().filter(|_| !tx.is_closed()) else {
                    return;
                };
                let read = model
                    .query::<Option<Position>>(redis::cmd("GET").arg(&key))
                    .await;
                match read {
                    Ok(position) => {
                        failing = false;
                        let position = position.unwrap_or(0);
                        tx.send_if_modified(|p| std::mem::replace(p, position) != position);
                    }
                    Err(error) => {
                        if !failing {
                            tracing::warn!(
                                model = model.name, %error,
                                "cannot read a Redis read model's checkpoint"
                            );
                        }
                        failing = true;
                    }
                }
            }
        });
        rx
    }

    /// Writes a batch ending at `last` onto the model at `from`: `plan`'s
    /// operations (it may first write lookups outside the platforms), each
    /// platform's scripts, then the global checkpoint. With `scripts`,
    /// stops after that many scripts (a crash, for the tests): when they
    /// are all the batch's, before the global checkpoint. Answers
    /// [`Written::Lost`] when the server's global checkpoint was found
    /// behind `from`, before or after the batch: it lost what it held (it
    /// came back empty, or from an older dump).
    pub fn write(
        &self,
        script: &Script,
        param: &str,
        plan: impl FnOnce(&mut Writer) -> RedisResult<Plan>,
        from: Position,
        last: Position,
        scripts: Option<usize>,
    ) -> RedisResult<Written> {
        let run = self.run(script, param, from, last);
        self.with_writer(|con| {
            if run.lost(con)? {
                return Ok(Written::Lost);
            }
            let ops = plan(con)?;
            run.execute(con, &ops, scripts)
        })
    }

    /// What running a batch's scripts needs (see [`Run::execute`]).
    fn run<'s>(&self, script: &'s Script, param: &str, from: Position, last: Position) -> Run<'s> {
        Run {
            name: self.name,
            script,
            param: param.to_owned(),
            global: self.global_checkpoint(),
            chunk: self.chunk,
            idempotent: self.idempotent,
            from,
            last,
        }
    }

    /// Applies the events of `batch` past the checkpoint, written by
    /// `write` (given the events, the checkpoint and the last position);
    /// retries with a backoff from 50 ms to 5 s until Redis takes them
    /// (every step is idempotent), and rebuilds after a loss. A batch in
    /// flight is settled first.
    pub fn apply(
        &self,
        batch: &[RecordedEvent],
        write: impl Fn(&[&RecordedEvent], Position, Position) -> RedisResult<Written>,
    ) -> Applied {
        if self.settle() == Applied::Rewound {
            return Applied::Rewound;
        }
        let checkpoint = self.checkpoint();
        let events: Vec<&RecordedEvent> =
            batch.iter().filter(|e| e.position > checkpoint).collect();
        let Some(last) = events.last().map(|e| e.position) else {
            return Applied::Done;
        };
        blocking(|| {
            match retrying(self.name, last, || write(&events, checkpoint, last)) {
                // (Without a limit, a write is never partial.)
                Written::Done | Written::Partly => {
                    self.moved(last);
                    Applied::Done
                }
                Written::Lost => self.rebuild(checkpoint),
            }
        })
    }

    /// Applies the events of `batch` past what was planned, as
    /// [`Self::apply`] does, but leaves its scripts running on another
    /// thread (see the module): `plan` (retried until it succeeds) turns
    /// the events into operations, then the batch in flight is settled and
    /// this one takes its place. Its checkpoint moves when it is settled.
    pub fn apply_behind(
        &self,
        batch: &[RecordedEvent],
        script: &'static Script,
        param: &str,
        plan: impl Fn(&mut Writer, &[&RecordedEvent]) -> RedisResult<Plan>,
    ) -> Applied {
        let from = self.planned.load(Ordering::Acquire);
        let events: Vec<&RecordedEvent> = batch.iter().filter(|e| e.position > from).collect();
        let Some(last) = events.last().map(|e| e.position) else {
            return Applied::Done;
        };
        blocking(|| {
            let ops = retrying(self.name, last, || {
                self.with_writer(|con| plan(con, &events))
            });
            if self.settle() == Applied::Rewound {
                return Applied::Rewound;
            }
            let run = self.run(script, param, from, last);
            let (con, servers) = (self.behind.clone(), self.servers.clone());
            let written = std::thread::Builder::new()
                .name(format!("redis-{}", self.name))
                .spawn(move || {
                    retrying(run.name, last, || {
                        with_connection(&con, &servers, |con| {
                            if run.lost(con)? {
                                return Ok(Written::Lost);
                            }
                            run.execute(con, &ops, None)
                        })
                    })
                })
                .expect("a thread for a Redis read model's scripts");
            self.planned.store(last, Ordering::Release);
            *self.in_flight.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(InFlight { last, written });
            Applied::Done
        })
    }

    /// Clears the model and writes a model kept in memory whole: `whole`
    /// writes it (with [`Self::write`] from 0) and answers the position it
    /// is at; retried with a backoff until Redis takes it. No replay of the
    /// log.
    pub fn replace(&self, mut whole: impl FnMut() -> RedisResult<(Position, Written)>) {
        let mut delay = Duration::from_millis(50);
        loop {
            match self.clear().and_then(|()| whole()) {
                Ok((at, Written::Done | Written::Partly)) => {
                    self.restored(at);
                    return;
                }
                Ok((_, Written::Lost)) => {}
                Err(error) => {
                    tracing::warn!(
                        model = self.name, %error,
                        "a Redis read model could not be written whole; retrying"
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Waits for the batch in flight, if any: its checkpoint moves, or the
    /// model is rebuilt when the server had lost it.
    pub fn settle(&self) -> Applied {
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(InFlight { last, written }) = in_flight else {
            return Applied::Done;
        };
        match blocking(|| written.join()) {
            Ok(Written::Done | Written::Partly) => {
                self.moved(last);
                Applied::Done
            }
            Ok(Written::Lost) => blocking(|| self.rebuild(self.checkpoint())),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Compares the server's global checkpoint with this model's: behind,
    /// the server lost the model, which is cleared and rebuilt. A server
    /// that cannot be reached is left to the next batch.
    pub fn verify(&self) -> Applied {
        if self.settle() == Applied::Rewound {
            return Applied::Rewound;
        }
        let ours = self.checkpoint();
        let global = self.global_checkpoint();
        let stored = blocking(|| {
            self.with_writer(|con| {
                redis::cmd("GET")
                    .arg(&global)
                    .query::<Option<Position>>(con)
            })
        });
        match stored {
            Ok(stored) if stored.unwrap_or(0) < ours => blocking(|| self.rebuild(ours)),
            _ => Applied::Done,
        }
    }

    /// After a loss: clears the model (retrying until it can) and goes
    /// back to position 0.
    fn rebuild(&self, checkpoint: Position) -> Applied {
        tracing::warn!(
            model = self.name,
            position = checkpoint,
            "the Redis server lost a read model (its checkpoint is behind this projector's): \
             rebuilding it from the log"
        );
        let mut delay = Duration::from_millis(50);
        while let Err(error) = self.clear() {
            tracing::warn!(model = self.name, %error, "a Redis read model could not be cleared; retrying");
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        self.moved(0);
        Applied::Rewound
    }

    /// Deletes every key of the model (a server that lost part of them:
    /// what is left cannot be resumed from) and writes the layout again.
    pub fn clear(&self) -> RedisResult<()> {
        self.with_writer(|con| {
            for pattern in self.keys {
                redis_link::unlink_matching(con, pattern)?;
            }
            redis::cmd("DEL")
                .arg(self.global_checkpoint())
                .query::<()>(con)?;
            redis::cmd("SET")
                .arg(format!("ibl:layout:{}", self.name))
                .arg(&self.layout)
                .arg("NX")
                .query::<()>(con)
        })
    }
}

/// Runs `f` on the connection in `slot`, connecting first if needed; a
/// failure drops the connection (the next use reconnects).
fn with_connection<T>(
    slot: &Mutex<Option<Writer>>,
    servers: &Servers,
    f: impl FnOnce(&mut Writer) -> RedisResult<T>,
) -> RedisResult<T> {
    let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    let con = match guard.as_mut() {
        Some(con) => con,
        None => guard.insert(servers.writer()?),
    };
    let result = f(con);
    if result.is_err() {
        *guard = None;
    }
    result
}

/// Retries `write` with a backoff from 50 ms to 5 s until Redis takes it.
fn retrying<T>(model: &str, last: Position, mut write: impl FnMut() -> RedisResult<T>) -> T {
    let mut delay = Duration::from_millis(50);
    loop {
        match write() {
            Ok(done) => return done,
            Err(error) => {
                tracing::warn!(
                    model, %error, position = last,
                    "a Redis read model could not apply a batch; retrying"
                );
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The scripts of a batch from `from` to `last`, and its global
/// checkpoint.
struct Run<'s> {
    name: &'static str,
    script: &'s Script,
    param: String,
    global: String,
    chunk: usize,
    idempotent: bool,
    from: Position,
    last: Position,
}

impl Run<'_> {
    /// Whether the server's global checkpoint is behind the batch's start:
    /// it lost the model.
    fn lost(&self, con: &mut Writer) -> RedisResult<bool> {
        let stored: Option<Position> = redis::cmd("GET").arg(&self.global).query(con)?;
        Ok(stored.unwrap_or(0) < self.from)
    }

    /// Each platform's scripts, then the global checkpoint (see
    /// [`RedisModel::write`]).
    fn execute(
        &self,
        con: &mut Writer,
        ops: &Plan,
        scripts: Option<usize>,
    ) -> RedisResult<Written> {
        let mut left = scripts;
        for (pfx, ops) in ops {
            let checkpoint = format!("{pfx}checkpoint:{}", self.name);
            for chunk in chunks(ops, self.chunk, self.idempotent) {
                if left == Some(0) {
                    return Ok(Written::Partly);
                }
                let upto = chunk.last().map_or(0, |op| op.position);
                let mut call = self.script.prepare_invoke();
                call.key(&checkpoint).arg(pfx).arg(&self.param).arg(upto);
                for op in chunk {
                    call.arg(&op.args[0]).arg(op.position).arg(&op.args[1..]);
                }
                call.invoke::<i64>(con)?;
                left = left.map(|n| n - 1);
            }
        }
        if left == Some(0) {
            return Ok(Written::Partly); // the crash before the global checkpoint
        }
        let before: Position = MOVE_CHECKPOINT
            .key(&self.global)
            .arg(self.last)
            .invoke(con)?;
        Ok(if before < self.from {
            Written::Lost
        } else {
            Written::Done
        })
    }
}
