//! JSON as ZooKeeper's AdminServer writes it: Jackson's default pretty printer.
//!
//! Objects put each key on its own line, indented two spaces per level of object nesting
//! (arrays do not count: an object in an array is indented as its array's key is), with ` : `
//! between key and value; arrays stay on one line
//! (`[ 1, 2 ]`, `[ {` … `} ]`); empty ones are `{ }` and `[ ]`; no newline at the end.
//! Keys keep the order they were inserted in (serde_json's `preserve_order`).

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

/// Jackson's `DefaultPrettyPrinter`.
#[derive(Debug, Default)]
struct JacksonFormatter {
    depth: usize,
    /// Whether the innermost open container has a value yet.
    has_value: Vec<bool>,
}

impl JacksonFormatter {
    fn newline<W: ?Sized + io::Write>(&self, w: &mut W) -> io::Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..self.depth {
            w.write_all(b"  ")?;
        }
        Ok(())
    }
}

impl Formatter for JacksonFormatter {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.has_value.push(false);
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.has_value.pop();
        w.write_all(b" ]")
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if let Some(v) = self.has_value.last_mut() {
            *v = true;
        }
        w.write_all(if first { b" " } else { b", " })
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        Ok(())
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        self.has_value.push(false);
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth -= 1;
        if self.has_value.pop().unwrap_or(false) {
            self.newline(w)?;
            w.write_all(b"}")
        } else {
            w.write_all(b" }")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if let Some(v) = self.has_value.last_mut() {
            *v = true;
        }
        if !first {
            w.write_all(b",")?;
        }
        self.newline(w)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b" : ")
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        Ok(())
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        // Jackson writes Java's Double.toString: whole numbers keep ".0".
        w.write_all(super::javafmt::double_to_string(value).as_bytes())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        CompactFormatter.write_char_escape(w, escape)
    }
}

/// `value` as Jackson's pretty printer writes it.
pub fn to_jackson_string<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, JacksonFormatter::default());
    if value.serialize(&mut ser).is_err() {
        // ZooKeeper's JsonOutputter body when serialisation fails.
        return "{\"error\": \"Exception writing command response to JSON\"}".to_string();
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_jacksons_layout() {
        let v = json!({
            "connections": [ { "a": 1, "b": "x" }, { "a": 2 } ],
            "secure_connections": [],
            "nested": { "inner": { }, "list": [1, 2], "d": 1.5, "z": 0.0 },
            "command": "x",
            "error": null
        });
        let expect = "{\n  \"connections\" : [ {\n    \"a\" : 1,\n    \"b\" : \"x\"\n  }, {\n    \"a\" : 2\n  } ],\n  \"secure_connections\" : [ ],\n  \"nested\" : {\n    \"inner\" : { },\n    \"list\" : [ 1, 2 ],\n    \"d\" : 1.5,\n    \"z\" : 0.0\n  },\n  \"command\" : \"x\",\n  \"error\" : null\n}";
        assert_eq!(to_jackson_string(&v), expect);
    }

    #[test]
    fn keeps_insertion_order_and_escapes() {
        let mut m = serde_json::Map::new();
        m.insert("zeta".into(), json!("a\"b\n"));
        m.insert("alpha".into(), json!(-1));
        assert_eq!(to_jackson_string(&m), "{\n  \"zeta\" : \"a\\\"b\\n\",\n  \"alpha\" : -1\n}");
    }
}
