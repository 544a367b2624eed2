//! Where the request core's blocking work runs, so that none of it waits on a thread of the
//! async runtime: quick interactions (read, vread, single writes) on the runtime's blocking
//! pool, bounded by a count of requests in flight; costly ones (searches, history, Bundles,
//! operations, conditional writes) on a small pool of threads of their own, run at a lower
//! scheduling priority so that they cannot starve quick requests of the CPU, with a bounded
//! queue. When a lane is full the request is refused at once with `503` and `Retry-After`
//! rather than queued without bound.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll, Wake, Waker};

use flint_fhir::{Error, IssueType, Result};
use tokio::sync::{oneshot, Semaphore};

/// How many requests may run or wait in each lane.
#[derive(Clone, Debug)]
pub struct LaneLimits {
    /// Quick requests in flight at once.
    pub quick_in_flight: usize,
    /// Threads of the costly lane.
    pub costly_threads: usize,
    /// Costly requests waiting for a thread; more are refused with 503.
    pub costly_queue: usize,
    /// The niceness of the costly lane's threads (0 keeps the normal priority).
    pub costly_niceness: i32,
}

impl Default for LaneLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        LaneLimits {
            quick_in_flight: 1024,
            costly_threads: cores.max(2),
            costly_queue: 64,
            costly_niceness: 8,
        }
    }
}

type Task = Box<dyn FnOnce() + Send>;

/// The two lanes.
pub struct Lanes {
    limits: LaneLimits,
    quick: Arc<Semaphore>,
    /// Costly requests running or waiting: the lane's threads plus its queue.
    costly_slots: Arc<Semaphore>,
    /// Started on first use, from inside the runtime whose context its threads enter.
    costly: OnceLock<mpsc::Sender<Task>>,
}

/// The answer when a lane is full.
pub fn busy(what: &str) -> Error {
    Error::new(
        IssueType::Transient,
        format!("the server is busy ({what}); try again shortly"),
    )
    .with_status(503)
}

impl Lanes {
    pub fn new(limits: LaneLimits) -> Lanes {
        Lanes {
            quick: Arc::new(Semaphore::new(limits.quick_in_flight.max(1))),
            costly_slots: Arc::new(Semaphore::new(
                limits.costly_threads.max(1) + limits.costly_queue,
            )),
            limits,
            costly: OnceLock::new(),
        }
    }

    pub fn limits(&self) -> &LaneLimits {
        &self.limits
    }

    /// How many quick requests run now, and how many costly ones run or wait.
    pub fn in_use(&self) -> (usize, usize) {
        let quick = self.limits.quick_in_flight.max(1);
        let costly = self.limits.costly_threads.max(1) + self.limits.costly_queue;
        (
            quick.saturating_sub(self.quick.available_permits()),
            costly.saturating_sub(self.costly_slots.available_permits()),
        )
    }

    /// Runs `work` in its lane and waits for it without holding a runtime thread.
    ///
    /// # Errors
    /// 503 when the lane is full; 500 when `work` panicked; otherwise `work`'s own result.
    pub async fn run<T, F>(&self, costly: bool, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        if costly {
            self.run_costly(work).await
        } else {
            let permit = Arc::clone(&self.quick)
                .try_acquire_owned()
                .map_err(|_| busy("too many requests in flight"))?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                work()
            })
            .await
            .unwrap_or_else(|e| Err(Error::internal(format!("a request failed: {e}"))))
        }
    }

    async fn run_costly<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let slot = Arc::clone(&self.costly_slots)
            .try_acquire_owned()
            .map_err(|_| busy("too many costly requests (searches, history, Bundles) waiting"))?;
        let sender = self.costly.get_or_init(|| self.start_costly());
        let (tx, rx) = oneshot::channel();
        let task: Task = Box::new(move || {
            let _slot = slot;
            let outcome = catch_unwind(AssertUnwindSafe(work))
                .unwrap_or_else(|_| Err(Error::internal("a request handler panicked")));
            let _ = tx.send(outcome);
        });
        sender
            .send(task)
            .map_err(|_| Error::internal("the costly lane has stopped"))?;
        rx.await
            .unwrap_or_else(|_| Err(Error::internal("a costly request was dropped")))
    }

    fn start_costly(&self) -> mpsc::Sender<Task> {
        // Unbounded: the slots bound what is sent.
        let (sender, receiver) = mpsc::channel::<Task>();
        let receiver = Arc::new(parking_lot::Mutex::new(receiver));
        let runtime = tokio::runtime::Handle::try_current().ok();
        for i in 0..self.limits.costly_threads.max(1) {
            let receiver = Arc::clone(&receiver);
            let runtime = runtime.clone();
            let niceness = self.limits.costly_niceness;
            let spawned = std::thread::Builder::new()
                .name(format!("flint-costly-{i}"))
                .spawn(move || {
                    // Inside the runtime's context, so that work may spawn tasks and use timers.
                    let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
                    lower_priority(niceness);
                    loop {
                        let next = receiver.lock().recv();
                        match next {
                            Ok(task) => task(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a thread of the costly lane");
            }
        }
        sender
    }
}

/// Lowers the calling thread's scheduling priority (Linux: niceness is per thread).
fn lower_priority(niceness: i32) {
    #[cfg(target_os = "linux")]
    if niceness > 0 {
        // SAFETY: setpriority only reads its arguments; `0` names the calling thread.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, niceness);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = niceness;
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on the calling (blocking) thread: for the store's write
/// futures, which complete when the writer thread commits and need no runtime to be driven.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn full_lanes_refuse_with_503() {
        let lanes = Arc::new(Lanes::new(LaneLimits {
            quick_in_flight: 1,
            costly_threads: 1,
            costly_queue: 1,
            costly_niceness: 0,
        }));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = Arc::new(parking_lot::Mutex::new(hold));
        let (started, running) = std::sync::mpsc::channel::<()>();
        let held = |hold: Arc<parking_lot::Mutex<std::sync::mpsc::Receiver<()>>>,
                    started: std::sync::mpsc::Sender<()>| {
            move || {
                let _ = started.send(());
                let _ = hold.lock().recv();
                Ok(1)
            }
        };
        // One costly request runs on the lane's one thread...
        let (l, work) = (Arc::clone(&lanes), held(Arc::clone(&hold), started.clone()));
        let first = tokio::spawn(async move { l.run(true, work).await });
        tokio::task::yield_now().await;
        running.recv().unwrap();
        // ...one waits in the queue (a current-thread runtime polls it up to its wait)...
        let (l, work) = (Arc::clone(&lanes), held(Arc::clone(&hold), started));
        let second = tokio::spawn(async move { l.run(true, work).await });
        tokio::task::yield_now().await;
        // ...and a third is refused at once.
        let refused = lanes.run(true, || Ok(0)).await.unwrap_err();
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.code(), IssueType::Transient);
        release.send(()).unwrap();
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(second.await.unwrap().unwrap(), 1);
        let panicked = lanes.run(false, || -> Result<()> { panic!("boom") }).await;
        assert_eq!(panicked.unwrap_err().status(), 500);
        assert_eq!(block_on(async { 7 }), 7);
    }
}
