//! Every client operation in `frontend-schema/operations/` validates against the schema, within
//! the server's depth and complexity limits, so a schema change that would break a shipped client
//! fails the suite.
//!
//! Validation is the schema's own: each operation goes through `Schema::execute` with an extension
//! that lets parsing and validation run and then answers in place of execution, so no resolver
//! runs and no database is needed.

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::parser::types::DocumentOperations;
use async_graphql::{Response, ServerError, Value};
use shared::settings::GraphqlSettings;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Runs validation, never execution.
struct ValidateOnly;

impl ExtensionFactory for ValidateOnly {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ValidateOnly)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ValidateOnly {
    async fn execute(
        &self,
        _ctx: &ExtensionContext<'_>,
        _operation_name: Option<&str>,
        _next: NextExecute<'_>,
    ) -> Response {
        Response::new(Value::Null)
    }
}

fn operations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("frontend-schema/operations")
}

fn graphql_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            graphql_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "graphql") {
            out.push(path);
        }
    }
}

/// Validates every operation of `document`; returns the errors, per operation name.
async fn validate(document: &str) -> Vec<(String, Vec<ServerError>)> {
    validate_with(document, serde_json::json!({})).await
}

/// Validates every operation of `document` with `variables`; returns the errors, per operation.
async fn validate_with(
    document: &str,
    variables: serde_json::Value,
) -> Vec<(String, Vec<ServerError>)> {
    let schema = graphql::build_schema(&GraphqlSettings::default())
        .extension(ValidateOnly)
        .finish();
    let parsed = match async_graphql::parser::parse_query(document) {
        Ok(doc) => doc,
        Err(e) => {
            return vec![(
                "<parse>".into(),
                vec![ServerError::new(e.to_string(), None)],
            )];
        }
    };
    let names: Vec<String> = match &parsed.operations {
        DocumentOperations::Single(_) => vec![String::new()],
        DocumentOperations::Multiple(ops) => ops.keys().map(|n| n.to_string()).collect(),
    };
    let mut out = Vec::new();
    for name in names {
        let mut request = async_graphql::Request::new(document)
            .variables(async_graphql::Variables::from_json(variables.clone()));
        if !name.is_empty() {
            request = request.operation_name(name.clone());
        }
        let response = schema.execute(request).await;
        out.push((name, response.errors));
    }
    out
}

#[tokio::test]
async fn every_client_operation_validates_against_the_schema() {
    let mut files = Vec::new();
    graphql_files(&operations_dir(), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no operations found");
    let mut failures = Vec::new();
    let mut names = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (name, errors) in validate(&text).await {
            if name.is_empty() {
                failures.push(format!("{}: operations must be named", file.display()));
            }
            names.push(name.clone());
            for e in errors {
                failures.push(format!("{} ({name}): {}", file.display(), e.message));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for required in [
        "RequestLoginCode",
        "VerifyLoginCode",
        "Me",
        "AddVehicle",
        "UpdateProfile",
        "SignOut",
        "Partner",
        "CreateQuote",
        "Enrol",
        "CancelEnrolment",
        "StartCover",
        "EndCover",
        "CoverSessions",
        "CoverStatus",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "no {required} operation"
        );
    }
}

#[tokio::test]
async fn a_broken_operation_is_caught() {
    let broken = [
        "query Broken { me { noSuchField } }",
        "mutation Broken { addVehicle(input: { vehicleType: LORRY }) { vehicle { id } } }",
        "query Broken($id: ID!) { me { id } }",
        // Over the complexity limit: three full pages of sessions, each item with its vehicle
        // and charge.
        "query Broken { a: me { coverSessions(first: 100) { edges { node { id vehicle { registration } charge { total { minor } } } } } } b: me { coverSessions(first: 100) { edges { node { id vehicle { registration } charge { total { minor } } } } } } c: me { coverSessions(first: 100) { edges { node { id vehicle { registration } charge { total { minor } } } } } } }",
        "query { me { id }",
        // Subscriptions are validated like the rest.
        "subscription Broken { coverStatus { noSuchField } }",
    ];
    for doc in broken {
        let results = validate(doc).await;
        assert!(
            results.iter().any(|(_, errors)| !errors.is_empty()),
            "not caught: {doc}"
        );
    }
}

#[tokio::test]
async fn every_driver_and_partner_list_is_accepted_at_the_largest_page() {
    // Every list the apps page through holds at most 100 items a page; the cost limit must let
    // each shipped document ask for a full page.
    let mut files = Vec::new();
    graphql_files(&operations_dir().join("driver"), &mut files);
    graphql_files(&operations_dir().join("partner"), &mut files);
    files.sort();
    let mut paged = 0;
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        if !text.contains("$first") {
            continue;
        }
        paged += 1;
        for (name, errors) in validate_with(&text, serde_json::json!({ "first": 100 })).await {
            for e in errors {
                failures.push(format!("{} ({name}): {}", file.display(), e.message));
            }
        }
    }
    assert!(paged >= 9, "only {paged} paged documents found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs `frontend-schema/check-documents.mjs` (graphql-js over every document, the Relay compiler
/// over the driver app's) with `args`. The schema's own validation above is lenient where clients
/// are not (a variable of one custom scalar passed where another is expected, for one), so the
/// contract is also checked with the tools the clients build with.
fn reference_check(args: &[&str]) -> std::process::Output {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("frontend-schema");
    assert!(
        dir.join("node_modules/graphql").is_dir()
            && dir.join("node_modules/relay-compiler").is_dir(),
        "the reference tools are not installed: run `npm ci` in frontend-schema/ (infra/dev/test.sh does)"
    );
    std::process::Command::new("node")
        .arg(dir.join("check-documents.mjs"))
        .args(args)
        .output()
        .expect("node runs")
}

#[test]
fn every_client_operation_passes_the_reference_tools() {
    let out = reference_check(&[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("relay-compiler:"),
        "the Relay compiler did not run: {text}"
    );
}

#[test]
fn the_reference_tools_catch_a_broken_operation() {
    let dir = std::env::temp_dir().join(format!("sc-broken-ops-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("driver")).unwrap();
    let broken = [
        // A variable of another scalar than the argument's.
        "query WrongScalar($at: DateTime!) { statement(weekStart: $at) { weekStart } }",
        "query NoSuchField { me { noSuchField } }",
        "query { me { id } }",
    ];
    for (i, doc) in broken.iter().enumerate() {
        std::fs::write(dir.join(format!("driver/Broken{i}.graphql")), doc).unwrap();
    }
    let out = reference_check(&["--operations", dir.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "not caught: {stderr}");
    for expected in [
        "driver/Broken0.graphql",
        "driver/Broken1.graphql",
        "driver/Broken2.graphql: operations must be named",
        "relay-compiler refused",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected} not reported: {stderr}"
        );
    }
}
