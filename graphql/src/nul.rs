//! Refuses text that contains the NUL character (U+0000) anywhere in a request — an inline
//! argument, a variable, a default value — before anything runs.
//!
//! PostgreSQL cannot store NUL in `text`, so such input would otherwise fail deep inside a
//! resolver as an internal error, after other work may have begun. No field of ShiftCover takes
//! binary data as text, so the rule is the same everywhere: `INVALID_CHARACTER`, naming where
//! it was found. It runs as a schema extension, so every way into the schema (HTTP, WebSocket
//! subscriptions, the back office's in-process requests) is covered.

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ErrorExtensionValues, ServerError, ServerResult, Value, Variables};
use std::sync::Arc;

/// The extension (add it with `SchemaBuilder::extension`).
pub struct RefuseNul;

impl ExtensionFactory for RefuseNul {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RefuseNulExtension)
    }
}

struct RefuseNulExtension;

#[async_trait::async_trait]
impl Extension for RefuseNulExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        for (name, value) in variables.iter() {
            if holds_nul(value) {
                return Err(refusal(&format!("variable `${name}`")));
            }
        }
        let doc = next.run(ctx, query, variables).await?;
        if let Some(place) = nul_in_document(&doc) {
            return Err(refusal(&place));
        }
        Ok(doc)
    }
}

fn refusal(place: &str) -> ServerError {
    let mut err = ServerError::new(
        format!("Text may not contain the NUL character (U+0000); found in {place}."),
        None,
    );
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", "INVALID_CHARACTER");
    err.extensions = Some(ext);
    err
}

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::List(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields
            .iter()
            .any(|(k, v)| k.as_str().contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// For a literal of the document (a variable in it is checked on its own).
fn value_holds_nul(value: &async_graphql_value::Value) -> bool {
    use async_graphql_value::Value as V;
    match value {
        V::String(s) => s.contains('\0'),
        V::List(items) => items.iter().any(value_holds_nul),
        V::Object(fields) => fields
            .iter()
            .any(|(k, v)| k.as_str().contains('\0') || value_holds_nul(v)),
        _ => false,
    }
}

/// Where the first NUL of the document's literal values is, if any.
fn nul_in_document(doc: &ExecutableDocument) -> Option<String> {
    for (_, op) in doc.operations.iter() {
        for var in &op.node.variable_definitions {
            if var
                .node
                .default_value
                .as_ref()
                .is_some_and(|d| holds_nul(&d.node))
            {
                return Some(format!("the default of `${}`", var.node.name.node));
            }
        }
        if let Some(place) = nul_in_selection_set(&op.node.selection_set.node) {
            return Some(place);
        }
    }
    for (_, fragment) in doc.fragments.iter() {
        if let Some(place) = nul_in_selection_set(&fragment.node.selection_set.node) {
            return Some(place);
        }
    }
    None
}

fn nul_in_selection_set(set: &SelectionSet) -> Option<String> {
    for item in &set.items {
        let (directives, inner) = match &item.node {
            Selection::Field(field) => {
                for (name, value) in &field.node.arguments {
                    if value_holds_nul(&value.node) {
                        return Some(format!(
                            "argument `{}` of `{}`",
                            name.node, field.node.name.node
                        ));
                    }
                }
                (&field.node.directives, Some(&field.node.selection_set.node))
            }
            Selection::FragmentSpread(spread) => (&spread.node.directives, None),
            Selection::InlineFragment(fragment) => (
                &fragment.node.directives,
                Some(&fragment.node.selection_set.node),
            ),
        };
        for directive in directives {
            if directive
                .node
                .arguments
                .iter()
                .any(|(_, v)| value_holds_nul(&v.node))
            {
                return Some(format!("a directive `@{}`", directive.node.name.node));
            }
        }
        if let Some(place) = inner.and_then(nul_in_selection_set) {
            return Some(place);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    struct Query;

    #[Object]
    impl Query {
        async fn echo(&self, text: String) -> String {
            text
        }
    }

    fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .extension(RefuseNul)
            .finish()
    }

    fn code(resp: &async_graphql::Response) -> Option<String> {
        resp.errors.first().and_then(|e| {
            e.extensions
                .as_ref()
                .and_then(|x| x.get("code"))
                .map(|c| c.to_string().trim_matches('"').to_owned())
        })
    }

    #[tokio::test]
    async fn nul_is_refused_inline_in_variables_and_in_defaults_and_other_text_passes() {
        let s = schema();
        let inline = s.execute(r#"{ echo(text: "a\u0000b") }"#).await;
        assert_eq!(code(&inline).as_deref(), Some("INVALID_CHARACTER"));
        assert!(
            inline.errors[0]
                .message
                .contains("argument `text` of `echo`")
        );

        let var = s
            .execute(
                async_graphql::Request::new("query($t: String!) { echo(text: $t) }")
                    .variables(Variables::from_json(serde_json::json!({ "t": "x\u{0}" }))),
            )
            .await;
        assert_eq!(code(&var).as_deref(), Some("INVALID_CHARACTER"));
        assert!(var.errors[0].message.contains("`$t`"));

        let default = s
            .execute(r#"query($t: String! = "\u0000") { echo(text: $t) }"#)
            .await;
        assert_eq!(code(&default).as_deref(), Some("INVALID_CHARACTER"));

        let nested = s
            .execute(r#"{ ... on Query { echo(text: "fine") @include(if: true) } x: echo(text: "\u0000") }"#)
            .await;
        assert_eq!(code(&nested).as_deref(), Some("INVALID_CHARACTER"));

        let fine = s.execute(r#"{ echo(text: "tab\there, é ✓") }"#).await;
        assert!(fine.errors.is_empty(), "{:?}", fine.errors);
    }
}
