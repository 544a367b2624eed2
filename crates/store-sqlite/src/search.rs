//! Renders a [`SearchQuery`] to SQL over the `resource` table and the index tables.
//!
//! Each predicate becomes `r.seq IN (SELECT seq FROM idx_... WHERE param = ? AND ...)` over
//! the index rows of every version; the outer query keeps the versions current at the
//! snapshot, so a page read later sees exactly what the first page saw.

use std::collections::HashMap;

use flint_store::search::{
    Order, Position, Predicate, Prefix, SearchQuery, SortBy, StringMatch, UriMatch,
};
use flint_store::ParamType;
use rusqlite::types::Value as V;
use rusqlite::Connection;

use crate::index::{key_hash, param_id, INDEX_TABLES};

/// The largest code point: appended to a prefix it bounds every string that starts with it.
const MAX_CHAR: char = '\u{10FFFF}';

/// Committed search parameter ids by `type \0 code`, shared by the readers (ids are never
/// reused or removed; an id a write job created is cached only once committed, which a
/// reader seeing it implies).
pub type ParamCache = parking_lot::RwLock<HashMap<String, i64>>;

struct Sql<'c> {
    conn: &'c Connection,
    cache: Option<&'c ParamCache>,
    /// The type and table alias of the resource the predicates being rendered are about;
    /// chains and `_has` render inner predicates about other resources.
    resource_type: String,
    alias: String,
    aliases: usize,
    snapshot: Option<u64>,
    /// The last index predicate rendered, as its `IN` text and its sub-select: the first
    /// clause's, when it has a single alternative, drives the query (see `render`).
    last_indexed: Option<(String, String)>,
    /// Render index predicates as correlated `EXISTS` look-ups (filters) rather than `IN`
    /// lists (drivers).
    correlated: bool,
    /// Set by a predicate whose index rows are unique per version (see `indexed`).
    unique_walk: bool,
    /// Set when a predicate about the searched resource reads its version row (`id`,
    /// `last_updated`) rather than only its `seq`.
    row_used: bool,
    /// The bound parameter id and range of the last string prefix predicate rendered as a
    /// driver, for a walk in index order (see `render`).
    string_walk: Option<(String, String, String)>,
    params: Vec<V>,
    ids: HashMap<String, Option<i64>>,
}

impl Sql<'_> {
    fn bind(&mut self, v: V) -> String {
        self.params.push(v);
        format!("?{}", self.params.len())
    }

    fn text(&mut self, s: &str) -> String {
        self.bind(V::Text(s.to_string()))
    }

    fn int(&mut self, i: i64) -> String {
        self.bind(V::Integer(i))
    }

    fn real(&mut self, f: f64) -> String {
        self.bind(V::Real(f))
    }

    fn param(&mut self, code: &str) -> rusqlite::Result<Option<i64>> {
        let key = format!("{}\u{0}{code}", self.resource_type);
        if let Some(id) = self.ids.get(&key) {
            return Ok(*id);
        }
        if let Some(id) = self.cache.and_then(|c| c.read().get(&key).copied()) {
            return Ok(Some(id));
        }
        let id = param_id(self.conn, &self.resource_type, code)?;
        if let (Some(cache), Some(id)) = (self.cache, id) {
            cache.write().insert(key.clone(), id);
        }
        self.ids.insert(key, id);
        Ok(id)
    }

    /// The versions of `alias` the query reads: current at the snapshot, not deleted.
    fn live(&mut self, alias: &str) -> String {
        match self.snapshot {
            Some(t) => {
                let t = self.int(t as i64);
                format!("{alias}.json IS NOT NULL AND {alias}.t <= {t} AND ({alias}.t_end IS NULL OR {alias}.t_end > {t})")
            }
            None => format!("{alias}.json IS NOT NULL AND {alias}.t_end IS NULL"),
        }
    }

    /// The versions of `alias` the query reads, decided from its `seq` alone (for index rows,
    /// which only exist for versions that hold a resource): written by the snapshot and not
    /// ended by it.
    fn live_seq(&mut self, alias: &str) -> rusqlite::Result<String> {
        Ok(match self.snapshot {
            Some(t) => {
                let last_seq: i64 = self.conn.prepare_cached(
                    "SELECT coalesce((SELECT last_seq FROM tx WHERE t <= ?1 ORDER BY t DESC LIMIT 1), 0)",
                )?
                .query_row([t as i64], |r| r.get(0))?;
                let last_seq = self.int(last_seq);
                let t = self.int(t as i64);
                format!(
                    "{alias}.seq <= {last_seq} AND NOT EXISTS (SELECT 1 FROM ended e WHERE e.seq = {alias}.seq AND e.t_end <= {t})"
                )
            }
            None => format!("NOT EXISTS (SELECT 1 FROM ended e WHERE e.seq = {alias}.seq)"),
        })
    }

    /// Notes that a predicate reads the row of the searched resource.
    fn uses_row(&mut self) {
        if self.alias == "r" {
            self.row_used = true;
        }
    }

    /// Renders clauses about another resource type under a fresh alias; returns the alias and
    /// the conditions.
    fn nested(
        &mut self,
        resource_type: &str,
        clauses: &[Vec<Predicate>],
    ) -> rusqlite::Result<(String, String)> {
        self.aliases += 1;
        let alias = format!("n{}", self.aliases);
        let saved = (
            std::mem::replace(&mut self.resource_type, resource_type.to_string()),
            std::mem::replace(&mut self.alias, alias.clone()),
        );
        let rt = self.text(resource_type);
        let mut conditions = vec![format!("{alias}.type = {rt}"), self.live(&alias)];
        let rendered = self.clauses(clauses);
        (self.resource_type, self.alias) = saved;
        conditions.extend(rendered?);
        Ok((alias, conditions.join(" AND ")))
    }

    fn clauses(&mut self, clauses: &[Vec<Predicate>]) -> rusqlite::Result<Vec<String>> {
        let mut out = Vec::new();
        for clause in clauses {
            let alternatives: Vec<String> = clause
                .iter()
                .map(|p| self.predicate(p))
                .collect::<rusqlite::Result<_>>()?;
            if !alternatives.is_empty() {
                out.push(format!("({})", alternatives.join(" OR ")));
            }
        }
        Ok(out)
    }

    /// `r.seq IN (SELECT seq FROM table WHERE param = ? AND condition)`, or false when the
    /// parameter was never indexed.
    fn indexed(&mut self, code: &str, table: &str, condition: &str) -> rusqlite::Result<String> {
        match self.param(code)? {
            None => Ok("0".into()),
            Some(id) => {
                let p = self.int(id);
                if let Some(walk) = self.string_walk.as_mut().filter(|w| w.0.is_empty()) {
                    walk.0 = p.clone();
                }
                let and = if condition.is_empty() {
                    String::new()
                } else {
                    format!(" AND {condition}")
                };
                if self.correlated {
                    // A filter on a version found another way: look its rows up by `seq`,
                    // through the `(seq, param)` index where the table's key does not lead
                    // there (the planner, without statistics, might otherwise scan a range).
                    let by_seq = match table {
                        "idx_token" | "idx_reference" => String::new(),
                        _ => format!(" INDEXED BY {table}_seq"),
                    };
                    return Ok(format!(
                        "EXISTS (SELECT 1 FROM {table}{by_seq} WHERE param = {p} AND seq = {}.seq{and})",
                        self.alias
                    ));
                }
                // A resource with several matching values is one match: DISTINCT, unless the
                // condition fixes every key column before `seq` (then rows are unique per
                // version, and the walk stays in `seq` order without sorting).
                let distinct = if std::mem::take(&mut self.unique_walk) {
                    ""
                } else {
                    "DISTINCT "
                };
                let subselect = format!("SELECT {distinct}seq FROM {table} WHERE param = {p}{and}");
                let text = format!("{}.seq IN ({subselect})", self.alias);
                self.last_indexed = Some((text.clone(), subselect));
                Ok(text)
            }
        }
    }

    fn prefix_range(&mut self, column: &str, prefix: &str) -> String {
        let low = self.text(prefix);
        let high = self.text(&format!("{prefix}{MAX_CHAR}"));
        format!("{column} >= {low} AND {column} < {high}")
    }

    fn predicate(&mut self, p: &Predicate) -> rusqlite::Result<String> {
        // A parameter never indexed matches nothing; decide before binding any value, since
        // every bound value must appear in the statement.
        let indexed_param = match p {
            Predicate::String { param, .. }
            | Predicate::Token { param, .. }
            | Predicate::TokenText { param, .. }
            | Predicate::Reference { param, .. }
            | Predicate::Date { param, .. }
            | Predicate::Number { param, .. }
            | Predicate::Quantity { param, .. }
            | Predicate::Uri { param, .. }
            | Predicate::Composite { param, .. } => Some(param),
            _ => None,
        };
        if let Some(code) = indexed_param {
            if self.param(code)?.is_none() {
                return Ok("0".into());
            }
        }
        Ok(match p {
            Predicate::Id(id) => {
                self.uses_row();
                let v = self.text(id);
                format!("{}.id = {v}", self.alias)
            }
            Predicate::LastUpdated { prefix, start, end } => {
                self.uses_row();
                date_condition(
                    self,
                    *prefix,
                    *start,
                    *end,
                    &format!("{}.last_updated", self.alias.clone()),
                    &format!("({}.last_updated + 1)", self.alias.clone()),
                )
            }
            Predicate::String { param, value, how } => {
                let condition = match how {
                    StringMatch::Prefix => {
                        let normalized = flint_search::normalize_string(value);
                        let low = self.text(&normalized);
                        let high = self.text(&format!("{normalized}{MAX_CHAR}"));
                        if !self.correlated {
                            // The parameter's bound id is filled in by `indexed` below.
                            self.string_walk = Some((String::new(), low.clone(), high.clone()));
                        }
                        format!("value >= {low} AND value < {high}")
                    }
                    StringMatch::Exact => {
                        let normalized = self.text(&flint_search::normalize_string(value));
                        let original = self.text(value);
                        format!("value = {normalized} AND original = {original}")
                    }
                    StringMatch::Contains => {
                        let pattern = self.text(&format!("%{}%", escape_like(value)));
                        format!("value LIKE {pattern} ESCAPE '\\'")
                    }
                };
                self.indexed(param, "idx_string", &condition)?
            }
            Predicate::Token {
                param,
                system,
                code,
            } => {
                let condition = self
                    .token_terms(code, system, "code", "system")
                    .join(" AND ");
                self.unique_walk = code.is_some() && system.is_some();
                self.indexed(param, "idx_token", &condition)?
            }
            Predicate::TokenText { param, text } => {
                let condition = self.prefix_range("text", &flint_search::normalize_string(text));
                self.indexed(param, "idx_token_text", &condition)?
            }
            Predicate::Reference { param, keys } => {
                if keys.is_empty() {
                    return Ok("0".into());
                }
                let list: Vec<String> = keys.iter().map(|k| self.int(key_hash(k))).collect();
                let condition = format!("key IN ({})", list.join(", "));
                self.unique_walk = keys.len() == 1;
                self.indexed(param, "idx_reference", &condition)?
            }
            Predicate::Date {
                param,
                prefix,
                start,
                end,
            } => {
                let condition = date_condition(self, *prefix, *start, *end, "start", "end");
                self.indexed(param, "idx_date", &condition)?
            }
            Predicate::Number {
                param,
                prefix,
                value,
                low,
                high,
            } => {
                let condition = number_condition(self, *prefix, *value, *low, *high);
                self.indexed(param, "idx_number", &condition)?
            }
            Predicate::Quantity {
                param,
                prefix,
                value,
                low,
                high,
                system,
                code,
            } => {
                let mut condition = number_condition(self, *prefix, *value, *low, *high);
                if let Some(code) = code {
                    let c = self.text(code);
                    // Without a system, the code may be the coded unit or the unit as
                    // written (R4 search, quantity: "either the code or the stated human
                    // unit"); with one, it is the coded unit of that system.
                    if system.is_some() {
                        condition.push_str(&format!(" AND code = {c}"));
                    } else {
                        condition.push_str(&format!(" AND (code = {c} OR unit = {c})"));
                    }
                }
                if let Some(system) = system {
                    condition.push_str(&format!(" AND system = {}", self.text(system)));
                }
                self.indexed(param, "idx_quantity", &condition)?
            }
            Predicate::Uri { param, value, how } => {
                let condition = match how {
                    UriMatch::Exact => format!("value = {}", self.text(value)),
                    UriMatch::Below => self.prefix_range("value", value),
                    UriMatch::Above => {
                        let v = self.text(value);
                        format!("substr({v}, 1, length(value)) = value")
                    }
                };
                self.indexed(param, "idx_uri", &condition)?
            }
            Predicate::Composite { param, components } => {
                let condition = self.composite(components)?;
                self.indexed(param, "idx_composite", &condition)?
            }
            Predicate::Missing { param, missing } => match self.param(param)? {
                None => {
                    if *missing {
                        "1".into()
                    } else {
                        "0".into()
                    }
                }
                Some(id) => {
                    let p = self.int(id);
                    let union: Vec<String> = INDEX_TABLES
                        .iter()
                        .map(|t| format!("SELECT seq FROM {t} WHERE param = {p}"))
                        .collect();
                    let not = if *missing { "NOT " } else { "" };
                    format!("{}.seq {not}IN ({})", self.alias, union.join(" UNION ALL "))
                }
            },
            Predicate::Chain {
                param,
                target_type,
                inner,
            } => {
                let Some(p) = self.param(param)? else {
                    return Ok("0".into());
                };
                let outer = self.alias.clone();
                let p = self.int(p);
                let (alias, conditions) = self.nested(target_type, inner)?;
                let prefix = self.text(&format!("{target_type}/"));
                format!(
                    "{outer}.seq IN (SELECT seq FROM idx_reference WHERE param = {p} AND key IN \
                     (SELECT flint_hash({prefix} || {alias}.id) FROM resource {alias} WHERE {conditions}))"
                )
            }
            Predicate::Has {
                source_type,
                param,
                inner,
            } => {
                self.uses_row();
                // The parameter belongs to the source type.
                let outer_type = std::mem::replace(&mut self.resource_type, source_type.clone());
                let id = self.param(param);
                self.resource_type = outer_type;
                let Some(p) = id? else { return Ok("0".into()) };
                let outer = self.alias.clone();
                let p = self.int(p);
                let (alias, conditions) = self.nested(source_type, inner)?;
                let prefix = self.text(&format!("{}/", self.resource_type.clone()));
                format!(
                    "flint_hash({prefix} || {outer}.id) IN (SELECT key FROM idx_reference WHERE param = {p} AND seq IN \
                     (SELECT {alias}.seq FROM resource {alias} WHERE {conditions}))"
                )
            }
            Predicate::Nothing => "0".into(),
            Predicate::FullText { narrative, words } => {
                if words.is_empty() {
                    return Ok("0".into());
                }
                // Every word as a quoted FTS5 string (no query syntax gets through), in the
                // chosen column, and the resource type as a token of its own column.
                let quoted: Vec<String> = words
                    .iter()
                    .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
                    .collect();
                let column = if *narrative { "narrative" } else { "content" };
                let query = self.text(&format!(
                    "kind : \"{}\" AND {column} : ({})",
                    self.resource_type.replace('"', ""),
                    quoted.join(" ")
                ));
                let subselect = format!(
                    "SELECT rowid AS seq FROM idx_fulltext WHERE idx_fulltext MATCH {query}"
                );
                let text = format!("{}.seq IN ({subselect})", self.alias);
                if !self.correlated {
                    self.last_indexed = Some((text.clone(), subselect));
                }
                text
            }
            Predicate::Not(alternatives) => {
                let inner: Vec<String> = alternatives
                    .iter()
                    .map(|p| self.predicate(p))
                    .collect::<rusqlite::Result<_>>()?;
                format!("NOT ({})", inner.join(" OR "))
            }
        })
    }
}

impl Sql<'_> {
    /// `= ?` or `IN (?, ...)` over the ids of the sorted parameter: of the searched type, or
    /// of each type of a system search (a version belongs to one type, so its rows carry
    /// that type's id). `None` when the parameter was never indexed.
    fn sort_param(
        &mut self,
        code: &str,
        types: &[(String, Vec<Vec<Predicate>>)],
    ) -> rusqlite::Result<Option<String>> {
        let mut ids = Vec::new();
        if types.is_empty() {
            ids.extend(self.param(code)?);
        } else {
            let saved = self.resource_type.clone();
            for (t, _) in types {
                self.resource_type = t.clone();
                let id = self.param(code);
                if let Ok(Some(id)) = id {
                    ids.push(id);
                } else if let Err(e) = id {
                    self.resource_type = saved;
                    return Err(e);
                }
            }
            self.resource_type = saved;
        }
        Ok(match ids.as_slice() {
            [] => None,
            [one] => Some(format!("= {}", self.int(*one))),
            _ => {
                let list: Vec<String> = ids.iter().map(|i| self.int(*i)).collect();
                Some(format!("IN ({})", list.join(", ")))
            }
        })
    }

    /// The condition on `idx_composite` rows for one tuple of component values: the first
    /// component on the row's key, the second on its `b_` columns, and each further one on
    /// another row of the same tuple.
    fn composite(&mut self, components: &[Predicate]) -> rusqlite::Result<String> {
        let Some((first, rest)) = components.split_first() else {
            return Ok("0".into());
        };
        let mut parts = vec!["pos = 1".to_string()];
        match first {
            Predicate::Token { system, code, .. } => {
                parts.extend(self.token_terms(code, system, "a_code", "a_system"));
            }
            Predicate::Reference { keys, .. } => {
                if keys.is_empty() {
                    return Ok("0".into());
                }
                let list: Vec<String> = keys.iter().map(|k| self.int(key_hash(k))).collect();
                parts.push(format!("a_code IN ({}) AND a_system = 0", list.join(", ")));
            }
            _ => return Ok("0".into()),
        }
        for (i, component) in rest.iter().enumerate() {
            let pos = i + 1;
            if pos == 1 {
                let condition = self.composite_component(component, "")?;
                parts.push(condition);
            } else {
                let alias = format!("c{pos}");
                let condition = self.composite_component(component, &format!("{alias}."))?;
                parts.push(format!(
                    "EXISTS (SELECT 1 FROM idx_composite {alias} WHERE {alias}.seq = idx_composite.seq \
                     AND {alias}.param = idx_composite.param AND {alias}.tuple = idx_composite.tuple \
                     AND {alias}.pos = {pos} AND {condition})"
                ));
            }
        }
        Ok(parts.join(" AND "))
    }

    /// The terms matching a token's hashed code and system columns: `system` is `None` for
    /// any system, `Some(None)` for none (stored as 0).
    fn token_terms(
        &mut self,
        code: &Option<String>,
        system: &Option<Option<String>>,
        code_column: &str,
        system_column: &str,
    ) -> Vec<String> {
        let mut terms = Vec::new();
        if let Some(code) = code {
            terms.push(format!("{code_column} = {}", self.int(key_hash(code))));
        }
        match system {
            None => {}
            Some(None) => terms.push(format!("{system_column} = 0")),
            Some(Some(s)) => terms.push(format!("{system_column} = {}", self.int(key_hash(s)))),
        }
        terms
    }

    /// One trailing component's condition on the `b_` columns (prefixed with `col`).
    fn composite_component(&mut self, p: &Predicate, col: &str) -> rusqlite::Result<String> {
        let c = |name: &str| format!("{col}{name}");
        Ok(match p {
            Predicate::Token { system, code, .. } => {
                let parts = self.token_terms(code, system, &c("b_code"), &c("b_system"));
                if parts.is_empty() {
                    format!("{} IS NOT NULL", c("b_code"))
                } else {
                    parts.join(" AND ")
                }
            }
            Predicate::Reference { keys, .. } => {
                if keys.is_empty() {
                    return Ok("0".into());
                }
                let list: Vec<String> = keys.iter().map(|k| self.int(key_hash(k))).collect();
                format!("{} IN ({})", c("b_code"), list.join(", "))
            }
            Predicate::String { value, how, .. } => match how {
                StringMatch::Prefix => self.prefix_range(&c("b_text"), value),
                StringMatch::Exact => {
                    let normalized = self.text(&flint_search::normalize_string(value));
                    let original = self.text(value);
                    format!(
                        "{} = {normalized} AND {} = {original}",
                        c("b_text"),
                        c("b_original")
                    )
                }
                StringMatch::Contains => {
                    let pattern = self.text(&format!("%{}%", escape_like(value)));
                    format!("{} LIKE {pattern} ESCAPE '\\'", c("b_text"))
                }
            },
            Predicate::Uri { value, how, .. } => match how {
                UriMatch::Exact => format!("{} = {}", c("b_text"), self.text(value)),
                UriMatch::Below => self.prefix_range(&c("b_text"), value),
                UriMatch::Above => {
                    let v = self.text(value);
                    let t = c("b_text");
                    format!("substr({v}, 1, length({t})) = {t}")
                }
            },
            Predicate::Date {
                prefix, start, end, ..
            } => date_condition(self, *prefix, *start, *end, &c("b_low"), &c("b_high")),
            Predicate::Number {
                prefix,
                value,
                low,
                high,
                ..
            } => number_condition_on(
                self,
                *prefix,
                *value,
                (*low, *high),
                (&c("b_low"), &c("b_high")),
            ),
            Predicate::Quantity {
                prefix,
                value,
                low,
                high,
                system,
                code,
                ..
            } => {
                let mut condition = number_condition_on(
                    self,
                    *prefix,
                    *value,
                    (*low, *high),
                    (&c("b_low"), &c("b_high")),
                );
                condition = format!("{} IS NOT NULL AND {condition}", c("b_unit"));
                if let Some(code) = code {
                    let v = self.text(code);
                    if system.is_some() {
                        condition.push_str(&format!(" AND {} = {v}", c("b_text")));
                    } else {
                        condition.push_str(&format!(
                            " AND ({t} = {v} OR {u} = {v})",
                            t = c("b_text"),
                            u = c("b_unit")
                        ));
                    }
                }
                if let Some(system) = system {
                    let v = self.text(system);
                    condition.push_str(&format!(" AND {} = {v}", c("b_original")));
                }
                condition
            }
            _ => "0".into(),
        })
    }
}

fn escape_like(s: &str) -> String {
    let normalized = flint_search::normalize_string(s);
    normalized
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Date prefixes over a stored range `[start, end)` against the searched range `[ps, pe)`.
fn date_condition(
    sql: &mut Sql,
    prefix: Prefix,
    ps: i64,
    pe: i64,
    start: &str,
    end: &str,
) -> String {
    // Bind only what the condition uses: every `?N` must appear in the statement.
    match prefix {
        Prefix::Eq => format!("{start} >= {} AND {end} <= {}", sql.int(ps), sql.int(pe)),
        Prefix::Ne => format!(
            "NOT ({start} >= {} AND {end} <= {})",
            sql.int(ps),
            sql.int(pe)
        ),
        Prefix::Gt => format!("{end} > {}", sql.int(pe)),
        Prefix::Lt => format!("{start} < {}", sql.int(ps)),
        Prefix::Ge => format!("{end} > {}", sql.int(ps)),
        Prefix::Le => format!("{start} < {}", sql.int(pe)),
        Prefix::Sa => format!("{start} >= {}", sql.int(pe)),
        Prefix::Eb => format!("{end} <= {}", sql.int(ps)),
        Prefix::Ap => {
            // Approximately: the searched range widened by a tenth of its distance from now.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            let margin = ((now - ps).abs() / 10).max(86_400_000_000);
            let (s2, e2) = (
                sql.int(ps.saturating_sub(margin)),
                sql.int(pe.saturating_add(margin)),
            );
            format!("{start} < {e2} AND {end} > {s2}")
        }
    }
}

/// Number prefixes: the stored value (the middle of its precision range) against the searched
/// value, whose own precision gives the range `eq` accepts.
fn number_condition(sql: &mut Sql, prefix: Prefix, value: f64, low: f64, high: f64) -> String {
    number_condition_on(sql, prefix, value, (low, high), ("low", "high"))
}

/// [`number_condition`] over the named low and high columns.
fn number_condition_on(
    sql: &mut Sql,
    prefix: Prefix,
    value: f64,
    (low, high): (f64, f64),
    (low_col, high_col): (&str, &str),
) -> String {
    let mid = format!("(({low_col} + {high_col}) / 2.0)");
    match prefix {
        Prefix::Eq => format!("{mid} >= {} AND {mid} < {}", sql.real(low), sql.real(high)),
        Prefix::Ne => format!(
            "NOT ({mid} >= {} AND {mid} < {})",
            sql.real(low),
            sql.real(high)
        ),
        Prefix::Gt | Prefix::Sa => format!("{mid} > {}", sql.real(value)),
        Prefix::Lt | Prefix::Eb => format!("{mid} < {}", sql.real(value)),
        Prefix::Ge => format!("{mid} >= {}", sql.real(value)),
        Prefix::Le => format!("{mid} <= {}", sql.real(value)),
        Prefix::Ap => {
            let margin = (value.abs() * 0.1).max(high - low);
            format!(
                "{mid} >= {} AND {mid} <= {}",
                sql.real(value - margin),
                sql.real(value + margin)
            )
        }
    }
}

/// What [`render`] produced: SQL, its parameters, and what a row of its result holds.
pub struct Rendered {
    pub sql: String,
    pub params: Vec<V>,
    /// Rows hold only `seq`, in page order: the caller reads the versions by `seq`. (The
    /// query never touched a version row, and a page's few look-ups beat joining every
    /// candidate.)
    pub seq_only: bool,
    /// Rows hold `seq` and the driving string value, in index order (positions are
    /// [`Position::Key`]).
    pub index_order: bool,
}

/// The SQL and parameters of a search: the page (`count` false) or the total. `cache` holds
/// committed parameter ids (readers only: a write job may see ids it has not committed).
pub fn render(
    conn: &Connection,
    cache: Option<&ParamCache>,
    q: &SearchQuery,
    count: bool,
) -> rusqlite::Result<Rendered> {
    let mut sql = Sql {
        conn,
        cache,
        resource_type: q.resource_type.clone(),
        alias: "r".into(),
        aliases: 0,
        snapshot: q.snapshot,
        last_indexed: None,
        correlated: false,
        unique_walk: false,
        row_used: false,
        string_walk: None,
        params: Vec::new(),
        ids: HashMap::new(),
    };
    // Conditions on the version row (type, liveness) are added below once it is known whether
    // the row is read at all.
    let mut conditions = Vec::new();
    let system = q.all_types || !q.types.is_empty();
    if q.all_types {
        sql.correlated = true;
        conditions.extend(sql.clauses(&q.clauses)?);
    } else if system {
        // Each type with its own clauses, rendered as filters on the version.
        sql.correlated = true;
        let mut per_type = Vec::new();
        for (resource_type, clauses) in &q.types {
            sql.resource_type = resource_type.clone();
            // `#Type` are resources contained in others: found as their containers.
            let mut parts = if resource_type.starts_with('#') {
                vec!["1".to_string()]
            } else {
                let rt = sql.text(resource_type);
                vec![format!("r.type = {rt}")]
            };
            parts.extend(sql.clauses(clauses)?);
            per_type.push(format!("({})", parts.join(" AND ")));
        }
        conditions.push(format!("({})", per_type.join(" OR ")));
    }
    // The first clause, when it is a single index predicate, drives the query: its index rows
    // are walked (in `seq` order where the index allows) rather than every version of the
    // type being tested against a materialized list.
    let mut driver: Option<String> = None;
    for (i, clause) in q.clauses.iter().enumerate().filter(|_| !system) {
        sql.last_indexed = None;
        // Only the first clause may drive; a driver is rendered as an `IN` list.
        let single_index = clause.len() == 1
            && !matches!(
                clause[0],
                Predicate::Not(_)
                    | Predicate::Chain { .. }
                    | Predicate::Has { .. }
                    | Predicate::Missing { .. }
                    | Predicate::Id(_)
                    | Predicate::LastUpdated { .. }
            );
        sql.correlated = !(i == 0 && single_index);
        let rendered = sql.clauses(std::slice::from_ref(clause))?;
        sql.correlated = true;
        match (i, clause.as_slice(), sql.last_indexed.take()) {
            (0, [single], Some((text, subselect)))
                if !matches!(single, Predicate::Not(_))
                    && rendered.first() == Some(&format!("({text})")) =>
            {
                driver = Some(subselect);
            }
            _ => conditions.extend(rendered),
        }
    }
    let sort_reads_row = matches!(q.order, Order::Id | Order::IdDesc)
        || q.sort.iter().any(|k| matches!(k.by, SortBy::Id));
    // A driven query that reads nothing of the version row never joins it: liveness comes
    // from `seq` (see `live_seq`), and the page's rows are read by `seq` afterwards.
    let seq_only = driver.is_some() && !sql.row_used && (count || !sort_reads_row);
    let from = match &driver {
        Some(subselect) if seq_only => {
            // Last: the filters are index look-ups that discard most candidates first.
            let live = sql.live_seq("r")?;
            conditions.push(live);
            format!("({subselect}) r")
        }
        // CROSS JOIN keeps the driver as the outer loop whatever the planner estimates.
        Some(subselect) => {
            conditions.insert(0, sql.live("r"));
            format!("({subselect}) d CROSS JOIN resource r ON r.seq = d.seq")
        }
        None => {
            conditions.insert(0, sql.live("r"));
            if !system && !q.resource_type.starts_with('#') {
                let rt = sql.text(&q.resource_type);
                conditions.insert(0, format!("r.type = {rt}"));
            }
            "resource r".to_string()
        }
    };
    if count {
        return Ok(Rendered {
            sql: format!(
                "SELECT COUNT(*) FROM {from} WHERE {}",
                conditions.join(" AND ")
            ),
            params: sql.params,
            seq_only,
            index_order: false,
        });
    }
    // Without `_sort`, a string prefix walks its index in (value, seq) order and stops after
    // one page, where `seq` order would collect and sort every match first (the walk reads the
    // index table itself: a sub-select would be sorted again). A resource that matches through
    // several values is kept at its lowest; the position is (value, seq).
    let string_walk = sql.string_walk.take().filter(|(p, _, _)| {
        !p.is_empty()
            && seq_only
            && q.order == Order::Any
            && q.sort.is_empty()
            && matches!(
                q.clauses.first().map(Vec::as_slice),
                Some([Predicate::String {
                    how: StringMatch::Prefix,
                    ..
                }])
            )
    });
    if let Some((p, low, high)) = string_walk {
        if let Some(Position::Key(value, seq)) = &q.after {
            let v = sql.text(value);
            let s = sql.int(*seq as i64);
            conditions.push(format!("(r.value, r.seq) > ({v}, {s})"));
        }
        // Each resource once: at its lowest matching (value, original).
        conditions.push(format!(
            "NOT EXISTS (SELECT 1 FROM idx_string m INDEXED BY idx_string_seq \
             WHERE m.seq = r.seq AND m.param = {p} AND m.value >= {low} \
             AND (m.value, m.original) < (r.value, r.original))"
        ));
        return Ok(Rendered {
            sql: format!(
                "SELECT r.seq, r.value FROM idx_string r \
                 WHERE r.param = {p} AND r.value >= {low} AND r.value < {high} AND {} \
                 ORDER BY r.value, r.seq LIMIT {}",
                conditions.join(" AND "),
                q.limit + 1
            ),
            params: sql.params,
            seq_only,
            index_order: true,
        });
    }
    // With a driving index, order and bound by its `seq` so that the walk can start at the
    // keyset position and stop after one page.
    let seq = if driver.is_some() && !seq_only {
        "d.seq"
    } else {
        "r.seq"
    };
    match (&q.after, q.order) {
        (Some(Position::Seq(after)), Order::Any | Order::LastUpdated) => {
            conditions.push(format!("{seq} > {}", sql.int(*after as i64)))
        }
        (Some(Position::Seq(after)), Order::LastUpdatedDesc) => {
            conditions.push(format!("{seq} < {}", sql.int(*after as i64)))
        }
        (Some(Position::Id(id)), Order::Id) => conditions.push(format!("r.id > {}", sql.text(id))),
        (Some(Position::Id(id)), Order::IdDesc) => {
            conditions.push(format!("r.id < {}", sql.text(id)))
        }
        _ => {}
    }
    let tie_break = match q.order {
        Order::Any | Order::LastUpdated => format!("{seq} ASC"),
        Order::LastUpdatedDesc => format!("{seq} DESC"),
        Order::Id => "r.id ASC".to_string(),
        Order::IdDesc => "r.id DESC".to_string(),
    };
    let mut order_terms = Vec::new();
    for key in &q.sort {
        let direction = if key.descending { "DESC" } else { "ASC" };
        let expr = match &key.by {
            SortBy::Id => "r.id".to_string(),
            SortBy::LastUpdated => "r.seq".to_string(),
            SortBy::Param { code, kind } => match sql.sort_param(code, &q.types)? {
                None => "NULL".to_string(),
                Some(p) => {
                    let agg = if key.descending { "MAX" } else { "MIN" };
                    let (table, column) = match kind {
                        ParamType::String => ("idx_string", "value"),
                        ParamType::Date if key.descending => ("idx_date", "end"),
                        ParamType::Date => ("idx_date", "start"),
                        ParamType::Number => ("idx_number", "(low + high) / 2.0"),
                        ParamType::Quantity => ("idx_quantity", "(low + high) / 2.0"),
                        // System, then code (references: the reference); see `index::write_value`.
                        ParamType::Token => ("idx_token", "sort"),
                        ParamType::Reference => ("idx_reference", "sort"),
                        _ => ("idx_uri", "value"),
                    };
                    format!("(SELECT {agg}({column}) FROM {table} INDEXED BY {table}_seq WHERE param {p} AND seq = r.seq)")
                }
            },
        };
        // Resources without a value come last, whichever the direction.
        order_terms.push(format!("({expr}) IS NULL, {expr} {direction}"));
    }
    order_terms.push(tie_break);
    let order = order_terms.join(", ");
    let offset = match (&q.after, q.sort.is_empty()) {
        (Some(Position::Offset(n)), false) => format!(" OFFSET {n}"),
        _ => String::new(),
    };
    let columns = if seq_only {
        "r.seq"
    } else {
        "r.type, r.id, r.version, r.t, r.last_updated, r.method, r.json, r.seq"
    };
    Ok(Rendered {
        sql: format!(
            "SELECT {columns} FROM {from} WHERE {} ORDER BY {order} LIMIT {}{offset}",
            conditions.join(" AND "),
            q.limit + 1
        ),
        params: sql.params,
        seq_only,
        index_order: false,
    })
}
