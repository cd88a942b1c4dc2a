use serde::{Deserialize, Deserializer, de::DeserializeOwned};

use crate::error::{AppError, FieldError};

/// A request field as the client sent it. Unlike `Option<T>`, a value of the
/// wrong JSON type does not abort deserialisation, so one response can list
/// every bad field (the legacy sample sends numbers where strings belong).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Field<T> {
    #[default]
    Absent,
    Present(T),
    WrongType,
}

impl<T> From<Option<T>> for Field<T> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Field::Absent, Field::Present)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        if value.is_null() {
            return Ok(Field::Absent);
        }
        Ok(serde_json::from_value(value).map_or(Field::WrongType, Field::Present))
    }
}

/// Collects field problems so a request reports all of them at once.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// Keeps the value, or records the error and yields `None`.
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    /// Ends validation: `Err` when anything was recorded.
    pub fn finish(self) -> Result<(), AppError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self.0))
        }
    }
}

/// The text of a required string field, trimmed.
pub fn required_text(field: &Field<String>, name: &str) -> Result<String, FieldError> {
    match field {
        Field::Present(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Field::Present(_) | Field::Absent => Err(FieldError::new(
            name,
            "required",
            format!("{name} is required"),
        )),
        Field::WrongType => Err(wrong_type(name, "a string")),
    }
}

/// The text of an optional string field, trimmed; blank counts as absent.
pub fn optional_text(field: &Field<String>, name: &str) -> Result<Option<String>, FieldError> {
    match field {
        Field::Present(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        Field::Present(_) | Field::Absent => Ok(None),
        Field::WrongType => Err(wrong_type(name, "a string")),
    }
}

pub fn required_bool(field: &Field<bool>, name: &str) -> Result<bool, FieldError> {
    match field {
        Field::Present(value) => Ok(*value),
        Field::Absent => Err(FieldError::new(
            name,
            "required",
            format!("{name} is required"),
        )),
        Field::WrongType => Err(wrong_type(name, "true or false")),
    }
}

fn wrong_type(name: &str, expected: &str) -> FieldError {
    FieldError::new(name, "invalid_type", format!("{name} must be {expected}"))
}
