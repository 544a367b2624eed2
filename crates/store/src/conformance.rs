//! The storage contract as a story every backend must pass: versions and transaction numbers,
//! atomic jobs, history queries, snapshots and keyset paging, delete-history, meta rewritten in
//! place, purge. Each backend's
//! tests call [`run`] with a fresh store.

use crate::{Error, HistoryQuery, Method, NewVersion, Store};

fn put(rt: &str, id: &str, version: u64, json: Option<&str>) -> NewVersion {
    let method = match (version, json) {
        (_, None) => Method::Delete,
        (1, _) => Method::Create,
        _ => Method::Update,
    };
    NewVersion {
        resource_type: rt.into(),
        id: id.into(),
        version,
        method,
        json: json.map(str::to_string),
        index: Vec::new(),
    }
}

fn all(rt: Option<&str>, id: Option<&str>) -> HistoryQuery {
    HistoryQuery {
        resource_type: rt.map(str::to_string),
        id: id.map(str::to_string),
        limit: 100,
        ..Default::default()
    }
}

/// Runs the whole story against an empty store.
///
/// # Panics
/// When the backend breaks the contract.
pub async fn run<S: Store>(store: &S) {
    assert_eq!(
        store.last_tx().unwrap(),
        0,
        "a new store has committed nothing"
    );
    assert!(store.read("Patient", "a").unwrap().is_none());

    // Versions chain and carry increasing transaction numbers and times.
    let v1 = store
        .write(|t| t.put(put("Patient", "a", 1, Some(r#"{"v":1}"#))))
        .await
        .unwrap();
    let v2 = store
        .write(|t| t.put(put("Patient", "a", 2, Some(r#"{"v":2}"#))))
        .await
        .unwrap();
    assert!(v2.tx > v1.tx && v2.last_updated > v1.last_updated);
    assert_eq!(store.last_tx().unwrap(), v2.tx);
    let current = store.read("Patient", "a").unwrap().unwrap();
    assert_eq!(
        (current.version, current.json.as_deref()),
        (2, Some(&b"{\"v\":2}"[..]))
    );
    assert_eq!(
        store
            .vread("Patient", "a", 1)
            .unwrap()
            .unwrap()
            .json
            .as_deref(),
        Some(&b"{\"v\":1}"[..])
    );
    assert!(store.vread("Patient", "a", 3).unwrap().is_none());

    // Only the successor of the current version may be written.
    let skipped = store
        .write(|t| t.put(put("Patient", "a", 5, Some("{}"))))
        .await;
    assert!(skipped.is_err());

    // A failing job leaves no trace, even after it wrote.
    let failed: Result<(), Error> = store
        .write(|t| {
            t.put(put("Patient", "b", 1, Some("{}")))?;
            Err(Error::invalid("changed my mind"))
        })
        .await;
    assert!(failed.is_err());
    assert!(store.read("Patient", "b").unwrap().is_none());
    assert_eq!(
        store.last_tx().unwrap(),
        v2.tx,
        "a failed job commits no transaction"
    );

    // A job sees its own writes.
    let seen = store
        .write(|t| {
            t.put(put("Patient", "c", 1, Some("{}")))?;
            Ok(t.current("Patient", "c")?.map(|v| v.version))
        })
        .await
        .unwrap();
    assert_eq!(seen, Some(1));

    // Concurrent jobs each commit atomically with their own transaction number.
    let jobs = (0..50)
        .map(|i| store.write(move |t| t.put(put("Observation", &format!("o{i}"), 1, Some("{}")))));
    let mut txs: Vec<u64> = Vec::new();
    for job in jobs.collect::<Vec<_>>() {
        txs.push(job.await.unwrap().tx);
    }
    txs.sort_unstable();
    txs.dedup();
    assert_eq!(txs.len(), 50);

    // Deletion is a version without content.
    let del = store
        .write(|t| t.put(put("Patient", "c", 2, None)))
        .await
        .unwrap();
    assert!(store.read("Patient", "c").unwrap().unwrap().is_deleted());

    // History: newest first, per instance, type and system; counts agree.
    let page = store.history(&all(Some("Patient"), Some("a"))).unwrap();
    assert_eq!(
        page.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert_eq!(store.history_count(&all(Some("Patient"), None)).unwrap(), 4);
    assert_eq!(store.history_count(&all(None, None)).unwrap(), 54);
    let system = store.history(&all(None, None)).unwrap();
    assert_eq!(system.versions[0].tx, del.tx);
    assert!(system.versions.windows(2).all(|w| w[0].tx >= w[1].tx));

    // _since and _at.
    let since = HistoryQuery {
        since: Some(v2.last_updated),
        ..all(Some("Patient"), Some("a"))
    };
    assert_eq!(store.history(&since).unwrap().versions.len(), 1);
    let at = HistoryQuery {
        at: Some((v1.last_updated, v1.last_updated + 1)),
        ..all(Some("Patient"), Some("a"))
    };
    assert_eq!(
        store
            .history(&at)
            .unwrap()
            .versions
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>(),
        vec![1]
    );

    // Snapshots and keyset paging: later writes do not show in an earlier snapshot.
    let snapshot = store.last_tx().unwrap();
    store
        .write(|t| t.put(put("Patient", "a", 3, Some("{}"))))
        .await
        .unwrap();
    let mut q = HistoryQuery {
        snapshot: Some(snapshot),
        limit: 20,
        ..all(None, None)
    };
    let mut seen = 0;
    loop {
        let page = store.history(&q).unwrap();
        seen += page.versions.len();
        assert!(page.versions.iter().all(|v| v.tx <= snapshot));
        match page.next {
            Some(next) => q.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, 54);

    // Delete-history keeps only the current version, and versions continue.
    let removed = store
        .write(|t| t.delete_history("Patient", "a"))
        .await
        .unwrap();
    assert_eq!(removed, 2);
    assert!(store.vread("Patient", "a", 1).unwrap().is_none());
    assert_eq!(
        store
            .history_count(&all(Some("Patient"), Some("a")))
            .unwrap(),
        1
    );
    store
        .write(|t| t.put(put("Patient", "a", 4, Some("{}"))))
        .await
        .unwrap();

    // Walks over current data: every current version that holds a resource, once, in write
    // order, resumable from any position.
    let mut walked = Vec::new();
    let mut after = 0;
    loop {
        let batch = store.current_versions(None, after, 7).unwrap();
        let Some((last, _)) = batch.last() else { break };
        after = *last;
        walked.extend(
            batch
                .into_iter()
                .map(|(_, v)| (v.resource_type, v.id, v.version)),
        );
    }
    let mut unique = walked.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), walked.len(), "each resource once");
    assert!(walked.contains(&("Patient".into(), "a".into(), 4)));
    assert!(walked.iter().all(|(_, _, v)| *v > 0));
    let patients = store.current_versions(Some("Patient"), 0, 1000).unwrap();
    assert!(patients
        .iter()
        .all(|(_, v)| v.resource_type == "Patient" && v.json.is_some()));

    // Reindex replaces the rows of a current version only.
    let index = vec![crate::IndexedParam {
        code: "family".into(),
        kind: crate::ParamType::String,
        values: vec![crate::IndexValue::String {
            normalized: "reindexed".into(),
            original: "Reindexed".into(),
        }],
    }];
    let (current, stale) = store
        .write(move |t| {
            let stale = t.reindex("Patient", "a", 3, index.clone())?;
            let current = t.reindex("Patient", "a", 4, index)?;
            Ok((current, stale))
        })
        .await
        .unwrap();
    assert!(current && !stale);
    let q = crate::search::SearchQuery {
        resource_type: "Patient".into(),
        clauses: vec![vec![crate::search::Predicate::String {
            param: "family".into(),
            value: "reindexed".into(),
            how: crate::search::StringMatch::Prefix,
        }]],
        limit: 10,
        ..Default::default()
    };
    let found = store.search(&q).unwrap().versions;
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].id.as_str(), found[0].version), ("a", 4));

    // Jobs are kept, replaced whole, and listed by state.
    let mut job = crate::JobRecord {
        id: "j1".into(),
        kind: "reindex".into(),
        state: crate::JobState::Running,
        request: "{}".into(),
        progress: "{\"after\":0}".into(),
        result: None,
        created: 1,
        updated: 1,
        owner: "default\u{1}".into(),
        node: "n1".into(),
        lease_until: 10,
        commits: 0,
    };
    let stored = job.clone();
    store.write(move |t| t.put_job(&stored)).await.unwrap();
    assert_eq!(store.job("j1").unwrap(), Some(job.clone()));
    assert_eq!(
        store.jobs(crate::JobState::Running).unwrap(),
        vec![job.clone()]
    );
    job.state = crate::JobState::Done;
    job.result = Some("{}".into());
    job.updated = 2;
    let stored = job.clone();
    store.write(move |t| t.put_job(&stored)).await.unwrap();
    assert!(store.jobs(crate::JobState::Running).unwrap().is_empty());
    assert_eq!(store.count_jobs(crate::JobState::Running).unwrap(), 0);
    assert_eq!(store.count_jobs(crate::JobState::Done).unwrap(), 1);
    assert_eq!(store.job("j1").unwrap(), Some(job));
    assert_eq!(store.job("nope").unwrap(), None);
    // Ended jobs are pruned by age; running ones never.
    let mut running = crate::JobRecord {
        id: "j2".into(),
        state: crate::JobState::Running,
        result: None,
        ..store.job("j1").unwrap().unwrap()
    };
    running.updated = 1;
    let stored = running.clone();
    store.write(move |t| t.put_job(&stored)).await.unwrap();
    assert_eq!(store.write(|t| t.prune_jobs(2)).await.unwrap(), 0);
    assert_eq!(store.write(|t| t.prune_jobs(3)).await.unwrap(), 1);
    assert_eq!(store.job("j1").unwrap(), None);
    assert_eq!(store.job("j2").unwrap(), Some(running));

    // Maintenance changes no resource and says what it did.
    let said = store.write(|t| t.compact()).await.unwrap();
    assert!(!said.is_empty());
    assert_eq!(store.search(&q).unwrap().versions.len(), 1);

    // A lease is granted to its holder, to anyone once it ran out, never on an ended job;
    // commits are counted.
    let claim = |node: &'static str, now: i64, until: i64| {
        store.write(move |t| t.claim_job("j2", node, now, until))
    };
    assert!(claim("n1", 5, 20).await.unwrap());
    assert!(!claim("n2", 15, 30).await.unwrap());
    assert!(claim("n2", 21, 40).await.unwrap());
    assert!(!claim("n1", 22, 50).await.unwrap());
    store.write(|t| t.note_job_commit("j2")).await.unwrap();
    store.write(|t| t.note_job_commit("j2")).await.unwrap();
    let j2 = store.job("j2").unwrap().unwrap();
    assert_eq!(
        (j2.node.as_str(), j2.lease_until, j2.commits),
        ("n2", 40, 2)
    );
    let mut ended = j2;
    ended.state = crate::JobState::Done;
    store.write(move |t| t.put_job(&ended)).await.unwrap();
    assert!(!claim("n2", 23, 60).await.unwrap());
    assert!(!store
        .write(|t| t.claim_job("nope", "n1", 0, 1))
        .await
        .unwrap());

    // `unchanged_since` may be cautious (say "changed" when it is not), never wrong.
    let b1 = store
        .write(|t| t.put(put("Basic", "b1", 1, Some("{}"))))
        .await
        .unwrap();
    let (before, after) = store
        .write(move |t| {
            let before = t.unchanged_since("Basic", b1.tx - 1)?;
            t.put(put("Basic", "b2", 1, Some("{}")))?;
            let after = t.unchanged_since("Basic", b1.tx)?;
            Ok((before, after))
        })
        .await
        .unwrap();
    assert!(!before, "a write after the transaction given is a change");
    assert!(!after, "the transaction's own earlier write is a change");

    // A version's meta is rewritten in place: same number, time and transaction, new bytes,
    // and the reads by id see it at once; a deletion or a missing version is not rewritten.
    let m1 = store
        .write(|t| t.put(put("Basic", "m", 1, Some(r#"{"meta":{}}"#))))
        .await
        .unwrap();
    store
        .write(|t| t.put(put("Basic", "m", 2, Some(r#"{"meta":{}}"#))))
        .await
        .unwrap();
    assert_eq!(store.read("Basic", "m").unwrap().unwrap().version, 2);
    let rewritten = store
        .write(|t| {
            let first = t.rewrite_meta(
                "Basic",
                "m",
                1,
                r#"{"meta":{"tag":[1]}}"#.into(),
                Vec::new(),
            )?;
            let current = t.rewrite_meta(
                "Basic",
                "m",
                2,
                r#"{"meta":{"tag":[2]}}"#.into(),
                Vec::new(),
            )?;
            let missing = t.rewrite_meta("Basic", "m", 9, "{}".into(), Vec::new())?;
            Ok((first, current, missing))
        })
        .await
        .unwrap();
    assert_eq!(rewritten, (true, true, false));
    let old = store.vread("Basic", "m", 1).unwrap().unwrap();
    assert_eq!(old.json.as_deref(), Some(&br#"{"meta":{"tag":[1]}}"#[..]));
    assert_eq!((old.tx, old.last_updated), (m1.tx, m1.last_updated));
    let now = store.read("Basic", "m").unwrap().unwrap();
    assert_eq!(now.json.as_deref(), Some(&br#"{"meta":{"tag":[2]}}"#[..]));

    // Purge removes every version of one resource and nothing else.
    store
        .write(|t| t.put(put("Basic", "m", 3, None)))
        .await
        .unwrap();
    assert_eq!(store.write(|t| t.purge("Basic", "m")).await.unwrap(), 3);
    assert!(store.read("Basic", "m").unwrap().is_none());
    assert!(store.vread("Basic", "m", 1).unwrap().is_none());
    assert_eq!(
        store.history_count(&all(Some("Basic"), Some("m"))).unwrap(),
        0
    );
    assert!(store.read("Basic", "b1").unwrap().is_some());
    assert_eq!(store.write(|t| t.purge("Basic", "m")).await.unwrap(), 0);
}
