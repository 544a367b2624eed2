//! The server the tests talk to over HTTP, on a free loopback port with a temporary data
//! directory: in this process by default ([`Server::start`]: the router and the request core
//! over the backend under test, no process start per test), or the real `flint` binary for
//! what only a process shows (the command line, configuration, SIGKILL, restarts).
//!
//! The backend is chosen here, once: the embedded store always; a second backend (PostgreSQL,
//! selected by an environment URL) will run the same tests by opening its store in
//! [`Backend::open`].

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use flint_engine::{Engine, Limits};
use flint_store_sqlite::SqliteStore;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;

/// The store the in-process server runs on.
pub struct Backend;

impl Backend {
    pub fn open(dir: &Path) -> SqliteStore {
        SqliteStore::open(dir).expect("open the store")
    }
}

/// A server running inside the test process.
struct InProcess {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct Server {
    child: Option<Child>,
    in_process: Option<InProcess>,
    /// The engine of an in-process server (for test hooks).
    pub engine: Option<Arc<Engine<SqliteStore>>>,
    /// `http://127.0.0.1:PORT/fhir`
    pub base: String,
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
    pub client: Client,
}

pub fn flint() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flint"))
}

impl Server {
    /// An in-process server with the default limits.
    pub fn start() -> Server {
        Server::start_limited(Limits::default())
    }

    /// An in-process server with these engine limits.
    pub fn start_limited(limits: Limits) -> Server {
        Server::start_serving(limits, flint_http::ServeLimits::default())
    }

    /// An in-process server with these engine and connection limits.
    pub fn start_serving(limits: Limits, serve_limits: flint_http::ServeLimits) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let store = Backend::open(&data);
        // Exports go with the server's directory.
        let mut limits = limits;
        limits.export_dir = Some(dir.path().join("exports"));
        let engine = Engine::with(
            store.clone(),
            limits,
            Box::new(flint_engine::paging::SystemClock),
        );
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::clone(&engine);
        let flushed = Arc::clone(&engine);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                served.start().await.expect("start the engine");
                let app = flint_http::router(served, flint_http::HttpConfig::default());
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let _ = ready_tx.send(listener.local_addr().expect("address"));
                let shutdown = async move {
                    let _ = shutdown_rx.await;
                };
                let _ = flint_http::serve(listener, app, serve_limits, shutdown).await;
            });
            flushed.flush_audit();
            store.close();
        });
        let address = ready_rx.recv().expect("the server starts");
        Server {
            child: None,
            in_process: Some(InProcess {
                shutdown: Some(shutdown_tx),
                thread: Some(thread),
            }),
            engine: Some(engine),
            base: format!("http://{address}/fhir"),
            data_dir: data,
            _dir: Some(dir),
            client: Client::builder().no_gzip().build().expect("client"),
        }
    }

    /// Starts the binary with extra command-line arguments and environment variables.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let mut s = Server::start_in(&data, args, env);
        s._dir = Some(dir);
        s
    }

    /// Starts the binary on an existing data directory (which outlives the server).
    pub fn start_in(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = flint();
        cmd.args(["serve", "--port", "0", "--data-dir"])
            .arg(data_dir)
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env("FLINT_LOG__LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start flint");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("Flint listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        let client = Client::builder().no_gzip().build().expect("client");
        Server {
            child: Some(child),
            in_process: None,
            engine: None,
            base,
            data_dir: data_dir.to_path_buf(),
            _dir: None,
            client,
        }
    }

    /// Sends raw bytes on a new connection and returns everything the server writes back
    /// until it closes the connection (for what HTTP clients refuse to send).
    pub fn raw(&self, request: &[u8]) -> String {
        use std::io::{Read, Write};
        let address = self.base.trim_start_matches("http://");
        let address = address.split('/').next().unwrap_or(address);
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream.write_all(request).expect("send");
        // Bounded: a server that never closes fails the read with a timeout.
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .expect("read timeout");
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .expect("the server closes the connection");
        String::from_utf8_lossy(&answer).into_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .expect("POST")
    }

    pub fn put(&self, path: &str, body: &Value) -> Response {
        self.client
            .put(self.url(path))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .expect("PUT")
    }

    /// Creates a resource and returns its id.
    pub fn create(&self, body: &Value) -> String {
        let rt = body["resourceType"].as_str().expect("resourceType");
        let r = self.post(rt, body);
        assert_eq!(r.status(), 201, "create {rt}");
        let v: Value = r.json().expect("json");
        v["id"].as_str().expect("id").to_string()
    }

    /// How many versions the server wrote on its own when it started: the definitions of
    /// its operations, published as OperationDefinition resources.
    pub fn published(&self) -> u64 {
        let h: Value = self
            .get("OperationDefinition/_history")
            .send()
            .expect("history")
            .json()
            .expect("json");
        h["total"].as_u64().expect("total")
    }

    /// Kills the server process with SIGKILL: no shutdown code runs.
    pub fn kill(mut self) -> PathBuf {
        let mut child = self.child.take().expect("kill() needs a server process");
        let _ = child.kill();
        let _ = child.wait();
        self.data_dir.clone()
    }

    /// The in-process server's engine.
    pub fn engine(&self) -> &Arc<Engine<SqliteStore>> {
        self.engine.as_ref().expect("an in-process server")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.in_process.take();
    }
}

/// Asserts an OperationOutcome response with this status and returns it.
pub fn outcome(r: Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    assert!(ct.starts_with("application/fhir+json"), "content type {ct}");
    let v: Value = r.json().expect("an OperationOutcome body");
    assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
    assert!(v["issue"][0]["code"].is_string(), "{v}");
    v
}

/// Whether any issue names this expression.
pub fn has_expression(oo: &Value, expression: &str) -> bool {
    oo["issue"].as_array().into_iter().flatten().any(|i| {
        i["expression"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e.as_str() == Some(expression))
    })
}

/// Holds every search that reaches the hook until released (or until its own interrupt is
/// due), counting how many are held.
#[derive(Clone, Default)]
pub struct Gate {
    state: Arc<(std::sync::Mutex<(usize, bool)>, std::sync::Condvar)>,
    pub cancelled: Arc<std::sync::atomic::AtomicUsize>,
}

impl Gate {
    pub fn hook(&self) -> flint_engine::SearchHook {
        let gate = self.clone();
        Arc::new(move |interrupt| {
            let (lock, cv) = &*gate.state;
            let mut s = lock.lock().unwrap();
            s.0 += 1;
            cv.notify_all();
            while !s.1 {
                if interrupt.is_cancelled() {
                    gate.cancelled
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    cv.notify_all();
                    return interrupt.check();
                }
                s = cv
                    .wait_timeout(s, std::time::Duration::from_millis(5))
                    .unwrap()
                    .0;
            }
            Ok(())
        })
    }

    /// Waits until `n` searches are held (bounded, so that a bug fails instead of hanging).
    pub fn wait_held(&self, n: usize) {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while s.0 < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{n} searches never arrived"
            );
            s = cv
                .wait_timeout(s, std::time::Duration::from_millis(20))
                .unwrap()
                .0;
        }
    }

    pub fn release(&self) {
        let (lock, cv) = &*self.state;
        lock.lock().unwrap().1 = true;
        cv.notify_all();
    }
}
