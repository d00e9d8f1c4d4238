//! Group commit for sled. sled 0.34's `flush_async` deadlocks when several callers await it
//! at once (sled issue #1308), so no caller ever uses it: every [`Flusher::flush`] asks one
//! dedicated thread to run the synchronous `flush()`, and that thread wakes every caller whose
//! request came before the flush began. One disk sync then covers a whole burst of writes, and
//! an acknowledged write is still durable.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::StoreError;

pub(super) struct Flusher {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    requests: Mutex<Requests>,
    wake: Condvar,
    /// The last finished flush; callers wait until it covers their ticket.
    done: watch::Sender<Round>,
}

#[derive(Default)]
struct Requests {
    /// Tickets handed out so far; ticket `n` is covered by any flush that starts after it.
    issued: u64,
    stop: bool,
}

#[derive(Clone, Default)]
struct Round {
    /// Every ticket up to this one was issued before this flush began.
    covered: u64,
    error: Option<String>,
}

impl Flusher {
    pub(super) fn start(db: sled::Db) -> Self {
        let shared = Arc::new(Shared {
            requests: Mutex::default(),
            wake: Condvar::new(),
            done: watch::Sender::new(Round::default()),
        });
        let thread = std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn({
                let shared = shared.clone();
                move || flush_loop(&shared, &db)
            })
            .expect("the store's flusher thread starts");
        Self {
            shared,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Returns once every write made before the call is on disk.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let mut done = self.shared.done.subscribe();
        let ticket = {
            let mut requests = self.shared.lock();
            requests.issued += 1;
            requests.issued
        };
        self.shared.wake.notify_one();
        let round = done
            .wait_for(|round| round.covered >= ticket)
            .await
            .map_err(|_| StoreError::Closed)?
            .clone();
        match round.error {
            None => Ok(()),
            Some(error) => Err(StoreError::Flush(error)),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Requests> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn flush_loop(shared: &Shared, db: &sled::Db) {
    let mut covered = 0;
    loop {
        let target = {
            let mut requests = shared.lock();
            while requests.issued == covered && !requests.stop {
                requests = shared
                    .wake
                    .wait(requests)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if requests.issued == covered {
                return;
            }
            requests.issued
        };
        let error = db.flush().err().map(|error| error.to_string());
        if let Some(error) = &error {
            tracing::error!(%error, "flushing the store failed");
        }
        covered = target;
        shared.done.send_replace(Round { covered, error });
    }
}

impl Drop for Flusher {
    /// Finishes outstanding flushes and lets go of the database, so it can be reopened.
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}
