//! What an operation costs, and the limit on it (`graphql.max_complexity`), checked after the
//! document has been validated and before anything runs.
//!
//! The cost approximates the work a request asks of the server, so that a screen of the driver
//! app is always accepted and a request built to be expensive is not:
//!
//! - Every object the response holds costs 1 (a connection, an edge, a node, a money amount);
//!   a scalar or enum field costs nothing more, since it comes with the object that holds it.
//!   A list whose length the request does not set counts as one item.
//! - Fields are counted once per selection set after merging, as they are executed: a field
//!   that two fragments both select (or that a fragment and the operation both select) is
//!   resolved once and costs once. Fields skipped by `@skip`/`@include` cost nothing.
//! - A paged field has a page size: its `first` (or `last`) argument, else that argument's
//!   default, at most [`MAX_PAGE`] (the largest page any list returns), or for `nodes(ids:)` the
//!   number of ids. What the page holds per item is counted once per item: a list's items, a
//!   connection's `edges` and `nodes`, the lists of any other object (a report with its lines).
//!   The rest of a connection (`pageInfo`, `totalCount`) is counted once, however long the page.
//! - A few fields return more than one page per call (`staffSearch` returns up to `first` hits
//!   of each kind); [`PAGES_PER_CALL`] says how many.
//!
//! - Before async-graphql's own checks run, a document that holds more than 100 000 selections
//!   once its fragment spreads are expanded is refused: those checks follow every spread, so a
//!   few kilobytes of fragments that spread each other twice would keep a core busy for minutes.
//!
//! With the default limit (1000), every document the driver app ships is accepted at 100 items
//! per page, the most any page holds (`tests/it/operations.rs` checks it).

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest,
    NextValidation,
};
use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, Field, OperationDefinition, OperationType,
    Selection, SelectionSet,
};
use async_graphql::registry::{MetaType, MetaTypeName, Registry};
use async_graphql::{
    ErrorExtensionValues, Name, Positioned, Request, ServerError, ServerResult, ValidationResult,
    Value, Variables,
};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The largest page any list returns; a larger `first` is served (and counted) as this many.
pub const MAX_PAGE: u64 = 100;

/// Fields that return up to this many pages per call: `(type, field, pages)`.
pub const PAGES_PER_CALL: &[(&str, &str, u64)] = &[
    // Up to `first` drivers, sessions, payments and partners.
    ("Query", "staffSearch", 4),
];

/// How many selections one document may make the cost walk visit (fragments spread many
/// times over); past it the document is refused as too costly, whatever its score.
const MAX_STEPS: usize = 100_000;

/// How deep the walk may nest (selection sets and fragments within each other); deeper, the
/// document is refused as too costly. Validation refuses deeper documents anyway, but the cost
/// is computed first and must not exhaust the stack on the way.
const MAX_NESTING: usize = 256;

/// The extension that enforces the limit (add it with `SchemaBuilder::extension`).
pub struct CostLimit {
    max: usize,
}

impl CostLimit {
    /// Refuses operations that cost more than `max`.
    pub fn new(max: usize) -> Self {
        CostLimit { max }
    }
}

impl ExtensionFactory for CostLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(CostCheck {
            max: self.max,
            operation_name: OnceLock::new(),
            cost: OnceLock::new(),
        })
    }
}

/// One request's check: the operation it names, then that operation's cost once parsed.
struct CostCheck {
    max: usize,
    operation_name: OnceLock<Option<String>>,
    cost: OnceLock<usize>,
}

#[async_trait::async_trait]
impl Extension for CostCheck {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let mut request = request;
        let _ = self.operation_name.set(request.operation_name.clone());
        // Before async-graphql's own checks, which follow every fragment spread as often as it
        // is spread: a few kilobytes of fragments that spread each other twice would keep them
        // busy for minutes. A parse error is left for the parse step to report.
        if request
            .parsed_query()
            .is_ok_and(|doc| expanded_selections(doc) > MAX_STEPS)
        {
            return Err(too_complex(usize::MAX, self.max));
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let name = self.operation_name.get().and_then(|n| n.as_deref());
        let _ = self.cost.set(operation_cost(
            &ctx.schema_env.registry,
            &doc,
            name,
            variables,
        ));
        Ok(doc)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let mut result = next.run(ctx).await?;
        if let Some(&cost) = self.cost.get() {
            if cost > self.max {
                return Err(vec![too_complex(cost, self.max)]);
            }
            result.complexity = cost;
        }
        Ok(result)
    }
}

fn too_complex(cost: usize, max: usize) -> ServerError {
    let cost = if cost == usize::MAX {
        "too much".to_owned()
    } else {
        cost.to_string()
    };
    let mut err = ServerError::new(
        format!(
            "Query is too complex: it costs {cost}, and at most {max} is allowed. Ask for fewer \
             items per page (each item of a page counts) or fewer fields."
        ),
        None,
    );
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", "QUERY_TOO_COMPLEX");
    err.extensions = Some(ext);
    err
}

/// The cost of the operation `operation_name` of `doc` (the only one when `None`; the most
/// costly when the document holds several and names none). `usize::MAX` when the walk is
/// longer than a document may make it.
pub fn operation_cost(
    registry: &Registry,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> usize {
    let ops: Vec<&Positioned<OperationDefinition>> = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => vec![op],
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).into_iter().collect(),
        (DocumentOperations::Multiple(ops), None) => ops.values().collect(),
    };
    ops.into_iter()
        .map(|op| {
            let root = match op.node.ty {
                OperationType::Query => Some(registry.query_type.as_str()),
                OperationType::Mutation => registry.mutation_type.as_deref(),
                OperationType::Subscription => registry.subscription_type.as_deref(),
            };
            let mut walk = Walk {
                registry,
                doc,
                variables: variables_with_defaults(op, variables),
                steps: 0,
                nesting: 0,
            };
            let cost = walk.set_cost(&[(root, &op.node.selection_set.node)], 1);
            if walk.steps > MAX_STEPS {
                usize::MAX
            } else {
                usize::try_from(cost).unwrap_or(usize::MAX)
            }
        })
        .max()
        .unwrap_or(0)
}

/// How many selections `doc` holds once every fragment spread is replaced by its fragment,
/// counted without expanding them (each fragment is measured once). Saturates; a document
/// nested deeper than [`MAX_NESTING`] counts as `usize::MAX`.
pub fn expanded_selections(doc: &ExecutableDocument) -> usize {
    fn size<'a>(
        doc: &'a ExecutableDocument,
        set: &'a SelectionSet,
        sizes: &mut HashMap<&'a str, usize>,
        depth: usize,
    ) -> usize {
        if depth > MAX_NESTING {
            return usize::MAX;
        }
        let mut total: usize = 0;
        for item in &set.items {
            let n = match &item.node {
                Selection::Field(f) => {
                    size(doc, &f.node.selection_set.node, sizes, depth + 1).saturating_add(1)
                }
                Selection::InlineFragment(f) => {
                    size(doc, &f.node.selection_set.node, sizes, depth + 1)
                }
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.as_str();
                    match (
                        sizes.get(name),
                        doc.fragments.get(&s.node.fragment_name.node),
                    ) {
                        (Some(&known), _) => known,
                        (None, Some(fragment)) => {
                            // Zero while it is being measured: a cycle adds nothing
                            // (validation refuses cycles anyway).
                            sizes.insert(name, 0);
                            let n = size(doc, &fragment.node.selection_set.node, sizes, depth + 1);
                            sizes.insert(name, n);
                            n
                        }
                        (None, None) => 0,
                    }
                }
            };
            total = total.saturating_add(n);
        }
        total
    }
    let mut sizes = HashMap::new();
    doc.operations
        .iter()
        .map(|(_, op)| size(doc, &op.node.selection_set.node, &mut sizes, 0))
        .fold(0, usize::saturating_add)
}

/// The request's variables, with the operation's defaults for those it does not give.
fn variables_with_defaults(
    op: &Positioned<OperationDefinition>,
    variables: &Variables,
) -> HashMap<Name, Value> {
    let mut out: HashMap<Name, Value> = variables
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for def in &op.node.variable_definitions {
        let name = &def.node.name.node;
        if let (false, Some(default)) = (out.contains_key(name), &def.node.default_value) {
            out.insert(name.clone(), default.node.clone());
        }
    }
    out
}

/// A field after merging: every place the document selects it under one response key.
struct Merged<'a> {
    /// The type the field is looked up on.
    parent: Option<&'a str>,
    field: &'a Field,
    /// Its selection sets, from every place it is selected.
    sets: Vec<&'a SelectionSet>,
}

struct Walk<'a> {
    registry: &'a Registry,
    doc: &'a ExecutableDocument,
    variables: HashMap<Name, Value>,
    steps: usize,
    nesting: usize,
}

impl<'a> Walk<'a> {
    /// The cost of the selection sets `sets` (of the types given), merged, each item counted
    /// `per_item` times.
    fn set_cost(&mut self, sets: &[(Option<&'a str>, &'a SelectionSet)], per_item: u64) -> u64 {
        if !self.enter() {
            return 0;
        }
        let mut merged: Vec<(&'a str, Merged<'a>)> = Vec::new();
        for &(parent, set) in sets {
            let mut path = Vec::new();
            self.collect(parent, set, &mut merged, &mut path);
        }
        let mut total: u64 = 0;
        for (_, m) in &merged {
            total = total.saturating_add(self.field_cost(m, per_item));
        }
        self.nesting -= 1;
        total
    }

    /// One level deeper; false (and the walk marked as too long) past [`MAX_NESTING`].
    fn enter(&mut self) -> bool {
        if self.nesting >= MAX_NESTING {
            self.steps = MAX_STEPS + 1;
            return false;
        }
        self.nesting += 1;
        true
    }

    /// Adds the fields of `set` (on `parent`) to `out`, merged by response key, looking through
    /// inline fragments and fragment spreads (`path` holds the fragments being spread, so that
    /// a cycle, which validation refuses anyway, cannot loop).
    fn collect(
        &mut self,
        parent: Option<&'a str>,
        set: &'a SelectionSet,
        out: &mut Vec<(&'a str, Merged<'a>)>,
        path: &mut Vec<&'a str>,
    ) {
        if !self.enter() {
            return;
        }
        for item in &set.items {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                break;
            }
            match &item.node {
                Selection::Field(f) => {
                    if self.skipped(&f.node.directives) {
                        continue;
                    }
                    let key = f.node.response_key().node.as_str();
                    match out.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, m)) => m.sets.push(&f.node.selection_set.node),
                        None => out.push((
                            key,
                            Merged {
                                parent,
                                field: &f.node,
                                sets: vec![&f.node.selection_set.node],
                            },
                        )),
                    }
                }
                Selection::InlineFragment(f) => {
                    if self.skipped(&f.node.directives) {
                        continue;
                    }
                    let on = f
                        .node
                        .type_condition
                        .as_ref()
                        .map(|c| c.node.on.node.as_str())
                        .or(parent);
                    self.collect(on, &f.node.selection_set.node, out, path);
                }
                Selection::FragmentSpread(s) => {
                    if self.skipped(&s.node.directives) {
                        continue;
                    }
                    let name = s.node.fragment_name.node.as_str();
                    if path.contains(&name) {
                        continue;
                    }
                    let Some(fragment) = self.doc.fragments.get(&s.node.fragment_name.node) else {
                        continue;
                    };
                    path.push(name);
                    let on = Some(fragment.node.type_condition.node.on.node.as_str());
                    self.collect(on, &fragment.node.selection_set.node, out, path);
                    path.pop();
                }
            }
        }
        self.nesting -= 1;
    }

    /// The cost of one merged field, counted `per_item` times.
    fn field_cost(&mut self, m: &Merged<'a>, per_item: u64) -> u64 {
        let name = m.field.name.node.as_str();
        if name == "__typename" {
            return 0;
        }
        let def = m
            .parent
            .and_then(|p| self.registry.types.get(p))
            .and_then(|t| t.field_by_name(name));
        let return_type = def.map(|d| MetaTypeName::concrete_typename(&d.ty));
        let is_list = def.is_some_and(|d| MetaTypeName::create(&d.ty).is_list());
        let meta = return_type.and_then(|t| self.registry.types.get(t));
        let leaf = meta.is_some_and(MetaType::is_leaf)
            || (meta.is_none() && m.sets.iter().all(|s| s.items.is_empty()));
        if leaf {
            return 0;
        }
        let children: Vec<(Option<&'a str>, &'a SelectionSet)> =
            m.sets.iter().map(|s| (return_type, *s)).collect();
        let page = self
            .page_size(m, def)
            .map(|p| p.saturating_mul(pages_per_call(m.parent, name)));
        let cost = match page {
            // A page of objects: each item and what it holds.
            Some(page) if is_list => {
                page.saturating_mul(self.set_cost(&children, 1).saturating_add(1))
            }
            // A connection or report holding the page.
            Some(page) => {
                let connection = meta.is_some_and(|t| {
                    t.field_by_name("edges").is_some() && t.field_by_name("pageInfo").is_some()
                });
                self.paged_object_cost(&children, meta, connection, page)
                    .saturating_add(1)
            }
            // An object, or a list whose length the request does not set: one item.
            None => self.set_cost(&children, 1).saturating_add(1),
        };
        per_item.saturating_mul(cost)
    }

    /// The cost of the selections of a paged object: a connection's `edges` and `nodes`, or
    /// another object's lists, count once per item of the page; the rest once.
    fn paged_object_cost(
        &mut self,
        children: &[(Option<&'a str>, &'a SelectionSet)],
        meta: Option<&'a MetaType>,
        connection: bool,
        page: u64,
    ) -> u64 {
        if !self.enter() {
            return 0;
        }
        let mut merged: Vec<(&'a str, Merged<'a>)> = Vec::new();
        for &(parent, set) in children {
            let mut path = Vec::new();
            self.collect(parent, set, &mut merged, &mut path);
        }
        let mut total: u64 = 0;
        for (_, m) in &merged {
            let name = m.field.name.node.as_str();
            let per_item = if connection {
                matches!(name, "edges" | "nodes")
            } else {
                meta.and_then(|t| t.field_by_name(name))
                    .is_some_and(|d| MetaTypeName::create(&d.ty).is_list())
            };
            let times = if per_item { page } else { 1 };
            total = total.saturating_add(self.field_cost(m, times));
        }
        self.nesting -= 1;
        total
    }

    /// The page size of a paged field: `ids` counted, or `first`/`last` (given, else its
    /// default, else the largest page), capped at [`MAX_PAGE`]. `None` for other fields.
    fn page_size(
        &self,
        m: &Merged<'a>,
        def: Option<&'a async_graphql::registry::MetaField>,
    ) -> Option<u64> {
        let def = def?;
        if def.args.contains_key("ids") {
            return Some(match self.argument(m.field, "ids") {
                Some(Value::List(ids)) => u64::try_from(ids.len()).unwrap_or(u64::MAX),
                _ => 1,
            });
        }
        let arg = ["first", "last"]
            .into_iter()
            .find(|a| def.args.contains_key(*a))?;
        let given = match self.argument(m.field, arg) {
            Some(Value::Number(n)) => n.as_i64(),
            _ => None,
        };
        let default = def
            .args
            .get(arg)
            .and_then(|a| a.default_value.as_deref())
            .and_then(|d| d.parse::<i64>().ok());
        let size = match given.or(default) {
            Some(n) => u64::try_from(n.max(0)).unwrap_or(0),
            None => MAX_PAGE,
        };
        Some(size.min(MAX_PAGE))
    }

    /// The value of `field`'s argument `name`, with variables replaced.
    fn argument(&self, field: &Field, name: &str) -> Option<Value> {
        let value = field.get_argument(name)?;
        value
            .node
            .clone()
            .into_const_with(|var| self.variables.get(&var).cloned().ok_or(()))
            .ok()
    }

    /// Whether `@skip(if: true)` or `@include(if: false)` leaves a selection out.
    fn skipped(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().any(|d| {
            let condition = d.node.get_argument("if").and_then(|v| {
                v.node
                    .clone()
                    .into_const_with(|var| self.variables.get(&var).cloned().ok_or(()))
                    .ok()
            });
            matches!(
                (d.node.name.node.as_str(), condition),
                ("skip", Some(Value::Boolean(true))) | ("include", Some(Value::Boolean(false)))
            )
        })
    }
}

/// How many pages `parent.field` returns per call ([`PAGES_PER_CALL`]).
fn pages_per_call(parent: Option<&str>, field: &str) -> u64 {
    PAGES_PER_CALL
        .iter()
        .find(|(t, f, _)| Some(*t) == parent && *f == field)
        .map_or(1, |(_, _, n)| *n)
}

#[cfg(test)]
mod tests {
    use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
    use async_graphql::{Request, Response, Variables};
    use shared::settings::GraphqlSettings;
    use std::sync::Arc;

    /// Answers in place of execution: these tests need the checks, not the resolvers.
    struct NoExecute;

    impl ExtensionFactory for NoExecute {
        fn create(&self) -> Arc<dyn Extension> {
            Arc::new(NoExecute)
        }
    }

    #[async_trait::async_trait]
    impl Extension for NoExecute {
        async fn execute(
            &self,
            _ctx: &ExtensionContext<'_>,
            _operation_name: Option<&str>,
            _next: NextExecute<'_>,
        ) -> Response {
            Response::new(async_graphql::Value::Null)
        }
    }

    /// What `doc` costs with `variables`, read from the refusal of a schema whose limit is 1
    /// (so 0 or 1 reads as 1).
    async fn cost(doc: &str, variables: serde_json::Value) -> usize {
        let settings = GraphqlSettings {
            max_complexity: 1,
            ..GraphqlSettings::default()
        };
        let schema = crate::build_schema(&settings).extension(NoExecute).finish();
        let response = schema
            .execute(Request::new(doc).variables(Variables::from_json(variables)))
            .await;
        let Some(err) = response.errors.first() else {
            return 1;
        };
        let code = err.extensions.as_ref().and_then(|e| e.get("code"));
        assert_eq!(
            code.map(|c| c.to_string()),
            Some("\"QUERY_TOO_COMPLEX\"".to_owned()),
            "{doc}: {}",
            err.message
        );
        let tail = err.message.split("it costs ").nth(1).unwrap();
        let n = tail.split(',').next().unwrap();
        n.parse().unwrap_or(usize::MAX)
    }

    #[tokio::test]
    async fn fragments_spread_into_each_other_are_refused_quickly() {
        // Each fragment spreads the next twice: 2^30 selections once expanded. Refused before
        // async-graphql's own checks, which would follow every spread.
        let mut bomb = String::from("query { me { ...F0 } }");
        for i in 0..30 {
            bomb.push_str(&format!(
                " fragment F{i} on Driver {{ id ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        bomb.push_str(" fragment F30 on Driver { id }");
        let started = std::time::Instant::now();
        assert_eq!(cost(&bomb, serde_json::json!({})).await, usize::MAX);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    const PAGE: &str = "query($n: Int) { me { vehicles(first: $n) {
        edges { node { id registration } } pageInfo { hasNextPage endCursor } } } }";

    #[tokio::test]
    async fn a_page_counts_each_item_and_its_page_info_once() {
        // me 1, the connection 1, pageInfo 1, and per item its edge and node.
        assert_eq!(cost(PAGE, serde_json::json!({ "n": 10 })).await, 3 + 2 * 10);
        assert_eq!(cost(PAGE, serde_json::json!({ "n": 20 })).await, 3 + 2 * 20);
        // No `first`: the argument's default (20).
        assert_eq!(cost(PAGE, serde_json::json!({})).await, 3 + 2 * 20);
        // More than a page holds counts as the largest page.
        assert_eq!(
            cost(PAGE, serde_json::json!({ "n": 5000 })).await,
            3 + 2 * 100
        );
        let no_page_info = "{ me { vehicles(first: 10) { edges { node { id } } } } }";
        assert_eq!(cost(no_page_info, serde_json::json!({})).await, 2 + 2 * 10);
    }

    #[tokio::test]
    async fn a_field_selected_twice_costs_once() {
        let two_fragments = "query { me { ...A ...B vehicles(first: 10) { edges { cursor } } } }
            fragment A on Driver { vehicles(first: 10) { edges { node { id } } } }
            fragment B on Driver { vehicles(first: 10) { edges { node { registration } } } }";
        let once = "{ me { vehicles(first: 10) { edges { cursor node { id registration } } } } }";
        assert_eq!(cost(once, serde_json::json!({})).await, 2 + 2 * 10);
        assert_eq!(cost(two_fragments, serde_json::json!({})).await, 2 + 2 * 10);
        // Under two response keys, it is resolved twice and costs twice.
        let aliased = "{ me { a: vehicles(first: 10) { edges { node { id } } }
            b: vehicles(first: 10) { edges { node { id } } } } }";
        assert_eq!(
            cost(aliased, serde_json::json!({})).await,
            1 + 2 * (1 + 2 * 10)
        );
    }

    #[tokio::test]
    async fn skipped_selections_cost_nothing() {
        let doc = "query($skip: Boolean!) { me { id vehicles(first: 10) @skip(if: $skip) {
            edges { node { id } } } } }";
        assert_eq!(
            cost(doc, serde_json::json!({ "skip": false })).await,
            2 + 2 * 10
        );
        assert_eq!(cost(doc, serde_json::json!({ "skip": true })).await, 1);
    }

    #[tokio::test]
    async fn lists_count_their_items() {
        // `nodes` returns one object per id, each with what is asked of it.
        let doc = r#"{ nodes(ids: ["a", "b", "c"]) { id ... on Driver {
            vehicles(first: 2) { edges { node { id } } } } } }"#;
        assert_eq!(cost(doc, serde_json::json!({})).await, 3 * (1 + 1 + 2 * 2));
        // Up to `first` hits of each of the four kinds.
        let search = r#"{ staffSearch(query: "ab", first: 5) { title } }"#;
        assert_eq!(cost(search, serde_json::json!({})).await, 4 * 5);
    }
}
