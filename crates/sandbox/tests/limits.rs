//! Limits, pooling and recovery, through the public API.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use flint_sandbox::{
    Host, HostRequest, HostResponse, Invocation, Limits, LogLevel, RunError, Sandbox, Shape,
};
use serde_json::{json, Value};

/// A host whose requests sleep for `delay` and may panic.
struct SlowHost {
    delay: Duration,
    panic: bool,
    niceness: Mutex<Option<i32>>,
    calls: AtomicUsize,
}

impl SlowHost {
    fn new(delay: Duration) -> Arc<SlowHost> {
        Arc::new(SlowHost {
            delay,
            panic: false,
            niceness: Mutex::new(None),
            calls: AtomicUsize::new(0),
        })
    }
}

impl Host for SlowHost {
    fn request(&self, request: HostRequest) -> HostResponse {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.panic {
            panic!("host exploded");
        }
        #[cfg(target_os = "linux")]
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            *self.niceness.lock().unwrap() = Some(libc::getpriority(libc::PRIO_PROCESS, tid));
        }
        thread::sleep(self.delay);
        HostResponse {
            status: 200,
            body: Some(json!({"resourceType": "Patient", "id": "1", "url": request.url})),
        }
    }

    fn log(&self, _level: LogLevel, _message: &str) {}
}

fn limits() -> Limits {
    Limits {
        workers: 1,
        max_execution: Duration::from_millis(200),
        max_memory_bytes: 16 * 1024 * 1024,
        ..Limits::default()
    }
}

fn host() -> Arc<dyn Host> {
    SlowHost::new(Duration::ZERO)
}

fn run(sb: &Sandbox, code: &str) -> (Result<Option<Value>, RunError>, Duration) {
    let script = sb
        .compile("limits.js", code)
        .unwrap_or_else(|e| panic!("{code}: {e}"));
    let started = Instant::now();
    let result = sb.run(&script, Invocation::new(json!({"n": 1}), host()));
    (result, started.elapsed())
}

/// The sandbox still answers a normal invocation correctly.
fn still_healthy(sb: &Sandbox) {
    let (result, _) = run(sb, "exports.handler = async (c, e) => { const p = await c.readResource('Patient', '1'); return { n: e.n + 1, id: p.id } }");
    assert_eq!(result, Ok(Some(json!({"n": 2, "id": "1"}))));
}

#[test]
fn endless_loops_hit_the_time_limit() {
    let sb = Sandbox::new(limits());
    for code in [
        "exports.handler = async () => { while (true) {} }",
        "exports.handler = () => { for (;;) { try {} catch (e) {} } }",
        "exports.handler = () => { for (;;) { try { null.x } catch (e) {} } }",
        "exports.handler = () => { for (;;) { try { while (true) {} } catch (e) {} finally { continue } } }",
        "exports.handler = async () => { for (;;) { await null; } }",
        "exports.handler = async () => { const spin = () => { Promise.resolve().then(spin) }; spin(); await new Promise(() => {}); }",
        "export async function handler() { let i = 0; while (true) { i = (i + 1) % 7; } }",
        "(resource, context) => { while (true) {} }",
        "exports.handler = () => { /(a+)+$/.test('a'.repeat(40) + 'b'); }",
    ] {
        let (result, took) = run(&sb, code);
        assert_eq!(
            result,
            Err(RunError::TimeLimit { limit: Duration::from_millis(200) }),
            "{code}"
        );
        assert!(took < Duration::from_millis(1000), "{code} took {took:?}");
        still_healthy(&sb);
    }
    let e = RunError::TimeLimit {
        limit: Duration::from_millis(200),
    };
    assert_eq!(
        e.to_string(),
        "the script ran longer than its limit of 200 ms"
    );
}

#[test]
fn memory_bombs_hit_the_memory_limit() {
    let sb = Sandbox::new(limits());
    for code in [
        "exports.handler = () => { let a = []; for (;;) a.push(new Array(1e6).fill(0)); }",
        "exports.handler = () => { let a = []; for (;;) a.push(new Array(1e6)); }",
        "exports.handler = () => { let s = 'x'; for (;;) s += s; }",
        "exports.handler = async () => { let a = []; for (;;) { a.push({ x: Math.random(), y: [1, 2, 3] }); } }",
        "exports.handler = () => 'x'.repeat(1 << 29)",
        "exports.handler = () => { const b = []; for (;;) b.push(new ArrayBuffer(1 << 20)); }",
    ] {
        let (result, took) = run(&sb, code);
        assert!(
            matches!(result, Err(RunError::MemoryLimit { limit_bytes }) if limit_bytes == 16 << 20),
            "{code}: {result:?}"
        );
        assert!(took < Duration::from_secs(2), "{code} took {took:?}");
        still_healthy(&sb);
    }
    let before = sb.stats().runtimes_replaced;
    assert!(
        before >= 6,
        "each memory failure replaces the runtime ({before})"
    );
}

#[test]
fn deep_recursion_is_a_stack_overflow() {
    let sb = Sandbox::new(limits());
    for code in [
        "exports.handler = () => { function f() { return f() + 1 } return f() }",
        "exports.handler = async () => { const f = async (n) => 1 + await f(n + 1); return f(0) }",
        "exports.handler = () => { const o = {}; o.toString = () => `${o}`; return `${o}` }",
        "exports.handler = () => JSON.parse('['.repeat(200000) + ']'.repeat(200000))",
        "exports.handler = () => { let a = []; for (let i = 0; i < 50000; i++) a = [a]; return JSON.stringify(a).length }",
        "exports.handler = () => { const p = new Proxy({}, { get: (t, k, r) => r[k] }); return p.x }",
    ] {
        let (result, _) = run(&sb, code);
        assert_eq!(result, Err(RunError::StackOverflow), "{code}");
        still_healthy(&sb);
    }
}

#[test]
fn a_promise_that_never_settles_is_reported() {
    let sb = Sandbox::new(limits());
    for code in [
        "exports.handler = () => new Promise(() => {})",
        "exports.handler = async () => { await new Promise(() => {}); return 1 }",
        "export async function handler() { return new Promise((resolve) => { globalThis.r = resolve }) }",
    ] {
        let (result, took) = run(&sb, code);
        assert_eq!(result, Err(RunError::NeverSettled), "{code}");
        assert!(took < Duration::from_millis(150), "{code} took {took:?}");
        still_healthy(&sb);
    }
    // Top-level await that never settles in a module.
    let err = sb
        .compile(
            "t.js",
            "await new Promise(() => {});\nexport async function handler() {}",
        )
        .unwrap_err();
    assert!(err.message.contains("never settled"), "{err}");
}

#[test]
fn deadline_includes_host_time_but_the_time_limit_does_not() {
    let sb = Sandbox::new(limits());
    // Host calls of 120 ms each add up to 600 ms, far over max_execution (200 ms) — fine.
    let script = sb
        .compile("t.js", "exports.handler = async (c) => { for (let i = 0; i < 5; i++) await c.readResource('Patient', String(i)); return 'ok' }")
        .unwrap();
    let slow = SlowHost::new(Duration::from_millis(120));
    let result = sb.run(&script, Invocation::new(json!({}), slow.clone()));
    assert_eq!(result, Ok(Some(json!("ok"))));

    // The same with a 300 ms deadline: Timeout, soon after the deadline.
    let mut inv = Invocation::new(json!({}), slow.clone());
    inv.deadline = Some(Instant::now() + Duration::from_millis(300));
    let started = Instant::now();
    let result = sb.run(&script, inv);
    assert_eq!(result, Err(RunError::Timeout));
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );

    // A deadline on pure JavaScript work.
    let script = sb
        .compile("t.js", "exports.handler = () => { while (true) {} }")
        .unwrap();
    let sb_long = Sandbox::new(Limits {
        max_execution: Duration::from_secs(10),
        ..limits()
    });
    let script_long = sb_long
        .compile("t.js", "exports.handler = () => { while (true) {} }")
        .unwrap();
    let mut inv = Invocation::new(json!({}), host());
    inv.deadline = Some(Instant::now() + Duration::from_millis(150));
    let started = Instant::now();
    assert_eq!(sb_long.run(&script_long, inv), Err(RunError::Timeout));
    assert!(started.elapsed() < Duration::from_millis(1000));

    // A deadline already past.
    let mut inv = Invocation::new(json!({}), host());
    inv.deadline = Some(Instant::now());
    assert_eq!(sb.run(&script, inv), Err(RunError::Timeout));
    still_healthy(&sb);
}

#[test]
fn cancellation_stops_a_running_script() {
    let sb = Sandbox::new(Limits {
        max_execution: Duration::from_secs(10),
        ..limits()
    });
    let script = sb
        .compile("t.js", "exports.handler = () => { for (;;) {} }")
        .unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let mut inv = Invocation::new(json!({}), host());
    inv.cancelled = Some(Arc::new(move || f.load(Ordering::SeqCst)));
    let setter = {
        let flag = flag.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            flag.store(true, Ordering::SeqCst);
        })
    };
    let started = Instant::now();
    assert_eq!(sb.run(&script, inv), Err(RunError::Cancelled));
    assert!(started.elapsed() < Duration::from_millis(1000));
    setter.join().unwrap();
    still_healthy(&sb);
}

#[test]
fn a_full_queue_answers_busy_and_queued_jobs_time_out() {
    let sb = Sandbox::new(Limits {
        workers: 1,
        queue: 1,
        max_execution: Duration::from_secs(5),
        ..limits()
    });
    let script = sb
        .compile("t.js", "exports.handler = async (c) => { await c.readResource('Patient', '1'); return 'slow' }")
        .unwrap();
    let slow = SlowHost::new(Duration::from_millis(400));
    let first = {
        let (sb, script, slow) = (sb.clone(), script.clone(), slow.clone());
        thread::spawn(move || sb.run(&script, Invocation::new(json!({}), slow)))
    };
    while slow.calls.load(Ordering::SeqCst) == 0 {
        thread::sleep(Duration::from_millis(5));
    }
    let second = {
        let (sb, script, slow) = (sb.clone(), script.clone(), slow.clone());
        thread::spawn(move || sb.run(&script, Invocation::new(json!({}), slow)))
    };
    while sb.stats().queued == 0 {
        thread::sleep(Duration::from_millis(2));
    }
    let started = Instant::now();
    assert_eq!(
        sb.run(&script, Invocation::new(json!({}), host())),
        Err(RunError::Busy)
    );
    assert!(started.elapsed() < Duration::from_millis(50));
    assert_eq!(first.join().unwrap(), Ok(Some(json!("slow"))));
    assert_eq!(second.join().unwrap(), Ok(Some(json!("slow"))));

    // A queued invocation whose deadline passes while it waits gives up at once.
    let blocker = {
        let (sb, script, slow) = (sb.clone(), script.clone(), slow.clone());
        thread::spawn(move || sb.run(&script, Invocation::new(json!({}), slow)))
    };
    while sb.stats().running == 0 {
        thread::sleep(Duration::from_millis(2));
    }
    let mut inv = Invocation::new(json!({}), host());
    inv.deadline = Some(Instant::now() + Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(sb.run(&script, inv), Err(RunError::Timeout));
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(blocker.join().unwrap(), Ok(Some(json!("slow"))));
    let stats = sb.stats();
    assert_eq!(stats.rejected, 1);
    assert_eq!(stats.queued, 0);
    assert_eq!(stats.running, 0);
}

#[test]
fn two_workers_run_in_parallel() {
    let sb = Sandbox::new(Limits {
        workers: 2,
        ..limits()
    });
    let script = sb
        .compile(
            "t.js",
            "exports.handler = async (c) => { await c.readResource('Patient', '1'); return 1 }",
        )
        .unwrap();
    let slow = SlowHost::new(Duration::from_millis(300));
    let started = Instant::now();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (sb, script, slow) = (sb.clone(), script.clone(), slow.clone());
            thread::spawn(move || sb.run(&script, Invocation::new(json!({}), slow)))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Ok(Some(json!(1))));
    }
    assert!(
        started.elapsed() < Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_panicking_host_does_not_lose_the_answer() {
    let sb = Sandbox::new(limits());
    let script = sb
        .compile("t.js", "exports.handler = async (c) => { try { await c.readResource('Patient', '1') } catch (e) { return 'caught' } }")
        .unwrap();
    let bad = Arc::new(SlowHost {
        delay: Duration::ZERO,
        panic: true,
        niceness: Mutex::new(None),
        calls: AtomicUsize::new(0),
    });
    match sb.run(&script, Invocation::new(json!({}), bad)) {
        Err(RunError::Internal(m)) => assert!(m.contains("host exploded"), "{m}"),
        other => panic!("{other:?}"),
    }
    still_healthy(&sb);
    assert!(sb.stats().runtimes_replaced >= 1);
}

#[cfg(target_os = "linux")]
#[test]
fn workers_run_at_lower_priority() {
    let sb = Sandbox::new(Limits {
        workers: 2,
        niceness: 7,
        ..limits()
    });
    let script = sb
        .compile(
            "t.js",
            "exports.handler = (c) => c.readResource('Patient', '1')",
        )
        .unwrap();
    let h = SlowHost::new(Duration::ZERO);
    sb.run(&script, Invocation::new(json!({}), h.clone()))
        .unwrap();
    let nice = h.niceness.lock().unwrap().expect("host ran");
    assert!(nice >= 7, "worker niceness {nice}");
}

#[test]
fn stats_count_invocations() {
    let sb = Sandbox::new(limits());
    let script = sb
        .compile("t.js", "module.exports = async () => 1")
        .unwrap();
    assert_eq!(script.shape(), Shape::Handler);
    for _ in 0..5 {
        sb.run(&script, Invocation::new(json!({}), host())).unwrap();
    }
    let s = sb.stats();
    assert_eq!(s.invocations, 5);
    assert_eq!((s.running, s.queued), (0, 0));
}

#[test]
fn heavy_logging_is_capped() {
    struct Counter(AtomicUsize);
    impl Host for Counter {
        fn request(&self, _r: HostRequest) -> HostResponse {
            HostResponse {
                status: 204,
                body: None,
            }
        }
        fn log(&self, _l: LogLevel, _m: &str) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    // Not about time: a generous limit, so a slow debug build under load still finishes.
    let sb = Sandbox::new(Limits {
        max_execution: Duration::from_secs(20),
        ..limits()
    });
    let script = sb
        .compile("t.js", "exports.handler = () => { for (let i = 0; i < 100000; i++) console.log('line', i); return 1 }")
        .unwrap();
    let c = Arc::new(Counter(AtomicUsize::new(0)));
    assert_eq!(
        sb.run(&script, Invocation::new(json!({}), c.clone())),
        Ok(Some(json!(1)))
    );
    let n = c.0.load(Ordering::SeqCst);
    assert!(n <= 1001, "{n} lines");
}

/// A script that runs for a while yields the CPU: its worker moves to the idle scheduling
/// class, and the next invocation runs in the ordinary class again.
#[cfg(target_os = "linux")]
#[test]
fn a_long_running_script_yields_the_cpu() {
    struct Policy(Mutex<Vec<i32>>);
    impl Host for Policy {
        fn request(&self, _r: HostRequest) -> HostResponse {
            // SAFETY: a query about the calling thread.
            let policy = unsafe { libc::sched_getscheduler(0) };
            self.0.lock().unwrap().push(policy);
            HostResponse {
                status: 200,
                body: Some(json!({"resourceType": "Patient", "id": "1"})),
            }
        }
        fn log(&self, _l: LogLevel, _m: &str) {}
    }
    let sb = Sandbox::new(Limits {
        max_execution: Duration::from_secs(20),
        ..limits()
    });
    let slow = sb
        .compile("slow.js", "exports.handler = async (c) => { const end = Date.now() + 120; while (Date.now() < end) {} await c.readResource('Patient', '1'); return 1 }")
        .unwrap();
    let quick = sb
        .compile(
            "quick.js",
            "exports.handler = async (c) => { await c.readResource('Patient', '1'); return 2 }",
        )
        .unwrap();
    let host = Arc::new(Policy(Mutex::new(Vec::new())));
    assert_eq!(
        sb.run(&slow, Invocation::new(json!({}), host.clone())),
        Ok(Some(json!(1)))
    );
    assert_eq!(
        sb.run(&quick, Invocation::new(json!({}), host.clone())),
        Ok(Some(json!(2)))
    );
    assert_eq!(
        *host.0.lock().unwrap(),
        vec![libc::SCHED_IDLE, libc::SCHED_OTHER]
    );
}
