//! Dropping the last handle stops and joins the workers (alone in its process, so
//! that no other test's threads are counted).

use std::sync::Arc;

use flint_sandbox::{Host, HostRequest, HostResponse, Invocation, Limits, LogLevel, Sandbox};
use serde_json::json;

struct NoHost;
impl Host for NoHost {
    fn request(&self, _r: HostRequest) -> HostResponse {
        HostResponse {
            status: 204,
            body: None,
        }
    }
    fn log(&self, _l: LogLevel, _m: &str) {}
}

#[cfg(target_os = "linux")]
fn sandbox_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("flint-sandbox"))
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn dropping_the_last_handle_joins_the_workers() {
    assert_eq!(sandbox_threads(), 0);
    let sb = Sandbox::new(Limits {
        workers: 3,
        ..Limits::default()
    });
    let clone = sb.clone();
    let script = sb
        .compile("t.js", "exports.handler = async () => 1")
        .unwrap();
    assert_eq!(
        clone.run(&script, Invocation::new(json!({}), Arc::new(NoHost))),
        Ok(Some(json!(1)))
    );
    assert_eq!(sandbox_threads(), 3);
    drop(sb);
    assert_eq!(sandbox_threads(), 3, "a clone still holds the pool");
    drop(clone);
    assert_eq!(sandbox_threads(), 0);
    // The script outlives the sandbox and still works in a new one.
    let sb = Sandbox::new(Limits::default());
    assert_eq!(
        sb.run(&script, Invocation::new(json!({}), Arc::new(NoHost))),
        Ok(Some(json!(1)))
    );
}
