//! Rules on the shape of an operation, checked before it runs, on the
//! document with every fragment expanded. Every bound fails closed: an
//! operation too deep, too wide or too aliased to measure is refused whole.
use async_graphql::{
    Positioned,
    parser::types::{
        DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
        SelectionSet,
    },
};

use crate::config::GraphqlSettings;

/// Nesting of selections and fragments beyond any real operation; deeper
/// documents are refused rather than walked.
const MAX_NESTING: usize = 32;

/// How deep a schema read may go: graphql-js nests `ofType` nine times.
pub const SCHEMA_READ_DEPTH: usize = 24;

/// What the policy learned about the operation it let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Only `__schema`, `__type` and `__typename` at the top: a schema
    /// read, allowed without a token when introspection is on.
    pub introspection_only: bool,
    /// A mutation: it may write, so it runs to its end even when the
    /// client goes away. Queries only read.
    pub writes: bool,
}

/// The operation `operation_name` selects, if the document has it; the
/// executor reports a missing or ambiguous one.
pub fn selected_operation<'d>(
    document: &'d ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'d Positioned<OperationDefinition>> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(map), Some(name)) => map.get(name),
        (DocumentOperations::Multiple(map), None) if map.len() == 1 => map.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// Every mutation here sends messages or spends attempts, so an operation
/// may hold one mutation field only: aliases cannot multiply guesses or
/// sends within one request. Every operation is bounded in depth (schema
/// reads excepted, which are bounded by `MAX_NESTING`), in fields and in
/// aliases, so one request cannot carry hundreds of lookups.
pub fn check_operation_policy(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    limits: &GraphqlSettings,
) -> Result<Shape, String> {
    let Some(operation) = selected_operation(document, operation_name) else {
        // The executor refuses it before anything runs.
        return Ok(Shape {
            introspection_only: false,
            writes: false,
        });
    };
    let mut walk = Walk {
        document,
        limits,
        fields: 0,
        aliases: 0,
        mutation_fields: 0,
        open_fragments: Vec::new(),
    };
    let is_mutation = operation.node.ty == OperationType::Mutation;
    walk.selections(&operation.node.selection_set.node, 0, true, 0, is_mutation)?;
    if walk.mutation_fields > 1 {
        return Err(format!(
            "an operation may contain one mutation field; this one has {}",
            walk.mutation_fields
        ));
    }
    Ok(Shape {
        introspection_only: !is_mutation
            && top_level_fields(document, &operation.node.selection_set.node, 0)
                .iter()
                .all(|name| name.starts_with("__")),
        writes: is_mutation,
    })
}

struct Walk<'d> {
    document: &'d ExecutableDocument,
    limits: &'d GraphqlSettings,
    fields: usize,
    aliases: usize,
    mutation_fields: usize,
    /// Fragments being expanded, to stop at a cycle (invalid GraphQL the
    /// executor then reports).
    open_fragments: Vec<&'d str>,
}

impl<'d> Walk<'d> {
    /// `depth` counts fields; `nesting` counts fields and fragments, so a
    /// tower of fragments is bounded too. `at_root` marks the mutation's
    /// own fields.
    fn selections(
        &mut self,
        set: &'d SelectionSet,
        depth: usize,
        depth_counts: bool,
        nesting: usize,
        at_root: bool,
    ) -> Result<(), String> {
        if nesting > MAX_NESTING {
            return Err(format!(
                "the operation nests selections and fragments more than {MAX_NESTING} levels deep"
            ));
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    self.fields += 1;
                    if self.fields > self.limits.max_fields {
                        return Err(format!(
                            "an operation may select at most {} fields, fragments expanded",
                            self.limits.max_fields
                        ));
                    }
                    if field.alias.is_some() {
                        self.aliases += 1;
                        if self.aliases > self.limits.max_aliases {
                            return Err(format!(
                                "an operation may use at most {} aliases",
                                self.limits.max_aliases
                            ));
                        }
                    }
                    if at_root {
                        self.mutation_fields += 1;
                    }
                    let name = field.name.node.as_str();
                    // The schema read is as deep as the type system, not as
                    // the data: only the nesting bound applies under it.
                    let depth_counts = depth_counts && name != "__schema" && name != "__type";
                    if depth_counts && depth + 1 > self.limits.max_depth {
                        return Err(format!(
                            "an operation may nest fields at most {} levels deep",
                            self.limits.max_depth
                        ));
                    }
                    self.selections(
                        &field.selection_set.node,
                        depth + 1,
                        depth_counts,
                        nesting + 1,
                        false,
                    )?;
                }
                Selection::InlineFragment(fragment) => {
                    self.selections(
                        &fragment.node.selection_set.node,
                        depth,
                        depth_counts,
                        nesting + 1,
                        at_root,
                    )?;
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if self.open_fragments.contains(&name) {
                        continue;
                    }
                    let Some(fragment) = self.document.fragments.get(name) else {
                        continue;
                    };
                    self.open_fragments.push(name);
                    self.selections(
                        &fragment.node.selection_set.node,
                        depth,
                        depth_counts,
                        nesting + 1,
                        at_root,
                    )?;
                    self.open_fragments.pop();
                }
            }
        }
        Ok(())
    }
}

/// The names of the operation's own fields, through fragments (already
/// bounded by the walk).
fn top_level_fields<'d>(
    document: &'d ExecutableDocument,
    set: &'d SelectionSet,
    nesting: usize,
) -> Vec<&'d str> {
    if nesting > MAX_NESTING {
        return vec![""];
    }
    set.items
        .iter()
        .flat_map(|item| match &item.node {
            Selection::Field(field) => vec![field.node.name.node.as_str()],
            Selection::InlineFragment(fragment) => {
                top_level_fields(document, &fragment.node.selection_set.node, nesting + 1)
            }
            Selection::FragmentSpread(spread) => document
                .fragments
                .get(spread.node.fragment_name.node.as_str())
                .map_or_else(Vec::new, |f| {
                    top_level_fields(document, &f.node.selection_set.node, nesting + 1)
                }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn check(query: &str, operation_name: Option<&str>) -> Result<Shape, String> {
        let document = parse_query(query).unwrap();
        check_operation_policy(&document, operation_name, &GraphqlSettings::default())
    }

    #[test]
    fn one_mutation_field_is_allowed() {
        assert!(check("mutation { a }", None).is_ok());
        assert!(check("query { a b c }", None).is_ok());
    }

    #[test]
    fn aliases_and_fragments_count() {
        assert!(check("mutation { a: x b: x }", None).is_err());
        let spread = "mutation { ...F } fragment F on MutationRoot { a b }";
        assert!(check(spread, None).is_err());
        let inline = "mutation { ... on MutationRoot { a } b }";
        assert!(check(inline, None).is_err());
    }

    #[test]
    fn nested_fragments_count_at_any_depth() {
        for levels in [1, 16, 17, 30] {
            let open = "... on MutationRoot { ".repeat(levels);
            let close = "} ".repeat(levels);
            let query = format!("mutation {{ {open} a: register b: register {close} }}");
            let refused = check(&query, None).unwrap_err();
            assert!(
                refused.contains("one mutation field"),
                "{levels}: {refused}"
            );
        }
        // Beyond any real operation: refused for its nesting, not walked.
        let open = "... on MutationRoot { ".repeat(40);
        let close = "} ".repeat(40);
        let tower = format!("mutation {{ {open} register {close} }}");
        assert!(check(&tower, None).unwrap_err().contains("levels deep"));
    }

    #[test]
    fn only_the_selected_operation_counts() {
        let doc = "mutation One { a } mutation Two { a b }";
        assert!(check(doc, Some("One")).is_ok());
        assert!(check(doc, Some("Two")).is_err());
    }

    #[test]
    fn queries_are_bounded_in_aliases_fields_and_depth() {
        let aliases: String = (0..11).map(|i| format!("a{i}: verifyUsername ")).collect();
        assert!(
            check(&format!("{{ {aliases} }}"), None)
                .unwrap_err()
                .contains("aliases")
        );
        // A fragment used many times is counted each time it is expanded.
        let fan = "{ ...A ...A ...A } fragment A on Q { ...B ...B ...B ...B ...B } \
                   fragment B on Q { ...C ...C ...C ...C ...C } \
                   fragment C on Q { ...D ...D ...D ...D ...D } fragment D on Q { x y z }";
        assert!(check(fan, None).unwrap_err().contains("fields"));
        let deep = format!("{{ {} x {} }}", "a { ".repeat(12), "} ".repeat(12));
        assert!(check(&deep, None).unwrap_err().contains("levels deep"));
    }

    #[test]
    fn the_introspection_queries_of_graphql_js_pass_and_are_recognised() {
        for query in [
            include_str!("../../tests/fixtures/introspection-graphql-js-default.graphql"),
            include_str!("../../tests/fixtures/introspection-graphql-js-all-options.graphql"),
        ] {
            let shape = check(query, Some("IntrospectionQuery")).unwrap();
            assert!(shape.introspection_only);
        }
        assert!(
            !check("{ __typename verifyUsername }", None)
                .unwrap()
                .introspection_only
        );
        assert!(check("{ __typename }", None).unwrap().introspection_only);
    }
}
