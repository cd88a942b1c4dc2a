//! Availability queries answered without the engine. A host asks
//! `verifyUsername` or `verifyEmail` with the same document again and again;
//! once the engine has validated that document, what it would do with it
//! is known: call the one resolver and copy the answer's leaves into the
//! response under their keys. Doing that here costs what REST costs; the
//! engine's execution (its contexts, futures and response tree around a
//! lookup that costs little by itself) made a GraphQL verify about 1.3×
//! REST's instructions (docs/PERFORMANCE.md, session 31).
//!
//! Only documents whose whole meaning is that call get a [`DirectQuery`]:
//! a query of one root field, `verifyUsername` or `verifyEmail`, with its
//! argument a string literal or a `String!` variable, selecting leaves only
//! (`exists`, the normalised value, `__typename`), each once, with no
//! directive and no fragment anywhere. Anything else goes to the engine, as
//! does a document before its first validation passed and variables that
//! could fail it. The answer, errors included, is the engine's to the byte
//! (`tests/api/graphql_http.rs` compares them).
use async_graphql::{
    Name, PathSegment, Pos, Response, Value as GqlValue,
    indexmap::IndexMap,
    parser::types::{BaseType, OperationDefinition, OperationType, Selection},
};
use serde_json::Value;

use crate::{
    service::{hosts::AuthenticatedHost, registration},
    state::Core,
};

/// A kept document's operation that [`DirectQuery::run`] answers as the
/// engine would.
pub struct DirectQuery {
    lookup: Lookup,
    /// Where the field stands in the document and what it answers under.
    position: Pos,
    response_key: Name,
    argument: Argument,
    leaves: Vec<(Name, Leaf)>,
}

#[derive(Clone, Copy)]
enum Lookup {
    Username,
    Email,
}

impl Lookup {
    fn of_field(name: &str) -> Option<(Self, &'static str)> {
        match name {
            "verifyUsername" => Some((Lookup::Username, "username")),
            "verifyEmail" => Some((Lookup::Email, "email")),
            _ => None,
        }
    }

    /// The output type's name and the field holding the normalised value.
    fn output(self) -> (&'static str, &'static str) {
        match self {
            Lookup::Username => ("UsernameAvailability", "username"),
            Lookup::Email => ("EmailAvailability", "email"),
        }
    }
}

enum Argument {
    Literal(String),
    Variable(Name),
}

enum Leaf {
    Exists,
    Normalised,
    Typename(&'static str),
}

impl DirectQuery {
    /// The direct form of `operation`, if it has one. Called once per kept
    /// document and operation, after the engine's validation passed, so
    /// the field, its argument and the variable's type are known to be the
    /// schema's; what is checked here is that nothing else is asked.
    pub fn of(operation: &OperationDefinition) -> Option<Self> {
        if operation.ty != OperationType::Query || !operation.directives.is_empty() {
            return None;
        }
        let [item] = operation.selection_set.node.items.as_slice() else {
            return None;
        };
        let Selection::Field(field) = &item.node else {
            return None;
        };
        let (lookup, argument_name) = Lookup::of_field(&field.node.name.node)?;
        if !field.node.directives.is_empty() {
            return None;
        }
        let [(name, value)] = field.node.arguments.as_slice() else {
            return None;
        };
        if name.node.as_str() != argument_name {
            return None;
        }
        let argument = match &value.node {
            async_graphql_value::Value::String(text) => Argument::Literal(text.clone()),
            async_graphql_value::Value::Variable(variable) => {
                let definition = operation
                    .variable_definitions
                    .iter()
                    .find(|definition| definition.node.name.node == *variable)?;
                let ty = &definition.node.var_type.node;
                let plain_string = matches!(&ty.base, BaseType::Named(name) if name == "String")
                    && !ty.nullable
                    && definition.node.default_value.is_none()
                    && definition.node.directives.is_empty();
                if !plain_string || operation.variable_definitions.len() != 1 {
                    return None;
                }
                Argument::Variable(variable.clone())
            }
            _ => return None,
        };
        let (type_name, normalised) = lookup.output();
        let mut leaves: Vec<(Name, Leaf)> = Vec::new();
        for item in &field.node.selection_set.node.items {
            let Selection::Field(leaf) = &item.node else {
                return None;
            };
            let leaf = &leaf.node;
            if !leaf.arguments.is_empty()
                || !leaf.directives.is_empty()
                || !leaf.selection_set.node.items.is_empty()
            {
                return None;
            }
            let kind = match leaf.name.node.as_str() {
                "exists" => Leaf::Exists,
                "__typename" => Leaf::Typename(type_name),
                name if name == normalised => Leaf::Normalised,
                _ => return None,
            };
            let key = leaf.response_key().node.clone();
            // The engine merges a key asked twice; leave that to it.
            if leaves.iter().any(|(seen, _)| *seen == key) {
                return None;
            }
            leaves.push((key, kind));
        }
        if leaves.is_empty() {
            return None;
        }
        Some(Self {
            lookup,
            position: item.pos,
            response_key: field.node.response_key().node.clone(),
            argument,
            leaves,
        })
    }

    /// The argument's value with these variables; `None` if they do not
    /// hold it as a string (then the engine answers).
    pub fn argument<'v>(&'v self, variables: &'v Value) -> Option<&'v str> {
        match &self.argument {
            Argument::Literal(text) => Some(text),
            Argument::Variable(name) => variables.get(name.as_str())?.as_str(),
        }
    }

    /// Calls the resolver's service function and answers as the engine
    /// does: the leaves in the document's order, or the error at the
    /// field's position and path with `data` null (the field is non-null).
    pub async fn run(&self, core: &Core, host: &AuthenticatedHost, argument: &str) -> Response {
        let given = Some(argument.to_owned()).into();
        let answer = match self.lookup {
            Lookup::Username => registration::verify_username(core, host, given)
                .await
                .map(|availability| (availability.username, availability.exists)),
            Lookup::Email => registration::verify_email(core, host, given)
                .await
                .map(|availability| (availability.email, availability.exists)),
        };
        match answer {
            Ok((normalised, exists)) => {
                let object: IndexMap<Name, GqlValue> = self
                    .leaves
                    .iter()
                    .map(|(key, leaf)| {
                        let value = match leaf {
                            Leaf::Exists => GqlValue::Boolean(exists),
                            Leaf::Normalised => GqlValue::String(normalised.clone()),
                            Leaf::Typename(name) => GqlValue::String((*name).to_owned()),
                        };
                        (key.clone(), value)
                    })
                    .collect();
                let data = IndexMap::from([(self.response_key.clone(), GqlValue::Object(object))]);
                Response::new(GqlValue::Object(data))
            }
            Err(error) => {
                let mut error = async_graphql::Error::from(error).into_server_error(self.position);
                error.path = vec![PathSegment::Field(self.response_key.to_string())];
                Response::from_errors(vec![error])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;
    use crate::graphql::policy::selected_operation;

    fn direct(text: &str) -> Option<DirectQuery> {
        let document = parse_query(text).unwrap();
        DirectQuery::of(&selected_operation(&document, None).unwrap().node)
    }

    #[test]
    fn a_lone_availability_query_of_leaves_is_answered_directly() {
        for text in [
            "query($u: String!) { verifyUsername(username: $u) { username exists } }",
            "query V($u: String!) { taken: verifyUsername(username: $u) { e: exists __typename } }",
            "{ verifyEmail(email: \"a@b.example\") { exists email } }",
            "query($e: String!) { verifyEmail(email: $e) { exists } }",
        ] {
            assert!(direct(text).is_some(), "{text}");
        }
        let query =
            direct("query($u: String!) { v: verifyUsername(username: $u) { exists } }").unwrap();
        let variables = serde_json::json!({ "u": "081234567890" });
        assert_eq!(query.argument(&variables), Some("081234567890"));
        assert_eq!(query.argument(&serde_json::json!({ "u": 1 })), None);
        assert_eq!(query.response_key.as_str(), "v");
    }

    #[test]
    fn anything_more_is_left_to_the_engine() {
        for text in [
            // Another field, two fields, a mutation.
            "{ registrations { items { id } } }",
            "{ a: verifyEmail(email: \"a@b.example\") { exists } b: verifyEmail(email: \"c@d.example\") { exists } }",
            "mutation($u: String!) { verifyUsername(username: $u) { exists } }",
            // Directives anywhere, fragments.
            "query($u: String!) @cached { verifyUsername(username: $u) { exists } }",
            "query($u: String!) { verifyUsername(username: $u) @skip(if: false) { exists } }",
            "query($u: String!) { verifyUsername(username: $u) { exists @include(if: true) } }",
            "query($u: String!) { verifyUsername(username: $u) { ...F } } fragment F on UsernameAvailability { exists }",
            "query($u: String!) { verifyUsername(username: $u) { ... on UsernameAvailability { exists } } }",
            "query($u: String!) { ... on QueryRoot { verifyUsername(username: $u) { exists } } }",
            // A variable that is nullable, has a default or is not the only one.
            "query($u: String) { verifyUsername(username: $u) { exists } }",
            "query($u: String! = \"0812\") { verifyUsername(username: $u) { exists } }",
            "query($u: String!, $v: String!) { verifyUsername(username: $u) { exists } }",
            // A key asked twice, a leaf of the other type, nothing selected.
            "query($u: String!) { verifyUsername(username: $u) { exists exists } }",
            "query($u: String!) { verifyUsername(username: $u) { email } }",
            "query($u: String!) { verifyUsername(username: $u) { exists __schema { types { name } } } }",
            "{ verifyUsername(username: 81234567890) { exists } }",
        ] {
            assert!(direct(text).is_none(), "{text}");
        }
    }
}
