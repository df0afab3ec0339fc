//! Rows read from a Durable Object's SQLite storage by column name, without serde.
//!
//! workers-rs reads typed rows (`SqlCursor::to_array::<T>`) through `serde_wasm_bindgen`, and
//! each row type's derived deserializer, monomorphised for it, is its own code in the bundle
//! (BENCHMARKS.md, section 4). Here a row is the cursor's raw values beside its column names, and
//! each row type reads the columns it needs by name: as `to_array` did, the order of the `SELECT`
//! list does not matter, and a missing column or a value of the wrong type is an error naming the
//! column, never a default.

use worker::{Error, Result, SqlCursor, SqlStorageValue};

/// One row of a query's result.
pub struct Row<'a> {
    names: &'a [String],
    values: Vec<SqlStorageValue>,
}

impl Row<'_> {
    /// The value of column `name`, taken out of the row (each column is read once).
    fn take(&mut self, name: &str) -> Result<SqlStorageValue> {
        let i = self.names.iter().position(|n| n == name).ok_or_else(|| column_error(name, "is not in the result"))?;
        let value = self.values.get_mut(i).ok_or_else(|| column_error(name, "has no value"))?;
        Ok(std::mem::replace(value, SqlStorageValue::Null))
    }

    pub fn text(&mut self, name: &str) -> Result<String> {
        self.opt_text(name)?.ok_or_else(|| column_error(name, "is NULL, not text"))
    }

    pub fn opt_text(&mut self, name: &str) -> Result<Option<String>> {
        match self.take(name)? {
            SqlStorageValue::Null => Ok(None),
            SqlStorageValue::String(s) => Ok(Some(s)),
            other => Err(mismatch(name, "text", &other)),
        }
    }

    pub fn int(&mut self, name: &str) -> Result<i64> {
        self.opt_int(name)?.ok_or_else(|| column_error(name, "is NULL, not an integer"))
    }

    /// An integer (a JavaScript number that is a safe integer: anything else is refused, as
    /// `serde_wasm_bindgen` refused it).
    pub fn opt_int(&mut self, name: &str) -> Result<Option<i64>> {
        match self.take(name)? {
            SqlStorageValue::Null => Ok(None),
            SqlStorageValue::Integer(n) => Ok(Some(n)),
            other => Err(mismatch(name, "an integer", &other)),
        }
    }

    /// A non-negative integer that fits in 32 bits.
    pub fn u32(&mut self, name: &str) -> Result<u32> {
        let n = self.int(name)?;
        u32::try_from(n).map_err(|_| column_error(name, "is out of range"))
    }
}

fn column_error(name: &str, what: &str) -> Error {
    Error::RustError(format!("SQL column `{name}` {what}"))
}

fn mismatch(name: &str, expected: &str, found: &SqlStorageValue) -> Error {
    let found = match found {
        SqlStorageValue::Null => "NULL",
        SqlStorageValue::Boolean(_) => "a boolean",
        SqlStorageValue::Integer(_) => "an integer",
        SqlStorageValue::Float(_) => "a float",
        SqlStorageValue::String(_) => "text",
        SqlStorageValue::Blob(_) => "a blob",
    };
    column_error(name, &format!("is {found}, not {expected}"))
}

/// A type read from one row.
pub trait FromRow: Sized {
    fn from_row(row: &mut Row<'_>) -> Result<Self>;
}

/// Reading a cursor's rows.
pub trait Rows {
    /// Every remaining row, in order.
    fn rows<T: FromRow>(&self) -> Result<Vec<T>>;
}

impl Rows for SqlCursor {
    fn rows<T: FromRow>(&self) -> Result<Vec<T>> {
        let names = self.column_names();
        self.raw().map(|values| T::from_row(&mut Row { names: &names, values: values? })).collect()
    }
}

/// A row whose values are not needed: for whether a query has any.
impl FromRow for () {
    fn from_row(_: &mut Row<'_>) -> Result<Self> {
        Ok(())
    }
}

/// A single-column row of an integer named `n` (`SELECT COUNT(*) AS n`, say).
pub struct Count(pub i64);

impl FromRow for Count {
    fn from_row(row: &mut Row<'_>) -> Result<Self> {
        row.int("n").map(Count)
    }
}
