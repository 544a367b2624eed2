//! The configuration: one struct with its defaults in one place, read from a TOML file and
//! overridden by `FLINT_...` environment variables, with unknown keys and bad values refused.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The documented default configuration, printed by `flint config`.
pub const EXAMPLE: &str = include_str!("../flint.example.toml");

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub storage: Storage,
    pub search: Search,
    pub history: History,
    pub apps: Apps,
    pub log: Log,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub context_path: String,
    pub base_url: String,
    pub max_body_bytes: usize,
    /// How long a request run in the background (`$reindex`, `Prefer: respond-async`) is
    /// waited for before the answer is `202 Accepted` with a status URL.
    pub async_budget_ms: u64,
    /// How long the result of an asynchronous request stays at its status URL once it
    /// ended, in hours.
    pub async_results_kept_hours: u64,
    /// The name this node holds background jobs' leases under; empty means the host's name.
    /// Nodes sharing one store need distinct names.
    pub node_id: String,
    /// How long a client may take to send a request's headers, and its body.
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    /// Quick requests (reads, single writes) in flight at once; more get 503.
    pub max_requests_in_flight: usize,
    /// Threads for costly requests (searches, history, Bundles, operations); 0 picks the
    /// number of cores.
    pub costly_threads: usize,
    /// Costly requests waiting for a thread; more get 503 with Retry-After.
    pub costly_queue: usize,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Search {
    /// How long one search (or history page) may run before it stops with an
    /// OperationOutcome.
    pub timeout_ms: u64,
    /// The same for a search run in the background (`Prefer: respond-async`).
    pub async_timeout_ms: u64,
    /// Page size when `_count` is not given, and the largest `_count` honoured.
    pub default_count: usize,
    pub max_count: usize,
    /// Most resources `_include`/`_revinclude` add to one page (the page then says so).
    pub max_include: usize,
}

impl Default for Search {
    fn default() -> Self {
        Search {
            timeout_ms: 10_000,
            async_timeout_ms: 300_000,
            default_count: 50,
            max_count: 1000,
            max_include: 1000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub data_dir: PathBuf,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct History {
    pub default_page_size: usize,
    pub max_page_size: usize,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Apps {
    pub enabled: bool,
    pub max_operations_per_app: u32,
    pub operation_timeout_seconds: u64,
    pub webhook_timeout_seconds: u64,
    pub webhook_max_retries: u32,
    /// A PEM file of root certificates that HTTP handlers trust instead of the built-in
    /// Mozilla roots (an internal CA); empty: the built-in roots.
    pub tls_ca_file: String,
    pub sandbox: Sandbox,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sandbox {
    pub max_memory_mb: u64,
    pub max_execution_ms: u64,
    /// Threads running JavaScript (each with its own runtime); 0: one per core.
    pub workers: usize,
    /// Linux niceness of those threads (0 to 19; higher yields more to everything else).
    pub niceness: i32,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub level: String,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            host: "127.0.0.1".into(),
            port: 8080,
            context_path: "/fhir".into(),
            base_url: String::new(),
            max_body_bytes: 16 * 1024 * 1024,
            async_budget_ms: 1000,
            async_results_kept_hours: 168,
            node_id: String::new(),
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_requests_in_flight: 1024,
            costly_threads: 0,
            costly_queue: 64,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            data_dir: PathBuf::from("./flint-data"),
        }
    }
}

impl Default for History {
    fn default() -> Self {
        History {
            default_page_size: 50,
            max_page_size: 1000,
        }
    }
}

impl Default for Apps {
    fn default() -> Self {
        Apps {
            enabled: true,
            max_operations_per_app: 50,
            operation_timeout_seconds: 30,
            webhook_timeout_seconds: 10,
            webhook_max_retries: 5,
            tls_ca_file: String::new(),
            sandbox: Sandbox::default(),
        }
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            max_memory_mb: 64,
            max_execution_ms: 5000,
            workers: 0,
            niceness: 10,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Loads the file (if any), applies `FLINT_*` variables from `env`, and checks the result.
    ///
    /// # Errors
    /// A message naming the file, key or variable at fault.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, String> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!("cannot read configuration file {}: {e}", path.display())
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| format!("configuration file {}: {e}", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(path) = name.strip_prefix("FLINT_") else {
                continue;
            };
            if path == "CONFIG" {
                continue;
            }
            let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
            if keys.iter().any(String::is_empty) {
                return Err(format!("environment variable {name}: malformed key path"));
            }
            set_path(&mut table, &keys, parse_env_value(&value))
                .map_err(|e| format!("environment variable {name}: {e}"))?;
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| format!("configuration: {}", e.message().trim()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if !self.server.context_path.is_empty() && !self.server.context_path.starts_with('/') {
            return Err(format!(
                "server.context_path must start with '/', not '{}'",
                self.server.context_path
            ));
        }
        let base = &self.server.base_url;
        if !(base.is_empty() || base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "server.base_url must be an absolute http(s) URL, not '{base}'"
            ));
        }
        if self.server.max_body_bytes == 0 {
            return Err("server.max_body_bytes must be positive".into());
        }
        if self.search.default_count == 0 || self.search.max_count < self.search.default_count {
            return Err(
                "search.default_count must be positive and at most search.max_count".into(),
            );
        }
        if self.search.timeout_ms == 0
            || self.search.async_timeout_ms == 0
            || self.server.max_requests_in_flight == 0
        {
            return Err(
                "search.timeout_ms, search.async_timeout_ms and server.max_requests_in_flight must be positive".into(),
            );
        }
        if self.history.default_page_size == 0
            || self.history.max_page_size < self.history.default_page_size
        {
            return Err(
                "history.default_page_size must be positive and at most history.max_page_size"
                    .into(),
            );
        }
        if !matches!(
            self.log.level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return Err(format!(
                "log.level must be error, warn, info, debug or trace, not '{}'",
                self.log.level
            ));
        }
        Ok(())
    }
}

/// Environment values are TOML literals when they parse as one (numbers, booleans), else strings.
fn parse_env_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)),
            ) => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("'{key}' is not a section"))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_example_file_is_the_default() {
        let parsed: Config = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let c = Config::load(
            None,
            env(&[
                ("FLINT_SERVER__PORT", "9090"),
                ("FLINT_APPS__SANDBOX__MAX_EXECUTION_MS", "250"),
                ("FLINT_SERVER__BASE_URL", "https://x.org/fhir"),
                ("OTHER", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.port, 9090);
        assert_eq!(c.apps.sandbox.max_execution_ms, 250);
        assert_eq!(c.server.base_url, "https://x.org/fhir");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::load(None, env(&[("FLINT_SERVER__PROT", "1")]))
            .unwrap_err()
            .contains("prot"));
        assert!(Config::load(None, env(&[("FLINT_SERVER__PORT", "99999")])).is_err());
        assert!(Config::load(None, env(&[("FLINT_SERVER__PORT", "abc")])).is_err());
        assert!(Config::load(None, env(&[("FLINT_LOG__LEVEL", "loud")])).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.toml");
        std::fs::write(&file, "[server]\nport = 1\n[nope]\nx = 1\n").unwrap();
        assert!(Config::load(Some(&file), env(&[]))
            .unwrap_err()
            .contains("nope"));
    }
}
