//! Account groups this instance has found in the database, so that a
//! register does not look its group up every time.
//!
//! Only groups found are kept: nothing in the service removes a group
//! (`service::account_groups` only adds them), and a registration's foreign
//! key keeps a group in use, so one found stays valid. A group not found
//! is looked up on every request, so one added by another instance or the
//! CLI is accepted at once. Should a group vanish anyway (deleted by hand
//! in the database before any registration used it), the registration's
//! foreign key refuses the write, and the group is forgotten here
//! (`account_groups::refused_by_foreign_key`). The set holds only names
//! that exist in the database, so it grows no larger than that table.
use std::{
    collections::HashSet,
    sync::{PoisonError, RwLock},
};

#[derive(Debug, Default)]
pub struct KnownAccountGroups(RwLock<HashSet<String>>);

impl KnownAccountGroups {
    pub fn contains(&self, id: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    }

    pub fn remember(&self, id: &str) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned());
    }

    pub fn forget(&self, id: &str) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_forgotten() {
        let known = KnownAccountGroups::default();
        assert!(!known.contains("01"));
        known.remember("01");
        assert!(known.contains("01"));
        assert!(!known.contains("02"));
        known.forget("01");
        assert!(!known.contains("01"));
    }
}
