//! The embedded store against the storage contract, plus what only this backend promises.

use flint_store::{Error, Method, NewVersion, Store};
use flint_store_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_storage_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    flint_store::conformance::run(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_rolls_back_and_the_writer_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let new = |id: &str| NewVersion {
        resource_type: "Patient".into(),
        id: id.into(),
        version: 1,
        method: Method::Create,
        json: Some("{}".into()),
        index: Vec::new(),
    };
    let a = new("a");
    let panicked: Result<(), Error> = store
        .write(move |t| {
            t.put(a)?;
            panic!("a bug in a job");
        })
        .await;
    assert!(panicked.is_err());
    assert!(store.read("Patient", "a").unwrap().is_none());
    let b = new("b");
    store.write(move |t| t.put(b)).await.unwrap();
    assert!(store.read("Patient", "b").unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let tx = {
        let store = SqliteStore::open(dir.path()).unwrap();
        let v = NewVersion {
            resource_type: "Patient".into(),
            id: "a".into(),
            version: 1,
            method: Method::Create,
            json: Some("{}".into()),
            index: Vec::new(),
        };
        let written = store.write(move |t| t.put(v)).await.unwrap();
        store.close();
        written.tx
    };
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.last_tx().unwrap(), tx);
    let v = NewVersion {
        resource_type: "Patient".into(),
        id: "a".into(),
        version: 2,
        method: Method::Update,
        json: Some("{}".into()),
        index: Vec::new(),
    };
    assert!(store.write(move |t| t.put(v)).await.unwrap().tx > tx);
}
