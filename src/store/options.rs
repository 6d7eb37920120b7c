//! Reading a connector's `options` mapping as the reference's plugins read it: text may be
//! given as a number, numbers as text; anything else is an error naming the key.

use serde_yaml::Value;

pub struct Options<'v> {
    value: Option<&'v Value>,
    /// `cache.options` or `storage.options`, for errors.
    place: &'static str,
}

impl<'v> Options<'v> {
    pub fn new(value: Option<&'v Value>, place: &'static str) -> Options<'v> {
        Options { value, place }
    }

    pub fn get(&self, key: &str) -> Option<&'v Value> {
        self.value.and_then(|v| v.get(key)).filter(|v| !v.is_null())
    }

    pub fn text(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(format!("{}.{key} must be text", self.place)),
        }
    }

    pub fn number(&self, key: &str) -> Result<Option<u64>, String> {
        let bad = || format!("{}.{key} must be a whole number", self.place);
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) => s.parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    pub fn flag(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(format!("{}.{key} must be true or false", self.place)),
        }
    }
}
