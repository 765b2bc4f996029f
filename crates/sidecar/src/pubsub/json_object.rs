//! Writing a JSON object field by field, with parts that are JSON text
//! already (an event's data, a CloudEvent as the broker holds it) copied
//! in as they are instead of parsed into a tree and written out again.
//! The publish path ([`super::ops::cloud_event`]) and bulk delivery
//! ([`super::bulk_delivery`]) write every event this way.

/// A JSON object being written.
pub(crate) struct JsonObject {
    text: Vec<u8>,
    fields: usize,
}

impl JsonObject {
    /// An empty object, with room for about `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> JsonObject {
        let mut text = Vec::with_capacity(capacity);
        text.push(b'{');
        JsonObject { text, fields: 0 }
    }

    fn name(&mut self, name: &str) {
        if self.fields > 0 {
            self.text.push(b',');
        }
        self.fields += 1;
        write_string(&mut self.text, name);
        self.text.push(b':');
    }

    /// Adds `name` with a string value, escaped.
    pub(crate) fn string(&mut self, name: &str, value: &str) -> &mut JsonObject {
        self.name(name);
        write_string(&mut self.text, value);
        self
    }

    /// Adds `name` with `json`, which must be one JSON value already.
    pub(crate) fn raw(&mut self, name: &str, json: &[u8]) -> &mut JsonObject {
        self.name(name);
        self.text.extend_from_slice(json);
        self
    }

    /// Adds `name` with an object that `write` fills in.
    pub(crate) fn object(
        &mut self,
        name: &str,
        write: impl FnOnce(&mut JsonObject),
    ) -> &mut JsonObject {
        self.name(name);
        self.nested(write);
        self
    }

    /// Adds `name` with an array of one object per item, each filled in by
    /// `write`, in place.
    pub(crate) fn objects<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        mut write: impl FnMut(&mut JsonObject, T),
    ) -> &mut JsonObject {
        self.name(name);
        self.text.push(b'[');
        for (n, item) in items.into_iter().enumerate() {
            if n > 0 {
                self.text.push(b',');
            }
            self.nested(|object| write(object, item));
        }
        self.text.push(b']');
        self
    }

    /// Writes an object filled in by `write` at the end of this one's text.
    fn nested(&mut self, write: impl FnOnce(&mut JsonObject)) {
        let mut inner = JsonObject {
            text: std::mem::take(&mut self.text),
            fields: 0,
        };
        inner.text.push(b'{');
        write(&mut inner);
        inner.text.push(b'}');
        self.text = inner.text;
    }

    /// The object's text.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.text.push(b'}');
        self.text
    }
}

/// Writes `text` as a JSON string.
fn write_string(out: &mut Vec<u8>, text: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json_with_escapes_and_raw_parts() {
        let mut object = JsonObject::with_capacity(64);
        object
            .string("id", "a\"b\\c\n")
            .raw("data", br#"{"n": [1, 2]}"#)
            .objects("list", [1, 2], |item, n| {
                item.raw("n", n.to_string().as_bytes());
            })
            .objects("none", [0; 0], |_, _: i32| {})
            .object("inner", |inner| {
                inner.string("k", "v");
            });
        let text = object.finish();
        let value: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"id": "a\"b\\c\n", "data": {"n": [1, 2]},
                "list": [{"n": 1}, {"n": 2}], "none": [], "inner": {"k": "v"}})
        );
        assert_eq!(JsonObject::with_capacity(0).finish(), b"{}");
    }
}
