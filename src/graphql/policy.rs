//! Rules on the shape of an operation, checked before it runs.
use async_graphql::parser::{
    parse_query,
    types::{DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet},
};

use crate::http::error::ApiError;

/// Every mutation here sends messages or spends attempts, so an operation
/// may hold one mutation field only: aliases cannot multiply guesses or
/// sends within one request.
pub fn check_operation_policy(query: &str, operation_name: Option<&str>) -> Result<(), ApiError> {
    // Syntax errors are left to the executor, which reports them properly.
    let Ok(document) = parse_query(query) else {
        return Ok(());
    };
    for (name, operation) in operations(&document) {
        if operation_name.is_some() && name != operation_name {
            continue;
        }
        if operation.node.ty != OperationType::Mutation {
            continue;
        }
        let fields = count_fields(&document, &operation.node.selection_set.node, 0);
        if fields > 1 {
            return Err(ApiError::GraphqlPolicy(format!(
                "an operation may contain one mutation field; this one has {fields}"
            )));
        }
    }
    Ok(())
}

fn operations(
    document: &ExecutableDocument,
) -> Vec<(
    Option<&str>,
    &async_graphql::Positioned<async_graphql::parser::types::OperationDefinition>,
)> {
    match &document.operations {
        DocumentOperations::Single(operation) => vec![(None, operation)],
        DocumentOperations::Multiple(map) => map
            .iter()
            .map(|(name, operation)| (Some(name.as_str()), operation))
            .collect(),
    }
}

fn count_fields(document: &ExecutableDocument, set: &SelectionSet, depth: usize) -> usize {
    // Fragment cycles are invalid GraphQL; the bound only stops recursion.
    if depth > 16 {
        return 0;
    }
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(_) => 1,
            Selection::InlineFragment(fragment) => {
                count_fields(document, &fragment.node.selection_set.node, depth + 1)
            }
            Selection::FragmentSpread(spread) => document
                .fragments
                .get(&spread.node.fragment_name.node)
                .map_or(0, |f| {
                    count_fields(document, &f.node.selection_set.node, depth + 1)
                }),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mutation_field_is_allowed() {
        assert!(check_operation_policy("mutation { a }", None).is_ok());
        assert!(check_operation_policy("query { a b c }", None).is_ok());
    }

    #[test]
    fn aliases_and_fragments_count() {
        assert!(check_operation_policy("mutation { a: x b: x }", None).is_err());
        let spread = "mutation { ...F } fragment F on MutationRoot { a b }";
        assert!(check_operation_policy(spread, None).is_err());
        let inline = "mutation { ... on MutationRoot { a } b }";
        assert!(check_operation_policy(inline, None).is_err());
    }

    #[test]
    fn only_the_selected_operation_counts() {
        let doc = "mutation One { a } mutation Two { a b }";
        assert!(check_operation_policy(doc, Some("One")).is_ok());
        assert!(check_operation_policy(doc, Some("Two")).is_err());
    }
}
