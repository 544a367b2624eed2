//! The storage contract every backend implements: resources kept as every version they ever
//! had, each stamped with the monotonically increasing number of the transaction that wrote
//! it, read without blocking writers, written only through [`Store::write`] — one path that
//! runs a job inside a backend transaction, so that resource versions, search indexes and
//! (later) change events commit or roll back together.

use bytes::Bytes;
pub mod conformance;
mod interrupt;
pub mod search;

pub use interrupt::Interrupt;

use std::future::Future;

pub use flint_fhir::{Error, Result};
pub use flint_search::{IndexValue, ParamType};

/// A transaction number. Every committed write has one; later writes have larger ones.
pub type TxNumber = u64;

/// How a version came to be, as shown in history entries (`request.method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Create,
    Update,
    Delete,
}

impl Method {
    pub fn http_method(self) -> &'static str {
        match self {
            Method::Create => "POST",
            Method::Update => "PUT",
            Method::Delete => "DELETE",
        }
    }

    pub fn to_code(self) -> u8 {
        match self {
            Method::Create => 0,
            Method::Update => 1,
            Method::Delete => 2,
        }
    }

    pub fn from_code(code: u8) -> Method {
        match code {
            0 => Method::Create,
            1 => Method::Update,
            _ => Method::Delete,
        }
    }
}

/// One stored version of a resource.
#[derive(Clone, Debug)]
pub struct Version {
    pub resource_type: String,
    pub id: String,
    /// `meta.versionId`, counting from 1.
    pub version: u64,
    /// The transaction that wrote this version.
    pub tx: TxNumber,
    /// `meta.lastUpdated`, microseconds since the epoch.
    pub last_updated: i64,
    pub method: Method,
    /// The resource exactly as serialized on write (with `meta.versionId` and
    /// `meta.lastUpdated`); `None` for a deletion.
    pub json: Option<Bytes>,
}

impl Version {
    pub fn is_deleted(&self) -> bool {
        self.json.is_none()
    }
}

/// A version to write. The transaction supplies the transaction number and time.
#[derive(Clone, Debug)]
pub struct NewVersion {
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    pub method: Method,
    /// `None` writes a deletion.
    pub json: Option<String>,
    /// The search index values of this version, written in the same transaction.
    pub index: Vec<IndexedParam>,
}

/// The code under which a version's narrative, as text, is handed to the store (`_text`).
pub const FULL_TEXT_NARRATIVE: &str = "_text";
/// The code under which all of a version's text is handed to the store (`_content`).
pub const FULL_TEXT_CONTENT: &str = "_content";

/// The values one search parameter extracted from a version. A parameter that applies but
/// found nothing has no entry.
#[derive(Clone, Debug)]
pub struct IndexedParam {
    /// The parameter's code (`name`, `subject`), unique within the resource type;
    /// `#Type:code` for a parameter of a resource of type `Type` contained in the version
    /// (searched with `_contained`); [`FULL_TEXT_NARRATIVE`] and [`FULL_TEXT_CONTENT`] for
    /// the full text, as one string value each.
    pub code: String,
    pub kind: ParamType,
    pub values: Vec<IndexValue<'static>>,
}

/// An index value that owns its text, so that it can travel into a write job.
pub fn owned_value(v: IndexValue<'_>) -> IndexValue<'static> {
    use std::borrow::Cow;
    fn own(c: Cow<'_, str>) -> Cow<'static, str> {
        Cow::Owned(c.into_owned())
    }
    let opt = |c: Option<Cow<'_, str>>| c.map(own);
    match v {
        IndexValue::String {
            normalized,
            original,
        } => IndexValue::String {
            normalized: own(normalized),
            original: own(original),
        },
        IndexValue::Token { system, code, text } => IndexValue::Token {
            system: opt(system),
            code: opt(code),
            text: opt(text),
        },
        IndexValue::Reference {
            resource_type,
            id,
            version,
            url,
            identifier,
        } => IndexValue::Reference {
            resource_type: opt(resource_type),
            id: opt(id),
            version: opt(version),
            url: opt(url),
            identifier: identifier.map(|(s, v)| (s.map(own), own(v))),
        },
        IndexValue::Date { start, end } => IndexValue::Date { start, end },
        IndexValue::Number { value, low, high } => IndexValue::Number {
            value: own(value),
            low,
            high,
        },
        IndexValue::Quantity {
            value,
            low,
            high,
            system,
            code,
            unit,
            canonical,
        } => IndexValue::Quantity {
            value: own(value),
            low,
            high,
            system: opt(system),
            code: opt(code),
            unit: opt(unit),
            canonical,
        },
        IndexValue::Uri(u) => IndexValue::Uri(own(u)),
        IndexValue::Composite(parts) => {
            IndexValue::Composite(parts.into_iter().map(owned_value).collect())
        }
    }
}

/// A key that seals paging links (see the engine's `paging`), kept in the store so that
/// every node can open every link.
#[derive(Clone, Debug)]
pub struct PagingKey {
    pub id: u64,
    /// When the key was made, microseconds since the epoch.
    pub created: i64,
    pub key: Vec<u8>,
}

/// Where a background job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Running,
    /// Finished; its result holds the response.
    Done,
    /// Ended by an error; its result holds the OperationOutcome.
    Failed,
    /// Cancelled by a client.
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }
}

/// A background job (an asynchronous request), kept in the store so that it survives a
/// restart and any node can answer for it. What `request`, `progress` and `result` hold is
/// the engine's business (JSON text).
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    pub id: String,
    /// What runs it (`reindex`, …).
    pub kind: String,
    pub state: JobState,
    pub request: String,
    /// Where it is: enough to resume after a restart, and to report progress.
    pub progress: String,
    /// The response once it ended.
    pub result: Option<String>,
    /// Microseconds since the epoch.
    pub created: i64,
    pub updated: i64,
    /// Whose request it is (tenant and caller, `Context::owner`): only they may poll or
    /// cancel it.
    pub owner: String,
    /// The node that runs it (empty when none does) and until when its lease holds
    /// (microseconds): a node renews the leases of the jobs it runs; a job whose lease ran
    /// out is taken over by another.
    pub node: String,
    pub lease_until: i64,
    /// How many store transactions its work has committed ([`Transaction::note_job_commit`]):
    /// after a restart, a job that changed nothing may run again from the start.
    pub commits: u64,
}

/// Which versions a history request asks for.
#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    /// `None` for system history.
    pub resource_type: Option<String>,
    /// `Some` for instance history (requires `resource_type`).
    pub id: Option<String>,
    /// `_since`: versions written at or after this instant (microseconds).
    pub since: Option<i64>,
    /// `_at`: versions current at some point in `[start, end)` (microseconds).
    pub at: Option<(i64, i64)>,
    /// Only versions of transactions at or below this number: the snapshot a paging session
    /// reads.
    pub snapshot: Option<TxNumber>,
    /// Keyset position: only versions ordered after this `(tx, sequence)` key.
    pub after: Option<(TxNumber, u64)>,
    /// Maximum number of versions to return.
    pub limit: usize,
    /// When the reading must stop.
    pub interrupt: Interrupt,
}

/// A page of history, newest first.
#[derive(Clone, Debug)]
pub struct HistoryPage {
    pub versions: Vec<Version>,
    /// The keyset position of the next page, when there is one.
    pub next: Option<(TxNumber, u64)>,
}

/// The work of one transaction, run by the backend with a [`Transaction`].
pub trait Transaction {
    /// The number this transaction will commit as.
    fn tx(&self) -> TxNumber;

    /// The time of this transaction (microseconds since the epoch); never earlier than the
    /// time of an earlier transaction.
    fn now(&self) -> i64;

    /// The latest version of a resource as this transaction sees it (including its own writes).
    ///
    /// # Errors
    /// A backend fault.
    fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<Version>>;

    /// One version of a resource as this transaction sees it.
    ///
    /// # Errors
    /// A backend fault.
    fn version(&mut self, resource_type: &str, id: &str, version: u64) -> Result<Option<Version>>;

    /// Writes a new version and retires the previous one.
    ///
    /// # Errors
    /// A backend fault, or a version that is not the successor of the current one.
    fn put(&mut self, version: NewVersion) -> Result<Version>;

    /// The versions matching a search as this transaction sees them (its own writes
    /// included), for conditional interactions: the check and the write are one transaction.
    ///
    /// # Errors
    /// A backend fault.
    fn search(&mut self, query: &search::SearchQuery) -> Result<Vec<Version>>;

    /// Whether no version of `resource_type` was written after transaction `tx` (as this
    /// transaction sees it, its own batch's earlier writes included): then a search of that
    /// type alone answers as it did at `tx`, and a conditional write need not search again.
    /// The default always says it may have changed.
    ///
    /// # Errors
    /// A backend fault.
    fn unchanged_since(&mut self, resource_type: &str, tx: TxNumber) -> Result<bool> {
        let _ = (resource_type, tx);
        Ok(false)
    }

    /// Stores a new paging key and keeps only the `keep` newest; returns the new key's id.
    ///
    /// # Errors
    /// A backend fault.
    fn add_paging_key(&mut self, created: i64, key: &[u8], keep: usize) -> Result<u64>;

    /// Removes every version of a resource but the current one; returns how many went.
    ///
    /// # Errors
    /// A backend fault.
    fn delete_history(&mut self, resource_type: &str, id: &str) -> Result<u64>;

    /// Replaces the search index rows of a version (`$reindex`) if it is still the current
    /// one; returns whether it was (a version superseded meanwhile was indexed when its
    /// successor was written).
    ///
    /// # Errors
    /// A backend fault.
    fn reindex(
        &mut self,
        resource_type: &str,
        id: &str,
        version: u64,
        index: Vec<IndexedParam>,
    ) -> Result<bool>;

    /// Replaces the stored JSON of one version in place, keeping its number, time and
    /// transaction, and replaces its index rows with `index`: `$meta-add` and `$meta-delete`
    /// change a version's tags, profiles and security labels without making a new version.
    /// The caller guarantees that only `meta` differs. Returns whether the version exists
    /// and holds a resource (a deletion has no meta).
    ///
    /// # Errors
    /// A backend fault.
    fn rewrite_meta(
        &mut self,
        resource_type: &str,
        id: &str,
        version: u64,
        json: String,
        index: Vec<IndexedParam>,
    ) -> Result<bool>;

    /// Removes a resource for good: every version, current and past, with its index rows
    /// (`$purge`). Returns how many versions went.
    ///
    /// # Errors
    /// A backend fault.
    fn purge(&mut self, resource_type: &str, id: &str) -> Result<u64>;

    /// Creates or replaces a job record; on a replacement its `commits` count stays as the
    /// store has it (only [`Transaction::note_job_commit`] changes it).
    ///
    /// # Errors
    /// A backend fault.
    fn put_job(&mut self, job: &JobRecord) -> Result<()>;

    /// Removes the jobs that ended (done, failed, cancelled) before `before` (microseconds);
    /// returns how many went.
    ///
    /// # Errors
    /// A backend fault.
    fn prune_jobs(&mut self, before: i64) -> Result<u64>;

    /// Takes or renews the lease on a running job for `node` until `until`: granted when the
    /// job is still running and nobody else holds an unexpired lease (at `now`). Every step
    /// of a job claims it first, so a job that was cancelled or taken over commits nothing
    /// more.
    ///
    /// # Errors
    /// A backend fault.
    fn claim_job(&mut self, id: &str, node: &str, now: i64, until: i64) -> Result<bool>;

    /// Counts one committed transaction of a job's work, in that transaction.
    ///
    /// # Errors
    /// A backend fault.
    fn note_job_commit(&mut self, id: &str) -> Result<()>;

    /// Store maintenance (`$compact`): whatever keeps the backend's indexes lean and its
    /// planner informed, without changing any resource. Returns what was done, one line per
    /// step, for the operation's answer.
    ///
    /// # Errors
    /// A backend fault.
    fn compact(&mut self) -> Result<Vec<String>>;
}

/// A storage backend.
pub trait Store: Send + Sync + 'static {
    /// The latest version of a resource (possibly a deletion), if it ever existed.
    ///
    /// # Errors
    /// A backend fault.
    fn read(&self, resource_type: &str, id: &str) -> Result<Option<Version>>;

    /// One version of a resource.
    ///
    /// # Errors
    /// A backend fault.
    fn vread(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<Version>>;

    /// Versions newest first, as the query selects.
    ///
    /// # Errors
    /// A backend fault.
    fn history(&self, query: &HistoryQuery) -> Result<HistoryPage>;

    /// How many versions the query selects, ignoring `after` and `limit`.
    ///
    /// # Errors
    /// A backend fault.
    fn history_count(&self, query: &HistoryQuery) -> Result<u64>;

    /// The current versions matching a search, one page in the query's order.
    ///
    /// # Errors
    /// A backend fault.
    fn search(&self, query: &search::SearchQuery) -> Result<search::SearchPage>;

    /// How many current versions match a search (ignoring `after` and `limit`).
    ///
    /// # Errors
    /// A backend fault.
    fn search_count(&self, query: &search::SearchQuery) -> Result<u64>;

    /// The paging keys, newest first.
    ///
    /// # Errors
    /// A backend fault.
    fn paging_keys(&self) -> Result<Vec<PagingKey>>;

    /// The number of the last committed transaction.
    ///
    /// # Errors
    /// A backend fault.
    fn last_tx(&self) -> Result<TxNumber>;

    /// Current versions that hold a resource (not deletions), of one type or of all, in the
    /// order they were written, after the position `after` (0 for the start); each comes
    /// with its position. For walks over all data (`$reindex`).
    ///
    /// # Errors
    /// A backend fault.
    fn current_versions(
        &self,
        resource_type: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Version)>>;

    /// A job by id.
    ///
    /// # Errors
    /// A backend fault.
    fn job(&self, id: &str) -> Result<Option<JobRecord>>;

    /// The jobs in a state (`Running` ones, to resume them after a restart).
    ///
    /// # Errors
    /// A backend fault.
    /// How many jobs are in `state`.
    ///
    /// # Errors
    /// A backend fault.
    fn count_jobs(&self, state: JobState) -> Result<u64>;

    fn jobs(&self, state: JobState) -> Result<Vec<JobRecord>>;

    /// Runs `job` in a new transaction and commits it if the job succeeds; the job's result
    /// is returned only once the transaction is durable. A failing job leaves no trace.
    ///
    /// Backends may group the jobs of concurrent callers into one commit (group commit), but
    /// each job stays atomic on its own and gets its own transaction number.
    ///
    /// # Errors
    /// The job's error, or a backend fault (then nothing of the job was written).
    fn write<T, F>(&self, job: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Transaction) -> Result<T> + Send + 'static;
}
