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
        // Closing waits for the writer's last checkpoint: the database file is whole.
        let wal = dir.path().join("flint.sqlite-wal");
        assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0);
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

mod composite {
    use std::borrow::Cow;

    use flint_store::search::{Predicate, Prefix, SearchQuery, SortBy, SortKey};
    use flint_store::{IndexValue, IndexedParam, Method, NewVersion, ParamType, Store};
    use flint_store_sqlite::SqliteStore;

    fn token(code: &str) -> IndexValue<'static> {
        IndexValue::Token {
            system: Some(Cow::Borrowed("http://s")),
            code: Some(Cow::Owned(code.to_string())),
            text: None,
        }
    }

    fn number(v: f64) -> IndexValue<'static> {
        IndexValue::Number {
            value: Cow::Owned(v.to_string()),
            low: v - 0.5,
            high: v + 0.5,
        }
    }

    /// A version with `coordinate` tuples (chromosome, start, end) and a `chromosome` token.
    fn sequence(id: &str, version: u64, tuples: &[(&str, f64, f64)]) -> NewVersion {
        NewVersion {
            resource_type: "MolecularSequence".into(),
            id: id.into(),
            version,
            method: Method::Update,
            json: Some(format!(
                "{{\"resourceType\":\"MolecularSequence\",\"id\":\"{id}\"}}"
            )),
            index: vec![
                IndexedParam {
                    code: "coordinate".into(),
                    kind: ParamType::Composite,
                    values: tuples
                        .iter()
                        .map(|(c, s, e)| {
                            IndexValue::Composite(vec![token(c), number(*s), number(*e)])
                        })
                        .collect(),
                },
                IndexedParam {
                    code: "chromosome".into(),
                    kind: ParamType::Token,
                    values: tuples.iter().map(|(c, _, _)| token(c)).collect(),
                },
            ],
        }
    }

    fn coordinate(chromosome: &str, start: (Prefix, f64), end: (Prefix, f64)) -> Predicate {
        let n = |(prefix, value): (Prefix, f64)| Predicate::Number {
            param: "x".into(),
            prefix,
            value,
            low: value - 0.5,
            high: value + 0.5,
        };
        Predicate::Composite {
            param: "coordinate".into(),
            components: vec![
                Predicate::Token {
                    param: "chromosome".into(),
                    system: Some(Some("http://s".into())),
                    code: Some(chromosome.into()),
                },
                n(start),
                n(end),
            ],
        }
    }

    fn ids(store: &SqliteStore, clauses: Vec<Vec<Predicate>>, sort: Vec<SortKey>) -> Vec<String> {
        let q = SearchQuery {
            resource_type: "MolecularSequence".into(),
            clauses,
            sort,
            limit: 100,
            ..Default::default()
        };
        store
            .search(&q)
            .unwrap()
            .versions
            .into_iter()
            .map(|v| v.id)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_component_matches_within_one_tuple_and_rows_follow_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let a = sequence("a", 1, &[("1", 100.0, 200.0), ("2", 300.0, 400.0)]);
        let b = sequence("b", 1, &[("2", 100.0, 150.0)]);
        store
            .write(move |t| {
                t.put(a)?;
                t.put(b)
            })
            .await
            .unwrap();
        use Prefix::*;
        // Chromosome 1 starts at 100 and ends after 150 only in a; chromosome 2 never
        // ends after 150 while starting at 100 (a's 2 starts at 300, b's ends at 150).
        let found = |p: Predicate| ids(&store, vec![vec![p]], Vec::new());
        assert_eq!(found(coordinate("1", (Eq, 100.0), (Gt, 150.0))), ["a"]);
        assert_eq!(
            found(coordinate("2", (Eq, 100.0), (Gt, 150.0))),
            Vec::<String>::new()
        );
        assert_eq!(found(coordinate("2", (Eq, 100.0), (Le, 150.0))), ["b"]);
        assert_eq!(found(coordinate("2", (Ge, 100.0), (Ge, 150.0))), ["a", "b"]);
        // As a filter behind another clause, too.
        let chromosome2 = Predicate::Token {
            param: "chromosome".into(),
            system: None,
            code: Some("2".into()),
        };
        assert_eq!(
            ids(
                &store,
                vec![
                    vec![chromosome2],
                    vec![coordinate("2", (Gt, 200.0), (Lt, 500.0))]
                ],
                Vec::new()
            ),
            ["a"]
        );
        // Token sort: system, then lowest code; descending by highest.
        let by = |descending| {
            vec![SortKey {
                by: SortBy::Param {
                    code: "chromosome".into(),
                    kind: ParamType::Token,
                },
                descending,
            }]
        };
        assert_eq!(ids(&store, Vec::new(), by(false)), ["a", "b"]);
        assert_eq!(ids(&store, Vec::new(), by(true)), ["a", "b"]);
        // A new version replaces the tuples; delete-history removes the old version's rows.
        let a2 = sequence("a", 2, &[("3", 100.0, 200.0)]);
        store.write(move |t| t.put(a2)).await.unwrap();
        assert_eq!(
            found(coordinate("1", (Eq, 100.0), (Gt, 150.0))),
            Vec::<String>::new()
        );
        assert_eq!(found(coordinate("3", (Eq, 100.0), (Gt, 150.0))), ["a"]);
        assert_eq!(ids(&store, Vec::new(), by(false)), ["b", "a"]);
        store
            .write(|t| t.delete_history("MolecularSequence", "a"))
            .await
            .unwrap();
        store.close();
        let conn = rusqlite::Connection::open(dir.path().join("flint.sqlite")).unwrap();
        let rows = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        // b's one tuple (two trailing components) and a2's.
        assert_eq!(rows("idx_composite"), 4);
    }
}

/// Conditional writes skip their second search when nothing of the type was written since
/// the first: this backend answers `unchanged_since` exactly, per type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_since_is_exact_per_type() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let new = |rt: &str, id: &str| NewVersion {
        resource_type: rt.into(),
        id: id.into(),
        version: 1,
        method: Method::Create,
        json: Some("{}".into()),
        index: Vec::new(),
    };
    let (p, o) = (new("Patient", "p"), new("Observation", "o"));
    let patient = store.write(move |t| t.put(p)).await.unwrap();
    let observation = store.write(move |t| t.put(o)).await.unwrap();
    let answers = store
        .write(move |t| {
            Ok((
                t.unchanged_since("Patient", patient.tx)?,
                t.unchanged_since("Patient", observation.tx)?,
                t.unchanged_since("Observation", patient.tx)?,
                t.unchanged_since("Observation", observation.tx)?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(answers, (true, true, false, true));
}
