//! What a GraphQL variable can hold and still pass the engine's validation
//! for certain, read from the schema's input objects: what lets
//! `documents` reuse a validation that passed (session 25).
use std::collections::HashMap;

use async_graphql::parser::{
    parse_schema,
    types::{BaseType, OperationDefinition, Type, TypeKind, TypeSystemDefinition},
};
use serde_json::Value;

/// What the schema's input objects accept for certain: for each, its
/// fields whose type is `String`, `ID` or `Boolean`, and the others as
/// unknown. Read from the SDL the schema itself writes, so it is the
/// engine's own view of them.
#[derive(Default)]
pub struct InputShapes(HashMap<String, Vec<InputField>>);

struct InputField {
    name: String,
    kind: FieldKind,
    /// Null is a value it accepts.
    nullable: bool,
    /// It may be left out: nullable, or with a default.
    optional: bool,
}

enum FieldKind {
    /// `String` or `ID`: a JSON string is always one.
    Text,
    Boolean,
    /// Anything else (numbers, enums, lists, other inputs): a value of it
    /// is left to the engine.
    Unknown,
}

impl InputShapes {
    /// The input objects of `sdl`; none if it does not parse (then every
    /// variable of an input object is validated every time).
    pub fn of_sdl(sdl: &str) -> Self {
        let Ok(schema) = parse_schema(sdl) else {
            return Self::default();
        };
        let mut shapes = HashMap::new();
        for definition in schema.definitions {
            let TypeSystemDefinition::Type(definition) = definition else {
                continue;
            };
            let definition = definition.node;
            // A directive (`@oneOf`) may add a rule of its own.
            let TypeKind::InputObject(input) = definition.kind else {
                continue;
            };
            if !definition.directives.is_empty() {
                continue;
            }
            let fields = input
                .fields
                .into_iter()
                .map(|field| {
                    let field = field.node;
                    let Type { base, nullable } = field.ty.node;
                    let kind = match &base {
                        BaseType::Named(name) if matches!(name.as_str(), "String" | "ID") => {
                            FieldKind::Text
                        }
                        BaseType::Named(name) if name.as_str() == "Boolean" => FieldKind::Boolean,
                        _ => FieldKind::Unknown,
                    };
                    InputField {
                        name: field.name.node.to_string(),
                        kind,
                        nullable,
                        optional: nullable || field.default_value.is_some(),
                    }
                })
                .collect();
            shapes.insert(definition.name.node.to_string(), fields);
        }
        Self(shapes)
    }

    /// Whether the engine's validation of this operation with `variables`
    /// is bound to end as it did with any other variables. Everything it
    /// checks is in the document, except the values of the operation's
    /// variables, each against the arguments it fills (and against custom
    /// complexities, which this schema has none of). A variable passes for
    /// certain when it is a JSON string for a `String` or `ID`, or, for an
    /// input object, a JSON object of its fields and nothing else, every
    /// field that may not be left out there, each a string for a `String`
    /// or `ID` field, a boolean for a `Boolean` one, or null where null is
    /// allowed. Anything else (another type, a missing variable, a null, a
    /// number, a list, an unknown field) is validated again.
    pub fn cannot_fail(&self, operation: &OperationDefinition, variables: &Value) -> bool {
        operation.variable_definitions.iter().all(|definition| {
            let definition = &definition.node;
            let BaseType::Named(type_name) = &definition.var_type.node.base else {
                return false;
            };
            let Some(value) = variables.get(definition.name.node.as_str()) else {
                return false;
            };
            match type_name.as_str() {
                "String" | "ID" => value.is_string(),
                input => self
                    .0
                    .get(input)
                    .is_some_and(|fields| input_cannot_fail(fields, value)),
            }
        })
    }
}

fn input_cannot_fail(fields: &[InputField], value: &Value) -> bool {
    let Value::Object(given) = value else {
        return false;
    };
    let field = |name: &str| fields.iter().find(|field| field.name == name);
    given.iter().all(|(name, value)| {
        field(name).is_some_and(|field| match (value, &field.kind) {
            (Value::Null, _) => field.nullable,
            (Value::String(_), FieldKind::Text) | (Value::Bool(_), FieldKind::Boolean) => true,
            _ => false,
        })
    }) && fields
        .iter()
        .all(|field| field.optional || given.contains_key(&field.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_objects_are_read_from_the_schema() {
        let shapes = InputShapes::of_sdl(&crate::graphql::sdl());
        let register = &shapes.0["RegisterInput"];
        let field = |name: &str| register.iter().find(|f| f.name == name).unwrap();
        assert!(matches!(field("gender").kind, FieldKind::Boolean));
        assert!(matches!(field("phone").kind, FieldKind::Text));
        assert!(!field("phone").optional);
        assert!(field("email").optional && field("email").nullable);
        assert!(shapes.0.contains_key("ConfirmRegistrationInput"));
        assert!(shapes.0.contains_key("ResendInput"));
        // Types it cannot vouch for, and a directive's rule, are left out
        // or marked unknown.
        let other = InputShapes::of_sdl(
            "input A { n: Int!, e: [String!] } input B @oneOf { a: String, b: String }",
        );
        assert!(
            other.0["A"]
                .iter()
                .all(|f| matches!(f.kind, FieldKind::Unknown))
        );
        assert!(!other.0.contains_key("B"));
        assert!(InputShapes::of_sdl("not a schema {").0.is_empty());
    }
}
