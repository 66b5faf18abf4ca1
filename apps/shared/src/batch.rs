//! One statement for many concurrent requests: batching across requests.
//!
//! Under load, many requests run the same small statement at the same moment: a driver session by
//! its token, a driver with a vehicle, a quote insert. PostgreSQL charges each statement a fixed
//! price (a round trip and the wake-ups on both sides, a snapshot, executor start-up, a commit)
//! well above its work per row. A [`Batcher`] runs such a statement for every request waiting as
//! one statement over arrays.
//!
//! It never waits to fill a batch. At most `concurrency` batches run at a time (the setting
//! `database.batch_concurrency`, 1 by default, per query and process): a request that
//! finds a slot free is run at once, alone, so an idle server answers as fast as without it; while
//! every slot is busy, requests queue, and the next slot to free up takes all of them (up to
//! `max_batch`). The batch size follows the load.
//!
//! A batch runs in a task of its own, on a pooled connection outside any transaction, so a caller
//! that goes away (a dropped HTTP request) abandons only its own answer. A batch that fails is run
//! again one input at a time on the same connection, so an input the database refuses fails its
//! own caller with its own error and nobody else's. Queries batched here must therefore be safe
//! to run twice: reads, and inserts that are all-or-nothing in one statement.

use crate::db::DbPool;
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use std::any::{Any, TypeId};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Semaphore, oneshot};

/// What [`BatchQuery::run`] returns: one output per input, in the inputs' order.
pub type BatchFuture<'a, O> = Pin<Box<dyn Future<Output = QueryResult<Vec<O>>> + Send + 'a>>;

/// A statement that answers many independent inputs at once.
pub trait BatchQuery: Default + Send + Sync + 'static {
    /// One caller's input.
    type Input: Send + Sync + 'static;
    /// One caller's answer.
    type Output: Send + 'static;
    /// A short name, for errors.
    const NAME: &'static str;
    /// Runs the statement for `inputs` (never empty) and answers one output per input, in the
    /// inputs' order.
    fn run<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        inputs: &'a [Self::Input],
    ) -> BatchFuture<'a, Self::Output>;
}

/// Why a batched call has no answer.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// No connection could be had.
    #[error("{query}: database pool: {message}")]
    Pool {
        /// The query's name.
        query: &'static str,
        /// The pool's error.
        message: String,
    },
    /// The database refused the statement for this input.
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    /// The query answered a different number of outputs than it was given inputs.
    #[error("{query}: {outputs} answers for {inputs} inputs")]
    Miscounted {
        /// The query's name.
        query: &'static str,
        /// How many inputs it was given.
        inputs: usize,
        /// How many outputs it answered.
        outputs: usize,
    },
    /// The batch's task ended without answering (its runtime is shutting down).
    #[error("{0}: the batch ended without an answer")]
    Abandoned(&'static str),
}

impl BatchError {
    /// The database's error, when it refused the statement.
    pub fn database(&self) -> Option<&diesel::result::Error> {
        match self {
            BatchError::Query(e) => Some(e),
            _ => None,
        }
    }
}

/// The most inputs in one batch.
pub const DEFAULT_MAX_BATCH: usize = 64;

struct Pending<Q: BatchQuery> {
    input: Q::Input,
    reply: oneshot::Sender<Result<Q::Output, BatchError>>,
}

struct Inner<Q: BatchQuery> {
    query: Q,
    pool: DbPool,
    queue: Mutex<VecDeque<Pending<Q>>>,
    slots: Arc<Semaphore>,
    max_batch: usize,
    calls: AtomicU64,
    batches: AtomicU64,
    largest: AtomicU64,
}

/// What a [`Batcher`] has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    /// Inputs run.
    pub calls: u64,
    /// Statements they were run in (not counting the reruns of a failed batch).
    pub batches: u64,
    /// The most inputs in one batch.
    pub largest: u64,
}

/// Runs one [`BatchQuery`] for concurrent callers (see the module's documentation).
pub struct Batcher<Q: BatchQuery> {
    inner: Arc<Inner<Q>>,
}

impl<Q: BatchQuery> Batcher<Q> {
    /// A batcher on `pool` running at most `concurrency` batches of at most `max_batch` inputs
    /// at a time (both at least one).
    pub fn new(pool: DbPool, concurrency: usize, max_batch: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                query: Q::default(),
                pool,
                queue: Mutex::new(VecDeque::new()),
                slots: Arc::new(Semaphore::new(concurrency.max(1))),
                max_batch: max_batch.max(1),
                calls: AtomicU64::new(0),
                batches: AtomicU64::new(0),
                largest: AtomicU64::new(0),
            }),
        }
    }

    /// Runs the query for `input`, in a batch with whatever other inputs are waiting.
    pub async fn call(&self, input: Q::Input) -> Result<Q::Output, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.inner.queue().push_back(Pending { input, reply });
        Inner::dispatch(&self.inner);
        answer.await.unwrap_or(Err(BatchError::Abandoned(Q::NAME)))
    }

    /// What it has done so far.
    pub fn stats(&self) -> BatchStats {
        BatchStats {
            calls: self.inner.calls.load(Ordering::Relaxed),
            batches: self.inner.batches.load(Ordering::Relaxed),
            largest: self.inner.largest.load(Ordering::Relaxed),
        }
    }
}

impl<Q: BatchQuery> Inner<Q> {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Pending<Q>>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a batch in every free slot while inputs wait. Called after an input is queued and
    /// after a batch ends: an input queued while every slot was taken is seen by the batch that
    /// frees the next slot (it is queued before its caller tries for a slot, and the slot is
    /// released before that batch looks at the queue).
    fn dispatch(this: &Arc<Self>) {
        loop {
            let Ok(slot) = Arc::clone(&this.slots).try_acquire_owned() else {
                return;
            };
            let batch: Vec<Pending<Q>> = {
                let mut queue = this.queue();
                let n = queue.len().min(this.max_batch);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                return;
            }
            let size = batch.len() as u64;
            this.calls.fetch_add(size, Ordering::Relaxed);
            this.batches.fetch_add(1, Ordering::Relaxed);
            this.largest.fetch_max(size, Ordering::Relaxed);
            let inner = Arc::clone(this);
            tokio::spawn(async move {
                inner.execute(batch).await;
                drop(slot);
                Inner::dispatch(&inner);
            });
        }
    }

    async fn execute(&self, batch: Vec<Pending<Q>>) {
        let (inputs, replies): (Vec<Q::Input>, Vec<_>) =
            batch.into_iter().map(|p| (p.input, p.reply)).unzip();
        let mut conn = match self.pool.get().await {
            Ok(conn) => conn,
            Err(e) => {
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(BatchError::Pool {
                        query: Q::NAME,
                        message: message.clone(),
                    }));
                }
                return;
            }
        };
        match self.query.run(&mut conn, &inputs).await {
            Ok(outputs) if outputs.len() == inputs.len() => {
                for (reply, output) in replies.into_iter().zip(outputs) {
                    let _ = reply.send(Ok(output));
                }
            }
            Ok(outputs) => {
                let (inputs, outputs) = (inputs.len(), outputs.len());
                for reply in replies {
                    let _ = reply.send(Err(BatchError::Miscounted {
                        query: Q::NAME,
                        inputs,
                        outputs,
                    }));
                }
            }
            Err(e) if inputs.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(BatchError::Query(e)));
                }
            }
            Err(_) => {
                // Someone's input was refused: each on its own, for its own answer.
                for (input, reply) in inputs.iter().zip(replies) {
                    let answer = match self.query.run(&mut conn, std::slice::from_ref(input)).await
                    {
                        Ok(mut outputs) if outputs.len() == 1 => {
                            outputs.pop().ok_or(BatchError::Abandoned(Q::NAME))
                        }
                        Ok(outputs) => Err(BatchError::Miscounted {
                            query: Q::NAME,
                            inputs: 1,
                            outputs: outputs.len(),
                        }),
                        Err(e) => Err(BatchError::Query(e)),
                    };
                    let _ = reply.send(answer);
                }
            }
        }
    }
}

/// A process's batchers, one per query type, made on first use (held by [`crate::core::Core`]).
#[derive(Clone, Default)]
pub struct Batchers {
    made: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl Batchers {
    /// The batcher of `Q` on `pool`, made the first time with `concurrency` and `max_batch`.
    pub fn get<Q: BatchQuery>(
        &self,
        pool: &DbPool,
        concurrency: usize,
        max_batch: usize,
    ) -> Arc<Batcher<Q>> {
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        let entry = made
            .entry(TypeId::of::<Q>())
            .or_insert_with(|| Arc::new(Batcher::<Q>::new(pool.clone(), concurrency, max_batch)));
        match Arc::clone(entry).downcast::<Batcher<Q>>() {
            Ok(batcher) => batcher,
            // Unreachable: the entry for `TypeId::of::<Q>()` is always a `Batcher<Q>`.
            Err(_) => Arc::new(Batcher::new(pool.clone(), concurrency, max_batch)),
        }
    }
}

impl std::fmt::Debug for Batchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batchers").finish_non_exhaustive()
    }
}
