//! Writing search index rows: each version's extracted values go into the table of their
//! type, keyed by the parameter's id (one per resource type and code) and the version's `seq`.

use std::cmp::Ordering;
use std::collections::HashMap;

use flint_store::{IndexValue, IndexedParam};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

/// Parameter ids by (resource type, code); owned by the writer, which alone creates them.
#[derive(Default)]
pub struct ParamIds {
    ids: HashMap<(String, String), i64>,
}

impl ParamIds {
    pub fn get_or_create(
        &mut self,
        conn: &Connection,
        resource_type: &str,
        code: &str,
    ) -> rusqlite::Result<i64> {
        if let Some(&id) = self.ids.get(&(resource_type.to_string(), code.to_string())) {
            return Ok(id);
        }
        let existing: Option<i64> = conn
            .prepare_cached("SELECT id FROM search_param WHERE type = ?1 AND code = ?2")?
            .query_row((resource_type, code), |r| r.get(0))
            .optional()?;
        let id = match existing {
            Some(id) => id,
            None => {
                conn.prepare_cached("INSERT INTO search_param (type, code) VALUES (?1, ?2)")?
                    .execute((resource_type, code))?;
                conn.last_insert_rowid()
            }
        };
        self.ids
            .insert((resource_type.to_string(), code.to_string()), id);
        Ok(id)
    }

    /// Forgets ids created by a rolled-back transaction.
    pub fn clear(&mut self) {
        self.ids.clear();
    }
}

/// Looks up a parameter's id for reading; `None` when nothing was ever indexed for it.
pub fn param_id(
    conn: &Connection,
    resource_type: &str,
    code: &str,
) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM search_param WHERE type = ?1 AND code = ?2")?
        .query_row((resource_type, code), |r| r.get(0))
        .optional()
}

fn text<'a>(s: &'a Option<std::borrow::Cow<'_, str>>) -> &'a str {
    s.as_deref().unwrap_or("")
}

/// A stable 64-bit hash of an index key (FNV-1a with a murmur3 finalizer). It is stored, so
/// it must never change: a new function needs a schema migration that rehashes.
pub fn key_hash(s: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    // 0 means "absent" in the token table.
    if h == 0 {
        1
    } else {
        h as i64
    }
}

fn opt_hash(s: &Option<std::borrow::Cow<'_, str>>) -> i64 {
    s.as_deref().map_or(0, key_hash)
}

/// The keys under which a reference is found (see the `idx_reference` table).
pub fn reference_keys(
    resource_type: Option<&str>,
    id: Option<&str>,
    version: Option<&str>,
    url: Option<&str>,
    identifier: &Option<(Option<std::borrow::Cow<'_, str>>, std::borrow::Cow<'_, str>)>,
) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    if let (Some(t), Some(id)) = (resource_type, id) {
        keys.push(format!("{t}/{id}"));
        if let Some(v) = version {
            keys.push(format!("{t}/{id}/_history/{v}"));
        }
    }
    if let Some(url) = url {
        keys.push(format!("U:{url}"));
        if let Some(v) = version {
            keys.push(format!("U:{url}|{v}"));
        }
    }
    if let Some((system, value)) = identifier {
        if let Some(system) = system {
            keys.push(format!("I:{system}|{value}"));
        }
        keys.push(format!("I:|{value}"));
    }
    keys
}

/// Gathers the index rows of one version into `rows` (written by [`Rows::flush`]); returns
/// its full-text row, which the writer inserts at commit.
pub fn write(
    conn: &Connection,
    ids: &mut ParamIds,
    rows: &mut Rows,
    resource_type: &str,
    seq: i64,
    params: &[IndexedParam],
) -> rusqlite::Result<Option<FullTextRow>> {
    rows.seqs.insert(seq);
    let (mut narrative, mut content) = (None, None);
    // The next composite tuple number of each parameter of this version.
    let mut tuples: HashMap<i64, i64> = HashMap::new();
    for p in params {
        // The full-text "parameters" go to one row of their own table.
        let text = match p.code.as_str() {
            flint_store::FULL_TEXT_NARRATIVE => Some(&mut narrative),
            flint_store::FULL_TEXT_CONTENT => Some(&mut content),
            _ => None,
        };
        if let Some(text) = text {
            if let Some(IndexValue::String { normalized, .. }) = p.values.first() {
                *text = Some(normalized.as_ref());
            }
            continue;
        }
        // `#Type:code`: a parameter of a contained resource, kept under the type `#Type`.
        let param = match p.code.strip_prefix('#').and_then(|c| c.split_once(':')) {
            Some((inner, code)) => ids.get_or_create(conn, &format!("#{inner}"), code)?,
            None => ids.get_or_create(conn, resource_type, &p.code)?,
        };
        for value in &p.values {
            rows.add(param, seq, value, &mut tuples);
        }
    }
    Ok(
        (narrative.is_some() || content.is_some()).then(|| FullTextRow {
            seq,
            kind: resource_type.to_string(),
            narrative: narrative.unwrap_or("").to_string(),
            content: content.unwrap_or("").to_string(),
        }),
    )
}

/// A version's row of the full-text index. The writer inserts the rows of a whole batch just
/// before its commit: FTS5 flushes its pending terms to a new segment at every savepoint, and
/// a segment per job would cost more than the rest of the job's indexing.
pub struct FullTextRow {
    pub seq: i64,
    pub kind: String,
    pub narrative: String,
    pub content: String,
}

pub fn write_full_text(conn: &Connection, rows: Vec<FullTextRow>) -> rusqlite::Result<()> {
    // Many rows per statement: FTS5 also flushes at each statement's own savepoint.
    const PER_STATEMENT: usize = 64;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<FullTextRow> = rows.by_ref().take(PER_STATEMENT).collect();
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                format!(
                    "(?{}, ?{}, ?{}, ?{})",
                    4 * i + 1,
                    4 * i + 2,
                    4 * i + 3,
                    4 * i + 4
                )
            })
            .collect();
        // A version removed later in the same batch (delete-history) gets no row.
        let sql = format!(
            "INSERT INTO idx_fulltext (rowid, kind, narrative, content)
             SELECT column1, column2, column3, column4 FROM (VALUES {})
             WHERE EXISTS (SELECT 1 FROM resource WHERE seq = column1)",
            values.join(", ")
        );
        let mut params: Vec<rusqlite::types::Value> = Vec::with_capacity(4 * chunk.len());
        for row in chunk {
            params.push(row.seq.into());
            params.push(row.kind.into());
            params.push(row.narrative.into());
            params.push(row.content.into());
        }
        conn.prepare_cached(&sql)?
            .execute(rusqlite::params_from_iter(params))?;
    }
    Ok(())
}

/// One index table's rows waiting to be written, as SQL values in column order.
struct Table<const N: usize> {
    /// `INSERT [OR IGNORE] INTO table (columns) VALUES`, completed by one `(?, …)` per row.
    head: &'static str,
    /// How many leading columns order the rows: the table's key, or its busiest index.
    key: usize,
    rows: Vec<[Value; N]>,
}

impl<const N: usize> Table<N> {
    const fn new(head: &'static str, key: usize) -> Self {
        Table {
            head,
            key,
            rows: Vec::new(),
        }
    }

    /// Writes the rows in key order, many per statement. The statements take 64, 32, …, 1
    /// rows, so that a few prepared statements per table serve every batch size.
    fn flush(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let key = self.key;
        self.rows.sort_unstable_by(|a, b| {
            a[..key]
                .iter()
                .zip(&b[..key])
                .map(|(x, y)| sql_order(x, y))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        });
        let rows = std::mem::take(&mut self.rows);
        let one = format!("({})", vec!["?"; N].join(", "));
        let mut rest = &rows[..];
        while !rest.is_empty() {
            let n = [64, 32, 16, 8, 4, 2, 1]
                .into_iter()
                .find(|&n| n <= rest.len())
                .unwrap_or(1);
            let (chunk, tail) = rest.split_at(n);
            let sql = format!("{} {}", self.head, vec![one.as_str(); n].join(", "));
            conn.prepare_cached(&sql)?
                .execute(rusqlite::params_from_iter(chunk.iter().flatten()))?;
            rest = tail;
        }
        Ok(())
    }
}

/// SQLite's order of values (NULL, numbers, text, blobs), for sorting rows before insertion.
fn sql_order(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Integer(_) | Value::Real(_) => 1,
            Value::Text(_) => 2,
            Value::Blob(_) => 3,
        }
    }
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Integer(x), Value::Real(y)) => (*x as f64).total_cmp(y),
        (Value::Real(x), Value::Integer(y)) => x.total_cmp(&(*y as f64)),
        (Value::Real(x), Value::Real(y)) => x.total_cmp(y),
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// The index rows the writer has gathered and not yet written. A job's rows are written
/// together when it ends (and before anything in it reads the index): per table and in key
/// order, many to a statement, which costs the B-trees far fewer page visits than one row at
/// a time in the order the values were extracted.
pub struct Rows {
    /// The versions whose rows are gathered here.
    seqs: std::collections::HashSet<i64>,
    string: Table<4>,
    token: Table<5>,
    token_text: Table<3>,
    reference: Table<4>,
    date: Table<4>,
    number: Table<5>,
    quantity: Table<10>,
    uri: Table<3>,
    composite: Table<13>,
}

impl Default for Rows {
    fn default() -> Self {
        Rows {
            seqs: Default::default(),
            string: Table::new("INSERT OR IGNORE INTO idx_string (param, value, seq, original) VALUES", 4),
            token: Table::new("INSERT OR IGNORE INTO idx_token (param, code, system, seq, sort) VALUES", 4),
            token_text: Table::new("INSERT OR IGNORE INTO idx_token_text (param, text, seq) VALUES", 3),
            reference: Table::new("INSERT OR IGNORE INTO idx_reference (param, key, seq, sort) VALUES", 3),
            date: Table::new("INSERT OR IGNORE INTO idx_date (param, start, end, seq) VALUES", 4),
            number: Table::new("INSERT OR IGNORE INTO idx_number (param, low, high, seq, value) VALUES", 5),
            quantity: Table::new(
                "INSERT INTO idx_quantity (param, code, low, seq, high, system, unit, canonical_unit, canonical_low, canonical_high) VALUES",
                4,
            ),
            uri: Table::new("INSERT OR IGNORE INTO idx_uri (param, value, seq) VALUES", 3),
            composite: Table::new(
                "INSERT INTO idx_composite (param, a_code, a_system, seq, tuple, pos, b_code, b_system, b_text, b_original, b_unit, b_low, b_high) VALUES",
                4,
            ),
        }
    }
}

impl Rows {
    /// Writes every gathered row.
    pub fn flush(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        self.seqs.clear();
        self.string.flush(conn)?;
        self.token.flush(conn)?;
        self.token_text.flush(conn)?;
        self.reference.flush(conn)?;
        self.date.flush(conn)?;
        self.number.flush(conn)?;
        self.quantity.flush(conn)?;
        self.uri.flush(conn)?;
        self.composite.flush(conn)
    }

    /// Whether rows of version `seq` are gathered and not yet written.
    pub fn holds(&self, seq: i64) -> bool {
        self.seqs.contains(&seq)
    }

    /// Forgets the gathered rows (their job is rolled back).
    pub fn clear(&mut self) {
        self.seqs.clear();
        self.string.rows.clear();
        self.token.rows.clear();
        self.token_text.rows.clear();
        self.reference.rows.clear();
        self.date.rows.clear();
        self.number.rows.clear();
        self.quantity.rows.clear();
        self.uri.rows.clear();
        self.composite.rows.clear();
    }

    fn add(&mut self, param: i64, seq: i64, value: &IndexValue, tuples: &mut HashMap<i64, i64>) {
        let t = |s: &str| Value::Text(s.to_string());
        match value {
            IndexValue::String {
                normalized,
                original,
            } => self
                .string
                .rows
                .push([param.into(), t(normalized), seq.into(), t(original)]),
            IndexValue::Token {
                system,
                code,
                text: display,
            } => {
                if code.is_some() || system.is_some() {
                    // `sort` is what `_sort` orders by: system, then code.
                    self.token.rows.push([
                        param.into(),
                        opt_hash(code).into(),
                        opt_hash(system).into(),
                        seq.into(),
                        Value::Text(format!("{}\u{1}{}", text(system), text(code))),
                    ]);
                }
                if let Some(display) = display {
                    self.token_text.rows.push([
                        param.into(),
                        Value::Text(flint_search::normalize_string(display)),
                        seq.into(),
                    ]);
                }
            }
            IndexValue::Reference {
                resource_type,
                id,
                version,
                url,
                identifier,
            } => {
                // What `_sort` orders by, on each of the value's rows.
                let sort = reference_sort_text(
                    resource_type.as_deref(),
                    id.as_deref(),
                    url.as_deref(),
                    identifier,
                );
                for key in reference_keys(
                    resource_type.as_deref(),
                    id.as_deref(),
                    version.as_deref(),
                    url.as_deref(),
                    identifier,
                ) {
                    self.reference.rows.push([
                        param.into(),
                        key_hash(&key).into(),
                        seq.into(),
                        sort.clone().map_or(Value::Null, Value::Text),
                    ]);
                }
            }
            IndexValue::Date { start, end } => {
                self.date
                    .rows
                    .push([param.into(), (*start).into(), (*end).into(), seq.into()]);
            }
            IndexValue::Number { value, low, high } => self.number.rows.push([
                param.into(),
                (*low).into(),
                (*high).into(),
                seq.into(),
                t(value),
            ]),
            IndexValue::Quantity {
                low,
                high,
                system,
                code,
                unit,
                canonical,
                ..
            } => {
                let (cu, cl, ch) = match canonical {
                    Some(c) => (&*c.unit, Value::Real(c.low), Value::Real(c.high)),
                    None => ("", Value::Null, Value::Null),
                };
                self.quantity.rows.push([
                    param.into(),
                    t(text(code)),
                    (*low).into(),
                    seq.into(),
                    (*high).into(),
                    t(text(system)),
                    t(text(unit)),
                    t(cu),
                    cl,
                    ch,
                ]);
            }
            IndexValue::Uri(uri) => {
                self.uri.rows.push([param.into(), t(uri), seq.into()]);
            }
            IndexValue::Composite(parts) => {
                let tuple = tuples.entry(param).or_insert(0);
                self.composite_rows(param, seq, *tuple, parts);
                *tuple += 1;
            }
        }
    }

    /// The rows of one composite tuple (see the `idx_composite` table): for each key of the
    /// first component, a row per trailing component's value.
    fn composite_rows(&mut self, param: i64, seq: i64, tuple: i64, parts: &[IndexValue]) {
        let Some((first, rest)) = parts.split_first() else {
            return;
        };
        let keys = composite_keys(first);
        let mut columns: Vec<Vec<CompositeColumns>> = rest.iter().map(composite_columns).collect();
        if columns.is_empty() {
            // A composite of one component: a row with empty `b_` columns.
            columns.push(vec![(
                None,
                None,
                None,
                None,
                None,
                Value::Null,
                Value::Null,
            )]);
        }
        if keys.is_empty() || columns.iter().any(Vec::is_empty) {
            return;
        }
        let opt_int = |v: &Option<i64>| v.map_or(Value::Null, Value::Integer);
        let opt_text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
        for (a_code, a_system) in keys {
            for (i, rows) in columns.iter().enumerate() {
                for (code, system, text, original, unit, low, high) in rows {
                    self.composite.rows.push([
                        param.into(),
                        a_code.into(),
                        a_system.into(),
                        seq.into(),
                        tuple.into(),
                        (i as i64 + 1).into(),
                        opt_int(code),
                        opt_int(system),
                        opt_text(text),
                        opt_text(original),
                        opt_text(unit),
                        low.clone(),
                        high.clone(),
                    ]);
                }
            }
        }
    }
}

/// What a reference sorts by: `Type/id` for a literal reference, else its absolute URL,
/// else its identifier's value.
fn reference_sort_text(
    resource_type: Option<&str>,
    id: Option<&str>,
    url: Option<&str>,
    identifier: &Option<(Option<std::borrow::Cow<'_, str>>, std::borrow::Cow<'_, str>)>,
) -> Option<String> {
    match (resource_type, id, url) {
        (Some(t), Some(id), _) => Some(format!("{t}/{id}")),
        (_, _, Some(url)) => Some(url.to_string()),
        _ => identifier.as_ref().map(|(_, v)| v.to_string()),
    }
}

/// The key hashes `(code, system)` under which a composite's first component is found: a
/// token's code and system, or each key of a reference (system 0). Empty for other kinds.
pub fn composite_keys(value: &IndexValue) -> Vec<(i64, i64)> {
    match value {
        IndexValue::Token { system, code, .. } if code.is_some() || system.is_some() => {
            vec![(opt_hash(code), opt_hash(system))]
        }
        IndexValue::Reference {
            resource_type,
            id,
            version,
            url,
            identifier,
        } => reference_keys(
            resource_type.as_deref(),
            id.as_deref(),
            version.as_deref(),
            url.as_deref(),
            identifier,
        )
        .iter()
        .map(|k| (key_hash(k), 0))
        .collect(),
        _ => Vec::new(),
    }
}

/// The `b_` columns of a composite row holding one trailing component's value: one set per
/// way it can be found (a reference has several keys).
type CompositeColumns = (
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Value,
    Value,
);

fn composite_columns(value: &IndexValue) -> Vec<CompositeColumns> {
    use rusqlite::types::Value as V;
    let none = |low: V, high: V| (None, None, None, None, None, low, high);
    match value {
        IndexValue::Token { system, code, .. } => {
            if code.is_none() && system.is_none() {
                return Vec::new();
            }
            let mut row = none(V::Null, V::Null);
            row.0 = Some(opt_hash(code));
            row.1 = Some(opt_hash(system));
            vec![row]
        }
        IndexValue::Reference { .. } => composite_keys(value)
            .into_iter()
            .map(|(k, _)| {
                let mut row = none(V::Null, V::Null);
                row.0 = Some(k);
                row
            })
            .collect(),
        IndexValue::String {
            normalized,
            original,
        } => {
            let mut row = none(V::Null, V::Null);
            row.2 = Some(normalized.to_string());
            row.3 = Some(original.to_string());
            vec![row]
        }
        IndexValue::Uri(uri) => {
            let mut row = none(V::Null, V::Null);
            row.2 = Some(uri.to_string());
            vec![row]
        }
        IndexValue::Date { start, end } => vec![none(V::Integer(*start), V::Integer(*end))],
        IndexValue::Number { low, high, .. } => vec![none(V::Real(*low), V::Real(*high))],
        IndexValue::Quantity {
            low,
            high,
            system,
            code,
            unit,
            ..
        } => {
            let mut row = none(V::Real(*low), V::Real(*high));
            row.2 = Some(text(code).to_string());
            row.3 = Some(text(system).to_string());
            row.4 = Some(text(unit).to_string());
            vec![row]
        }
        IndexValue::Composite(_) => Vec::new(),
    }
}

/// Every index table; each has a `seq` column.
pub const INDEX_TABLES: [&str; 9] = [
    "idx_string",
    "idx_token",
    "idx_token_text",
    "idx_reference",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_uri",
    "idx_composite",
];

/// Removes the index rows of the versions `delete_history` is about to remove.
pub fn delete_for_history(
    conn: &Connection,
    resource_type: &str,
    id: &str,
) -> rusqlite::Result<()> {
    delete_rows_of(conn, resource_type, id, " AND t_end IS NOT NULL")
}

/// Removes the index rows and full-text rows of every version of a resource (`$purge`).
pub fn delete_for_resource(
    conn: &Connection,
    resource_type: &str,
    id: &str,
) -> rusqlite::Result<()> {
    delete_rows_of(conn, resource_type, id, "")
}

/// Removes the index and full-text rows of a resource's versions that `only` (an SQL
/// condition on `resource`, or nothing) selects.
fn delete_rows_of(
    conn: &Connection,
    resource_type: &str,
    id: &str,
    only: &str,
) -> rusqlite::Result<()> {
    let versions = format!("SELECT seq FROM resource WHERE type = ?1 AND id = ?2{only}");
    for table in INDEX_TABLES {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE seq IN ({versions})"))?
            .execute((resource_type, id))?;
    }
    conn.prepare_cached(&format!(
        "DELETE FROM idx_fulltext WHERE rowid IN ({versions})"
    ))?
    .execute((resource_type, id))?;
    Ok(())
}

/// Removes the index rows of one version (before `$reindex` writes them anew); its full-text
/// row stays: full text depends on the resource alone.
pub fn delete_for_version(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    for table in INDEX_TABLES {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE seq = ?1"))?
            .execute([seq])?;
    }
    Ok(())
}

/// Whether version `seq` has its full-text row.
pub fn has_full_text(conn: &Connection, seq: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM idx_fulltext WHERE rowid = ?1")?
        .query_row([seq], |_| Ok(()))
        .optional()
        .map(|o| o.is_some())
}
