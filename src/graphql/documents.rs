//! Documents kept by their text, with the engine's validation of each
//! operation that passed. A client sends the same few operations over and
//! over with other variables. Parsing one took a tenth of a GraphQL
//! verify's CPU (session 11), the engine's validation a seventh of its
//! instructions (session 18) and a twentieth of a register's (session 25).
//! Both are done once per text: the parse for every document, and a
//! validation that passed is reused for the same operation as long as the
//! variables cannot change its outcome ([`InputShapes::cannot_fail`]).
//! The operation policy and execution run every time.
use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex, PoisonError},
};

use async_graphql::{
    ServerError, ValidationResult,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation},
    parser::{
        Error as ParseError, parse_query,
        types::{DocumentOperations, ExecutableDocument, OperationDefinition},
    },
};
use lru::LruCache;
use serde_json::Value;

use super::{direct::DirectQuery, input_shapes::InputShapes, policy::selected_operation};

/// Distinct texts kept; the least recently used goes first.
const CAPACITY: NonZeroUsize = match NonZeroUsize::new(128) {
    Some(capacity) => capacity,
    None => NonZeroUsize::MIN,
};

/// Longer texts are parsed and validated every time, so the cache stays
/// small (at most `CAPACITY` of these) whatever a client sends.
const LONGEST_KEPT: usize = 4 * 1024;

#[derive(Clone)]
pub struct ParsedDocuments {
    kept: Arc<Mutex<LruCache<String, Arc<KeptDocument>>>>,
    inputs: Arc<InputShapes>,
}

impl ParsedDocuments {
    /// Documents for the schema whose SDL is `sdl`: its input objects are
    /// what variables are checked against.
    pub fn for_schema(sdl: &str) -> Self {
        Self {
            kept: Arc::new(Mutex::new(LruCache::new(CAPACITY))),
            inputs: Arc::new(InputShapes::of_sdl(sdl)),
        }
    }
}

pub struct KeptDocument {
    document: ExecutableDocument,
    /// The engine's validations that passed, by the operation name they
    /// ran with. Only names that select one of the document's operations
    /// are kept, so there are at most as many as it has operations.
    passed: Mutex<Vec<PassedOperation>>,
}

struct PassedOperation {
    name: Option<String>,
    validation: ValidationResult,
    /// How to answer it without the engine, where that can be done.
    direct: Option<Arc<DirectQuery>>,
}

impl KeptDocument {
    fn passed(
        &self,
        operation_name: Option<&str>,
    ) -> Option<(ValidationResult, Option<Arc<DirectQuery>>)> {
        self.passed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|passed| passed.name.as_deref() == operation_name)
            .map(|passed| (passed.validation, passed.direct.clone()))
    }

    fn keep_passed(&self, operation_name: Option<String>, validation: ValidationResult) {
        let direct = engine_selected_operation(&self.document, operation_name.as_deref())
            .and_then(DirectQuery::of)
            .map(Arc::new);
        let mut passed = self.passed.lock().unwrap_or_else(PoisonError::into_inner);
        if !passed.iter().any(|passed| passed.name == operation_name) {
            passed.push(PassedOperation {
                name: operation_name,
                validation,
                direct,
            });
        }
    }
}

/// A document, kept or parsed for this request only.
pub struct Parsed {
    source: Source,
    inputs: Arc<InputShapes>,
}

enum Source {
    Kept(Arc<KeptDocument>),
    Once(ExecutableDocument),
}

impl ParsedDocuments {
    /// The document `text` holds: parsed before, or parsed now and kept.
    /// Texts that fail to parse are not kept.
    pub fn parse(&self, text: &str) -> Result<Parsed, ParseError> {
        if text.len() > LONGEST_KEPT {
            return Ok(Parsed {
                source: Source::Once(parse_query(text)?),
                inputs: Arc::clone(&self.inputs),
            });
        }
        // A panic elsewhere cannot leave the map half-updated: it is only
        // read and written whole here.
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(text)
            .cloned();
        let kept = match kept {
            Some(kept) => kept,
            None => {
                let kept = Arc::new(KeptDocument {
                    document: parse_query(text)?,
                    passed: Mutex::default(),
                });
                self.kept
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .put(text.to_owned(), Arc::clone(&kept));
                kept
            }
        };
        Ok(Parsed {
            source: Source::Kept(kept),
            inputs: Arc::clone(&self.inputs),
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Parsed {
    pub fn document(&self) -> &ExecutableDocument {
        match &self.source {
            Source::Kept(kept) => &kept.document,
            Source::Once(document) => document,
        }
    }

    /// The document for the engine, which takes it by value.
    pub fn into_document(self) -> ExecutableDocument {
        match self.source {
            Source::Kept(kept) => kept.document.clone(),
            Source::Once(document) => document,
        }
    }

    fn kept(&self) -> Option<&Arc<KeptDocument>> {
        match &self.source {
            Source::Kept(kept) => Some(kept),
            Source::Once(_) => None,
        }
    }

    /// What [`ReuseValidation`] is to do with this request, given to the
    /// engine as request data; `None` when the engine is to validate it
    /// and keep nothing (a long text, or a name that selects no
    /// operation).
    pub fn validation(
        &self,
        operation_name: Option<&str>,
        variables: &Value,
    ) -> Option<KnownValidation> {
        let kept = self.kept()?;
        let operation = engine_selected_operation(&kept.document, operation_name)?;
        match kept.passed(operation_name) {
            Some((result, direct)) if self.inputs.cannot_fail(operation, variables) => {
                Some(KnownValidation::Passed(result, direct))
            }
            _ => Some(KnownValidation::Keep {
                document: Arc::clone(kept),
                operation_name: operation_name.map(str::to_owned),
            }),
        }
    }
}

/// The operation the engine runs for `operation_name`: as the policy's
/// choice, except that the engine refuses any name for a document whose
/// one operation is anonymous (after validating it).
fn engine_selected_operation<'d>(
    document: &'d ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'d OperationDefinition> {
    if let (DocumentOperations::Single(_), Some(_)) = (&document.operations, operation_name) {
        return None;
    }
    selected_operation(document, operation_name).map(|operation| &operation.node)
}

/// Request data for [`ReuseValidation`].
pub enum KnownValidation {
    /// The operation passed before and these variables cannot fail it;
    /// with its direct form if it has one.
    Passed(ValidationResult, Option<Arc<DirectQuery>>),
    /// Validate, and keep the result if it passes.
    Keep {
        document: Arc<KeptDocument>,
        operation_name: Option<String>,
    },
}

impl KnownValidation {
    /// How to answer without the engine ([`DirectQuery`]), when the
    /// operation passed before, these variables cannot fail it, and it
    /// has a direct form.
    pub fn direct(&self) -> Option<&Arc<DirectQuery>> {
        match self {
            KnownValidation::Passed(_, direct) => direct.as_ref(),
            KnownValidation::Keep { .. } => None,
        }
    }
}

/// The engine's validation step, skipped where the request says it passed
/// before ([`KnownValidation`]). Schema-wide: one extension serves every
/// request.
pub struct ReuseValidation(Arc<dyn Extension>);

impl Default for ReuseValidation {
    fn default() -> Self {
        Self(Arc::new(ReuseValidationStep))
    }
}

impl ExtensionFactory for ReuseValidation {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::clone(&self.0)
    }
}

struct ReuseValidationStep;

#[async_trait::async_trait]
impl Extension for ReuseValidationStep {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        match ctx.data_opt::<KnownValidation>() {
            Some(KnownValidation::Passed(result, _)) => Ok(*result),
            Some(KnownValidation::Keep {
                document,
                operation_name,
            }) => {
                let result = next.run(ctx).await?;
                document.keep_passed(operation_name.clone(), result);
                Ok(result)
            }
            None => next.run(ctx).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const VERIFY: &str = "query($u: String!) { verifyUsername(username: $u) { exists } }";
    const REGISTER: &str = "mutation($i: RegisterInput!) { register(input: $i) { username } }";

    /// Documents of the schema this service serves.
    fn documents() -> ParsedDocuments {
        ParsedDocuments::for_schema(&crate::graphql::sdl())
    }

    fn passed_once(parsed: &Parsed, operation_name: Option<&str>) {
        let Some(KnownValidation::Keep {
            document,
            operation_name,
        }) = parsed.validation(operation_name, &json!({}))
        else {
            panic!("a first validation is kept");
        };
        document.keep_passed(
            operation_name,
            ValidationResult {
                cache_control: Default::default(),
                complexity: 3,
                depth: 2,
            },
        );
    }

    fn reused(parsed: &Parsed, operation_name: Option<&str>, variables: Value) -> bool {
        matches!(
            parsed.validation(operation_name, &variables),
            Some(KnownValidation::Passed(result, _)) if result.complexity == 3
        )
    }

    #[test]
    fn a_kept_document_is_the_one_parsed() {
        let documents = documents();
        let first = documents.parse(VERIFY).unwrap().into_document();
        let again = documents.parse(VERIFY).unwrap().into_document();
        assert_eq!(format!("{first:?}"), format!("{again:?}"));
        assert_eq!(documents.len(), 1);
    }

    #[test]
    fn failures_and_long_texts_are_not_kept() {
        let documents = documents();
        assert!(documents.parse("query {").is_err());
        let long = format!("{{ {} }}", "__typename ".repeat(LONGEST_KEPT / 10));
        let parsed = documents.parse(&long).unwrap();
        assert!(parsed.validation(None, &json!({})).is_none());
        assert_eq!(documents.len(), 0);
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity() {
        let documents = documents();
        for i in 0..CAPACITY.get() + 10 {
            documents.parse(&format!("{{ a{i}: __typename }}")).unwrap();
        }
        assert_eq!(documents.len(), CAPACITY.get());
    }

    #[test]
    fn a_passed_validation_is_reused_only_for_string_variables() {
        let documents = documents();
        assert!(!reused(
            &documents.parse(VERIFY).unwrap(),
            None,
            json!({"u": "+62812"})
        ));
        passed_once(&documents.parse(VERIFY).unwrap(), None);
        let parsed = documents.parse(VERIFY).unwrap();
        assert!(reused(&parsed, None, json!({"u": "+6281200012345"})));
        // The engine checks these values against the argument's type.
        assert!(!reused(&parsed, None, json!({"u": 6281200012345_u64})));
        assert!(!reused(&parsed, None, json!({"u": null})));
        assert!(!reused(&parsed, None, json!({"u": ["+62812"]})));
        assert!(!reused(&parsed, None, json!({})));
    }

    #[test]
    fn an_availability_query_goes_direct_once_it_passed_and_while_it_cannot_fail() {
        let documents = documents();
        let direct = |parsed: &Parsed, operation_name: Option<&str>, variables: Value| {
            parsed
                .validation(operation_name, &variables)
                .is_some_and(|validation| validation.direct().is_some())
        };
        let string = json!({"u": "+6281200012345"});
        assert!(!direct(
            &documents.parse(VERIFY).unwrap(),
            None,
            string.clone()
        ));
        passed_once(&documents.parse(VERIFY).unwrap(), None);
        let parsed = documents.parse(VERIFY).unwrap();
        assert!(direct(&parsed, None, string.clone()));
        assert!(!direct(&parsed, None, json!({"u": 6281200012345_u64})));
        assert!(!direct(&parsed, None, json!({})));
        // A name the engine refuses for an anonymous operation.
        assert!(!direct(&parsed, Some("V"), string));
        passed_once(&documents.parse(REGISTER).unwrap(), None);
        let register = json!({"i": {"phone": "081234567890"}});
        assert!(!direct(&documents.parse(REGISTER).unwrap(), None, register));
    }

    #[test]
    fn other_types_of_variable_are_validated_every_time() {
        let documents = documents();
        for text in [
            "query($u: [String!]!) { a: __typename }",
            "query($u: Int!) { a: __typename }",
            "mutation($i: RegisterInput!) { register(input: $i) { __typename } }",
        ] {
            passed_once(&documents.parse(text).unwrap(), None);
            let parsed = documents.parse(text).unwrap();
            assert!(
                !reused(&parsed, None, json!({"u": "1", "i": "1"})),
                "{text}"
            );
        }
        let no_variables = "{ __typename }";
        passed_once(&documents.parse(no_variables).unwrap(), None);
        assert!(reused(
            &documents.parse(no_variables).unwrap(),
            None,
            json!({})
        ));
    }

    #[test]
    fn a_validation_is_kept_for_the_operation_it_ran() {
        let documents = documents();
        let text = "query A($u: String!) { a: __typename } query B($u: String!) { b: __typename }";
        passed_once(&documents.parse(text).unwrap(), Some("A"));
        let parsed = documents.parse(text).unwrap();
        let variables = json!({"u": "x"});
        assert!(reused(&parsed, Some("A"), variables.clone()));
        assert!(!reused(&parsed, Some("B"), variables.clone()));
        // Names that select nothing keep nothing, so they cannot grow it.
        assert!(parsed.validation(Some("C"), &variables).is_none());
        assert!(parsed.validation(None, &variables).is_none());
        let anonymous = documents.parse(VERIFY).unwrap();
        assert!(anonymous.validation(Some("A"), &variables).is_none());
    }

    #[test]
    fn a_passed_validation_is_reused_for_input_objects_the_engine_must_accept() {
        let documents = documents();
        passed_once(&documents.parse(REGISTER).unwrap(), None);
        let parsed = documents.parse(REGISTER).unwrap();
        let input = json!({
            "phone": "081234567890", "name": "Septian", "birthDate": "1990-01-31",
            "birthPlace": "Jakarta", "gender": true, "countryId": "ID",
            "accountGroupId": "01", "email": "s@example.com",
        });
        let with = |change: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut input = input.clone();
            change(input.as_object_mut().unwrap());
            json!({ "i": input })
        };
        assert!(reused(&parsed, None, json!({ "i": input })));
        // Fields that may be null, given as null or left out.
        assert!(reused(
            &parsed,
            None,
            with(&|i| {
                i.insert("email".into(), Value::Null);
                i.insert("language".into(), Value::Null);
            })
        ));
        assert!(reused(
            &parsed,
            None,
            with(&|i| {
                i.remove("email");
            })
        ));
        // What the engine checks and may refuse, with its own message.
        for refused in [
            with(&|i| {
                i.insert("gender".into(), json!("true"));
            }),
            with(&|i| {
                i.insert("name".into(), json!(42));
            }),
            with(&|i| {
                i.insert("name".into(), Value::Null);
            }),
            with(&|i| {
                i.remove("birthDate");
            }),
            with(&|i| {
                i.insert("nickname".into(), json!("x"));
            }),
            with(&|i| {
                i.insert("sourceId".into(), json!(["x"]));
            }),
            json!({ "i": "not an object" }),
            json!({ "i": null }),
            json!({}),
        ] {
            assert!(!reused(&parsed, None, refused.clone()), "{refused}");
        }
    }
}
