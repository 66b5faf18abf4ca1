//! Checks made on a GraphQL document before it is executed, so hostile documents are refused
//! before any database work: parse errors, alias floods, and mutations sent over GET.
//! (Depth and complexity limits are enforced by the schema itself.)

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};

/// Why a document was refused before execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The `extensions.code`.
    pub code: &'static str,
    /// The message.
    pub message: String,
}

/// What the pre-checks learned about a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentFacts {
    /// Fields with an alias, counted across operations and fragments.
    pub aliases: usize,
    /// Whether any operation is a mutation.
    pub has_mutation: bool,
    /// Number of operations in the document.
    pub operations: usize,
}

/// Parses `query` and checks it against the limits.
pub fn check(query: &str, max_aliases: usize) -> Result<DocumentFacts, Refusal> {
    let doc = async_graphql::parser::parse_query(query).map_err(|e| Refusal {
        code: "GRAPHQL_PARSE_FAILED",
        message: e.to_string(),
    })?;
    check_document(&doc, max_aliases)
}

/// Parses the request's document, keeping it in the request so that execution does not parse
/// it again, and checks it against the limits.
pub fn check_request(
    request: &mut async_graphql::Request,
    max_aliases: usize,
) -> Result<DocumentFacts, Refusal> {
    let doc = request.parsed_query().map_err(|e| Refusal {
        code: "GRAPHQL_PARSE_FAILED",
        message: e.message,
    })?;
    check_document(doc, max_aliases)
}

/// Checks a parsed document against the limits.
pub fn check_document(
    doc: &ExecutableDocument,
    max_aliases: usize,
) -> Result<DocumentFacts, Refusal> {
    let facts = facts(doc);
    if facts.aliases > max_aliases {
        return Err(Refusal {
            code: "TOO_MANY_ALIASES",
            message: format!(
                "the document uses {} aliases; at most {max_aliases} are allowed",
                facts.aliases
            ),
        });
    }
    if facts.operations > 20 {
        return Err(Refusal {
            code: "TOO_MANY_OPERATIONS",
            message: "a document may hold at most 20 operations".into(),
        });
    }
    Ok(facts)
}

fn facts(doc: &ExecutableDocument) -> DocumentFacts {
    let mut aliases = 0;
    let mut has_mutation = false;
    let mut operations = 0;
    let ops: Vec<_> = match &doc.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(map) => map.values().collect(),
    };
    for op in ops {
        operations += 1;
        has_mutation |= op.node.ty == OperationType::Mutation;
        aliases += count_aliases(&op.node.selection_set.node);
    }
    for frag in doc.fragments.values() {
        aliases += count_aliases(&frag.node.selection_set.node);
    }
    DocumentFacts {
        aliases,
        has_mutation,
        operations,
    }
}

fn count_aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(f) => {
                usize::from(f.node.alias.is_some()) + count_aliases(&f.node.selection_set.node)
            }
            Selection::InlineFragment(f) => count_aliases(&f.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_aliases_everywhere() {
        let q = "query { a: serverInfo { v: version } ...F } fragment F on Query { b: serverInfo { version } }";
        let facts = check(q, 10).unwrap();
        assert_eq!(facts.aliases, 3);
        assert!(!facts.has_mutation);
    }

    #[test]
    fn refuses_alias_floods_and_bad_syntax() {
        let q = format!(
            "{{ {} }}",
            (0..51)
                .map(|i| format!("a{i}: serverInfo {{ version }}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(check(&q, 50).unwrap_err().code, "TOO_MANY_ALIASES");
        assert_eq!(
            check("{ unclosed", 50).unwrap_err().code,
            "GRAPHQL_PARSE_FAILED"
        );
        assert!(check("mutation { x }", 50).unwrap().has_mutation);
    }

    #[test]
    fn a_checked_request_keeps_its_parsed_document() {
        let mut request = async_graphql::Request::new("mutation { a: x b: x }");
        let facts = check_request(&mut request, 10).unwrap();
        assert_eq!(facts.aliases, 2);
        assert!(facts.has_mutation);
        // Parsed once: the document is in the request, for execution.
        assert!(request.parsed_query().is_ok());
        let mut bad = async_graphql::Request::new("{ unclosed");
        let refusal = check_request(&mut bad, 10).unwrap_err();
        assert_eq!(refusal.code, "GRAPHQL_PARSE_FAILED");
        assert_eq!(refusal, check("{ unclosed", 10).unwrap_err());
    }
}
