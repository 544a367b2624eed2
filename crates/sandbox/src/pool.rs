//! The worker pool: threads owning one engine each, and a bounded queue.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::engine::Engine;
use crate::{compile, CompileError, Invocation, Limits, RunError, Script};

/// How often a caller whose invocation is still queued checks its deadline and
/// cancellation.
const QUEUED_POLL: Duration = Duration::from_millis(20);

/// Counters of a [`Sandbox`], for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Invocations finished since the sandbox was created (any outcome).
    pub invocations: u64,
    /// Invocations running now.
    pub running: usize,
    /// Invocations waiting in the queue now.
    pub queued: usize,
    /// Invocations refused with [`RunError::Busy`].
    pub rejected: u64,
    /// Runtimes discarded and rebuilt (after running out of memory, a panic, …).
    pub runtimes_replaced: u64,
}

type Reply = Result<Option<serde_json::Value>, RunError>;

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;

struct Job {
    script: Arc<Script>,
    invocation: Invocation,
    reply: mpsc::SyncSender<Reply>,
    state: Arc<AtomicU8>,
}

struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
    shutdown: bool,
}

struct Shared {
    limits: Limits,
    /// Worker threads, joined when the sandbox is dropped (a worker that must retire its
    /// thread adds its replacement here).
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    spawned: AtomicUsize,
    queue: Mutex<Queue>,
    wake: Condvar,
    invocations: AtomicU64,
    running: AtomicUsize,
    rejected: AtomicU64,
    replaced: AtomicU64,
}

struct Inner {
    shared: Arc<Shared>,
}

/// A pool of QuickJS workers. Cheap to clone (an `Arc` inside), `Send + Sync`;
/// dropping the last handle stops and joins the workers.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("limits", &self.inner.shared.limits)
            .field("stats", &self.stats())
            .finish()
    }
}

fn native_stack(limits: &Limits) -> usize {
    limits.max_stack_bytes.saturating_mul(2) + 4 * 1024 * 1024
}

impl Sandbox {
    /// Starts `limits.workers` worker threads (at least one).
    pub fn new(limits: Limits) -> Sandbox {
        let mut limits = limits;
        limits.workers = limits.workers.max(1);
        let shared = Arc::new(Shared {
            limits,
            threads: Mutex::new(Vec::new()),
            spawned: AtomicUsize::new(0),
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                idle: 0,
                shutdown: false,
            }),
            wake: Condvar::new(),
            invocations: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
        });
        for _ in 0..shared.limits.workers {
            if !spawn_worker(&shared) {
                break;
            }
        }
        Sandbox {
            inner: Arc::new(Inner { shared }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.shared.limits
    }

    /// Checks and compiles `code` once (syntax, shape, presence of a handler) to
    /// QuickJS bytecode that every worker can run many times without parsing again.
    /// `name` appears in stack traces and logs.
    ///
    /// Runs on a short-lived thread of its own (with a stack large enough for the
    /// parser); the script's top-level code is run once there, with no host.
    pub fn compile(&self, name: &str, code: &str) -> Result<Arc<Script>, CompileError> {
        let limits = self.inner.shared.limits.clone();
        let name = name.to_string();
        let code = code.to_string();
        let handle = thread::Builder::new()
            .name("flint-sandbox-compile".into())
            .stack_size(native_stack(&limits))
            .spawn(move || compile::compile(&limits, &name, &code))
            .map_err(|e| CompileError {
                line: None,
                column: None,
                message: format!("cannot start the compiler thread: {e}"),
            })?;
        match handle.join() {
            Ok(result) => result.map(Arc::new),
            Err(panic) => Err(CompileError {
                line: None,
                column: None,
                message: format!("the compiler failed: {}", panic_message(&*panic)),
            }),
        }
    }

    /// Runs the script's handler once, blocking the calling thread until it ends.
    /// `Ok(None)` means the handler resolved to `undefined`.
    pub fn run(&self, script: &Arc<Script>, invocation: Invocation) -> Reply {
        let shared = &self.inner.shared;
        let deadline = invocation.deadline;
        let cancelled = invocation.cancelled.clone();
        if matches!(deadline, Some(d) if Instant::now() >= d) {
            return Err(RunError::Timeout);
        }
        if matches!(&cancelled, Some(c) if c()) {
            return Err(RunError::Cancelled);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let state = Arc::new(AtomicU8::new(QUEUED));
        {
            let mut q = shared.queue.lock();
            if q.shutdown {
                return Err(RunError::Internal("the sandbox is shutting down".into()));
            }
            if q.jobs.len() >= shared.limits.queue + q.idle {
                drop(q);
                shared.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(RunError::Busy);
            }
            q.jobs.push_back(Job {
                script: script.clone(),
                invocation,
                reply: tx,
                state: state.clone(),
            });
        }
        shared.wake.notify_one();

        loop {
            let wait = match deadline {
                Some(d) if state.load(Ordering::Acquire) == QUEUED => {
                    QUEUED_POLL.min(d.saturating_duration_since(Instant::now()))
                }
                _ if cancelled.is_some() => QUEUED_POLL,
                _ => Duration::from_secs(3600),
            };
            match rx.recv_timeout(wait) {
                Ok(reply) => return reply,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(RunError::Internal("the worker went away".into()))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Only a job still waiting in the queue is given up here; a started
                    // one is stopped by its worker's interrupt handler.
                    let verdict = if matches!(deadline, Some(d) if Instant::now() >= d) {
                        Some(RunError::Timeout)
                    } else if matches!(&cancelled, Some(c) if c()) {
                        Some(RunError::Cancelled)
                    } else {
                        None
                    };
                    if let Some(err) = verdict {
                        if state
                            .compare_exchange(
                                QUEUED,
                                ABANDONED,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            )
                            .is_ok()
                        {
                            let mut q = shared.queue.lock();
                            q.jobs.retain(|j| !Arc::ptr_eq(&j.state, &state));
                            return Err(err);
                        }
                    }
                }
            }
        }
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let shared = &self.inner.shared;
        Stats {
            invocations: shared.invocations.load(Ordering::Relaxed),
            running: shared.running.load(Ordering::Relaxed),
            queued: shared.queue.lock().jobs.len(),
            rejected: shared.rejected.load(Ordering::Relaxed),
            runtimes_replaced: shared.replaced.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        {
            let mut q = self.shared.queue.lock();
            q.shutdown = true;
        }
        self.shared.wake.notify_all();
        let me = thread::current().id();
        let handles: Vec<_> = self.shared.threads.lock().drain(..).collect();
        for handle in handles {
            // A host object dropped on a worker could hold the last handle.
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}

/// Starts one worker; false when the system refuses a thread (the invocations that find no
/// worker then end at their deadline).
fn spawn_worker(shared: &Arc<Shared>) -> bool {
    let stack = native_stack(&shared.limits);
    let index = shared.spawned.fetch_add(1, Ordering::Relaxed);
    let for_thread = shared.clone();
    let spawned = thread::Builder::new()
        .name(format!("flint-sandbox-{index}"))
        .stack_size(stack)
        .spawn(move || worker(for_thread));
    match spawned {
        Ok(handle) => {
            shared.threads.lock().push(handle);
            true
        }
        Err(_) => false,
    }
}

thread_local! {
    /// Whether this worker thread was moved to the idle scheduling class.
    static DEMOTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Moves the calling worker thread to Linux' idle scheduling class: it then runs only
/// when no ordinary thread wants the CPU, and any waking thread preempts it at once
/// (niceness alone does not: a woken request handler may wait out the script's slice).
/// Called by the interrupt handler once an invocation's JavaScript has run for a while.
#[cfg(target_os = "linux")]
pub(crate) fn demote() {
    if DEMOTED.with(|d| d.replace(true)) {
        return;
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain syscall on the calling thread (pid 0).
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn demote() {}

/// Back to the ordinary class at the workers' niceness; false when the system refuses
/// (leaving the idle class needs `CAP_SYS_NICE` or a `RLIMIT_NICE` allowing the niceness).
#[cfg(target_os = "linux")]
fn restore(niceness: i32) -> bool {
    if !DEMOTED.with(|d| d.replace(false)) {
        return true;
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain syscall on the calling thread (pid 0).
    let ok = unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) } == 0;
    if ok {
        lower_priority(niceness);
    }
    ok
}

#[cfg(not(target_os = "linux"))]
fn restore(_niceness: i32) -> bool {
    true
}

#[cfg(target_os = "linux")]
fn lower_priority(niceness: i32) {
    if niceness == 0 {
        return;
    }
    // SAFETY: plain syscalls on the calling thread. On Linux, PRIO_PROCESS with a
    // thread id sets that thread's niceness only.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        *libc::__errno_location() = 0;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        if current < niceness {
            libc::setpriority(libc::PRIO_PROCESS, tid, niceness);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_niceness: i32) {}

fn worker(shared: Arc<Shared>) {
    lower_priority(shared.limits.niceness);
    let mut engine: Option<Engine> = None;
    loop {
        let job = {
            let mut q = shared.queue.lock();
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break Some(job);
                }
                if q.shutdown {
                    break None;
                }
                q.idle += 1;
                shared.wake.wait(&mut q);
                q.idle -= 1;
            }
        };
        let Some(job) = job else { return };
        if job
            .state
            .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue; // abandoned by its caller
        }
        shared.running.fetch_add(1, Ordering::Relaxed);
        let reply = run_job(&shared, &mut engine, &job);
        shared.running.fetch_sub(1, Ordering::Relaxed);
        shared.invocations.fetch_add(1, Ordering::Relaxed);
        let _ = job.reply.send(reply);
        // The invocation (and its host) is dropped here, after the reply.
        drop(job);
        // A thread that cannot leave the idle class gives its place to a fresh one (and
        // keeps serving, slowly, when no thread can be had).
        if !restore(shared.limits.niceness) && spawn_worker(&shared) {
            return;
        }
    }
}

fn run_job(shared: &Shared, slot: &mut Option<Engine>, job: &Job) -> Reply {
    if slot.is_none() {
        match catch_unwind(AssertUnwindSafe(|| Engine::new(&shared.limits))) {
            Ok(Ok(e)) => *slot = Some(e),
            Ok(Err(msg)) => return Err(RunError::Internal(msg)),
            Err(panic) => return Err(RunError::Internal(panic_message(&*panic))),
        }
    }
    let Some(engine) = slot.as_mut() else {
        return Err(RunError::Internal("no JavaScript runtime".into()));
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        engine.run(&job.script, &job.invocation)
    }));
    match outcome {
        Ok(reply) => {
            if !engine.usable() {
                *slot = None;
                shared.replaced.fetch_add(1, Ordering::Relaxed);
            }
            reply
        }
        Err(panic) => {
            // The runtime may be in any state: leak it rather than run QuickJS'
            // teardown assertions on it.
            if let Some(e) = slot.take() {
                std::mem::forget(e);
            }
            shared.replaced.fetch_add(1, Ordering::Relaxed);
            Err(RunError::Internal(format!(
                "the worker panicked: {}",
                panic_message(&*panic)
            )))
        }
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}
