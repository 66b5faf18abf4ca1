//! Hand-written SQL that each connection prepares once and then reuses.
//!
//! PostgreSQL parses, analyses and plans a statement when it is prepared; a prepared statement
//! is then only bound and executed. diesel's statement cache keeps one prepared statement per
//! connection for every query it considers safe to cache, but `diesel::sql_query` (whose text
//! could be built from input) and every `UPDATE` are never cached: they are planned again on
//! every call. On the paths that run for every request, that planning is a large part of what
//! the database does.
//!
//! [`Prepared`] is SQL whose text is fixed at compile time (a `&'static str`), with its values
//! bound separately, so it is safe to cache: the statement cache keys it by its text and the
//! bind types. Its text names values as `$1`, `$2`, … (in any order, any number of times),
//! which are the values given to [`Prepared::bind`] in that order. A `$` followed by a digit is
//! always a placeholder: there are no dollar-quoted strings in these statements.
//!
//! ```
//! use diesel::sql_types::{Text, Uuid};
//! # fn example(id: uuid::Uuid) {
//! let query = shiftcover_shared::sql::prepared("UPDATE things SET note = $2 WHERE id = $1")
//!     .bind::<Uuid, _>(id)
//!     .bind::<Text, _>("checked".to_owned());
//! # }
//! ```
//!
//! Run it with `diesel_async::RunQueryDsl` (`execute`, or `get_result`/`load` into a
//! `QueryableByName` row).

use diesel::QueryResult;
use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::Error;
use diesel::sql_types::Untyped;

/// A statement with fixed text and its bound values; see the module documentation.
#[must_use = "queries are only executed when run"]
pub struct Prepared<'a> {
    sql: &'static str,
    binds: Vec<Box<dyn QueryFragment<Pg> + Send + Sync + 'a>>,
}

/// A statement with fixed text, to which values are then bound in the order `$1`, `$2`, ….
pub fn prepared<'a>(sql: &'static str) -> Prepared<'a> {
    Prepared {
        sql,
        binds: Vec::new(),
    }
}

impl<'a> Prepared<'a> {
    /// Binds the next value (`$1` first) as SQL type `ST`.
    pub fn bind<ST, T>(mut self, value: T) -> Self
    where
        T: AsExpression<ST>,
        T::Expression: QueryFragment<Pg> + Send + Sync + 'a,
        ST: diesel::sql_types::SqlType + diesel::expression::TypedExpressionType,
    {
        self.binds.push(Box::new(value.as_expression()));
        self
    }
}

impl std::fmt::Debug for Prepared<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("sql", &self.sql)
            .field("binds", &self.binds.len())
            .finish()
    }
}

/// Where the next placeholder is in `text`: its start, its end and its number.
fn next_placeholder(text: &str) -> Option<(usize, usize, usize)> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(offset) = text[from..].find('$') {
        let at = from + offset;
        let digits = bytes[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits > 0 {
            let end = at + 1 + digits;
            // At most a few dozen values: the number fits.
            let number = text[at + 1..end].parse().unwrap_or(usize::MAX);
            return Some((at, end, number));
        }
        from = at + 1;
    }
    None
}

impl QueryFragment<Pg> for Prepared<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Each placeholder is written as the next bind parameter: diesel numbers them itself,
        // so the text it sends may use different numbers for the same values.
        let mut rest = self.sql;
        let mut highest = 0;
        while let Some((start, end, number)) = next_placeholder(rest) {
            highest = highest.max(number);
            out.push_sql(&rest[..start]);
            let bind = number
                .checked_sub(1)
                .and_then(|i| self.binds.get(i))
                .ok_or_else(|| {
                    Error::QueryBuilderError(
                        format!(
                            "${number} has no value: {} bound to {:?}",
                            self.binds.len(),
                            self.sql
                        )
                        .into(),
                    )
                })?;
            bind.walk_ast(out.reborrow())?;
            rest = &rest[end..];
        }
        out.push_sql(rest);
        if highest < self.binds.len() {
            return Err(Error::QueryBuilderError(
                format!(
                    "{} values bound but the text names only ${highest}: {:?}",
                    self.binds.len(),
                    self.sql
                )
                .into(),
            ));
        }
        Ok(())
    }
}

impl QueryId for Prepared<'_> {
    type QueryId = ();
    // Not a static id: the cache keys the statement by its text and bind types instead.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared<'_> {
    type SqlType = Untyped;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use diesel::sql_types::{BigInt, Text};

    #[test]
    fn is_safe_to_cache_unlike_sql_query() {
        let q = prepared("SELECT $1").bind::<BigInt, _>(1_i64);
        assert!(q.is_safe_to_cache_prepared(&Pg).unwrap());
        let raw = diesel::sql_query("SELECT $1").bind::<BigInt, _>(1_i64);
        assert!(!raw.is_safe_to_cache_prepared(&Pg).unwrap());
    }

    #[test]
    fn placeholders_become_binds_in_the_order_written() {
        let q = prepared("UPDATE t SET a = $2, b = $1 WHERE c = $2 AND d = '$x'")
            .bind::<Text, _>("one".to_owned())
            .bind::<BigInt, _>(2_i64);
        let shown = diesel::debug_query::<Pg, _>(&q).to_string();
        assert_eq!(
            shown,
            "UPDATE t SET a = $1, b = $2 WHERE c = $3 AND d = '$x' -- binds: [2, \"one\", 2]"
        );
    }

    /// A derived `Insertable` writes `DEFAULT` for a `None` field unless told otherwise, and
    /// diesel then never caches its insert (the text depends on the values). No column of ours
    /// has a default that a `None` should get, so every insert states NULL instead.
    #[test]
    fn every_derived_insertable_inserts_none_as_null_so_its_insert_is_prepared_once() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        for dir in ["apps", "graphql", "workers", "src"] {
            collect_rust_files(&root.join(dir), &mut files);
        }
        assert!(files.len() > 50, "found only {} source files", files.len());
        let mut missing = Vec::new();
        let mut seen = 0;
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let derive = line.trim_start();
                if !(derive.starts_with("#[derive(") && derive.contains("Insertable")) {
                    continue;
                }
                seen += 1;
                let attrs = lines[i + 1..]
                    .iter()
                    .take_while(|l| l.trim_start().starts_with("#["));
                if !attrs
                    .into_iter()
                    .any(|l| l.contains("treat_none_as_default_value = false"))
                {
                    missing.push(format!("{}:{}", file.display(), i + 1));
                }
            }
        }
        assert!(seen > 20, "found only {seen} derived Insertables");
        assert!(
            missing.is_empty(),
            "add #[diesel(treat_none_as_default_value = false)] to: {missing:?}"
        );
    }

    fn collect_rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                collect_rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn a_placeholder_without_a_value_is_an_error_not_a_panic() {
        let q = prepared("SELECT $1, $2").bind::<BigInt, _>(1_i64);
        let mut qb = diesel::pg::PgQueryBuilder::default();
        let err = q.to_sql(&mut qb, &Pg).unwrap_err();
        assert!(err.to_string().contains("$2 has no value"), "{err}");
        let q = prepared("SELECT $0").bind::<BigInt, _>(1_i64);
        let mut qb = diesel::pg::PgQueryBuilder::default();
        assert!(q.to_sql(&mut qb, &Pg).is_err());
        let q = prepared("SELECT $1")
            .bind::<BigInt, _>(1_i64)
            .bind::<BigInt, _>(2_i64);
        let mut qb = diesel::pg::PgQueryBuilder::default();
        let err = q.to_sql(&mut qb, &Pg).unwrap_err();
        assert!(err.to_string().contains("2 values bound"), "{err}");
    }
}
