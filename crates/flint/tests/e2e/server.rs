//! Starts the real `flint` binary on a free loopback port with a temporary data directory,
//! and talks to it over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;

pub struct Server {
    child: Child,
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
    pub fn start() -> Server {
        Server::start_with(&[], &[])
    }

    /// Starts with extra command-line arguments and environment variables.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let mut s = Server::start_in(&data, args, env);
        s._dir = Some(dir);
        s
    }

    /// Starts on an existing data directory (which outlives the server).
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
            child,
            base,
            data_dir: data_dir.to_path_buf(),
            _dir: None,
            client,
        }
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

    /// Kills the server with SIGKILL: no shutdown code runs.
    pub fn kill(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.data_dir.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
