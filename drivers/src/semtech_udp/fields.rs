//! Typed, range-checked access to the fields of one JSON object of a datagram (an rxpk
//! entry or one of its `rsig` signals), producing errors that name the entry and field.

use serde_json_borrow::{ObjectAsVec, Value};

use super::error::GwmpError;

/// The fields of one JSON object at rxpk index `index`; `prefix` names a nested object
/// (`"rsig[1]."`) in error messages.
pub(crate) struct Fields<'a> {
    obj: &'a ObjectAsVec<'a>,
    index: usize,
    prefix: String,
}

impl<'a> Fields<'a> {
    /// Wrap a JSON value that must be an object.
    pub(crate) fn new(
        value: &'a Value<'a>,
        index: usize,
        prefix: String,
    ) -> Result<Self, GwmpError> {
        match value.as_object() {
            Some(obj) => Ok(Fields { obj, index, prefix }),
            None => Err(GwmpError::BadField {
                index,
                field: prefix.trim_end_matches('.').to_string(),
                reason: "expected a JSON object".into(),
            }),
        }
    }

    /// The rxpk index.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    /// A field, `None` when absent or `null`.
    pub(crate) fn get(&self, field: &str) -> Option<&'a Value<'a>> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    /// Error: the field has the wrong shape.
    pub(crate) fn bad(&self, field: &str, reason: impl Into<String>) -> GwmpError {
        GwmpError::BadField {
            index: self.index,
            field: self.name(field),
            reason: reason.into(),
        }
    }

    /// Error: the field's value is absurd.
    pub(crate) fn out_of_range(&self, field: &str, value: impl ToString) -> GwmpError {
        GwmpError::OutOfRange {
            index: self.index,
            field: self.name(field),
            value: value.to_string(),
        }
    }

    /// Error: the field is required.
    pub(crate) fn missing(&self, field: &str) -> GwmpError {
        GwmpError::MissingField {
            index: self.index,
            field: self.name(field),
        }
    }

    /// Make an optional field required.
    pub(crate) fn req<T>(&self, field: &str, v: Option<T>) -> Result<T, GwmpError> {
        v.ok_or_else(|| self.missing(field))
    }

    /// A number.
    pub(crate) fn f64(&self, field: &str) -> Result<Option<f64>, GwmpError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(field, format!("expected a number, got {v}"))),
        }
    }

    /// An integral number (an integral float such as `-35.0` is accepted).
    pub(crate) fn i64(&self, field: &str) -> Result<Option<i64>, GwmpError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => {
                if let Some(i) = v.as_i64() {
                    return Ok(Some(i));
                }
                match v.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                    _ => Err(self.bad(field, format!("expected an integer, got {v}"))),
                }
            }
        }
    }

    /// An integer within `lo..=hi`.
    pub(crate) fn int_in(&self, field: &str, lo: i64, hi: i64) -> Result<Option<i64>, GwmpError> {
        match self.i64(field)? {
            Some(i) if i < lo || i > hi => Err(self.out_of_range(field, i)),
            other => Ok(other),
        }
    }

    /// An unsigned 32-bit integer.
    pub(crate) fn u32(&self, field: &str) -> Result<Option<u32>, GwmpError> {
        Ok(self
            .int_in(field, 0, i64::from(u32::MAX))?
            .map(|i| i as u32))
    }

    /// A string.
    pub(crate) fn str(&self, field: &str) -> Result<Option<&'a str>, GwmpError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.bad(field, format!("expected a string, got {v}"))),
        }
    }
}
