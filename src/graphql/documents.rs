//! Parsed documents kept by their text. A client sends the same few
//! operations over and over with other variables; parsing one took a tenth
//! of a GraphQL verify's CPU, more than validating it. Only the parse is
//! kept: validation, the operation policy and execution run every time.
use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex, PoisonError},
};

use async_graphql::parser::{Error as ParseError, parse_query, types::ExecutableDocument};
use lru::LruCache;

/// Distinct texts kept; the least recently used goes first.
const CAPACITY: NonZeroUsize = match NonZeroUsize::new(128) {
    Some(capacity) => capacity,
    None => NonZeroUsize::MIN,
};

/// Longer texts are parsed every time, so the cache stays small (at most
/// `CAPACITY` of these) whatever a client sends.
const LONGEST_KEPT: usize = 4 * 1024;

#[derive(Clone)]
pub struct ParsedDocuments(Arc<Mutex<LruCache<String, Arc<ExecutableDocument>>>>);

impl Default for ParsedDocuments {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(LruCache::new(CAPACITY))))
    }
}

impl ParsedDocuments {
    /// The document `text` holds: parsed before, or parsed now and kept.
    /// Texts that fail to parse are not kept.
    pub fn parse(&self, text: &str) -> Result<ExecutableDocument, ParseError> {
        if text.len() > LONGEST_KEPT {
            return parse_query(text);
        }
        // A panic elsewhere cannot leave the map half-updated: it is only
        // read and written whole here.
        let kept = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(text)
            .cloned();
        if let Some(document) = kept {
            return Ok(ExecutableDocument::clone(&document));
        }
        let document = parse_query(text)?;
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(text.to_owned(), Arc::new(document.clone()));
        Ok(document)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_document_is_the_one_parsed() {
        let documents = ParsedDocuments::default();
        let text = "query($u: String!) { verifyUsername(username: $u) { exists } }";
        let first = documents.parse(text).unwrap();
        let again = documents.parse(text).unwrap();
        assert_eq!(format!("{first:?}"), format!("{again:?}"));
        assert_eq!(documents.len(), 1);
    }

    #[test]
    fn failures_and_long_texts_are_not_kept() {
        let documents = ParsedDocuments::default();
        assert!(documents.parse("query {").is_err());
        let long = format!("{{ {} }}", "__typename ".repeat(LONGEST_KEPT / 10));
        assert!(documents.parse(&long).is_ok());
        assert_eq!(documents.len(), 0);
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity() {
        let documents = ParsedDocuments::default();
        for i in 0..CAPACITY.get() + 10 {
            documents.parse(&format!("{{ a{i}: __typename }}")).unwrap();
        }
        assert_eq!(documents.len(), CAPACITY.get());
    }
}
