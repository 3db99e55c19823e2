//! JSON Schemas of every kind (schemars, draft 2020-12), for editor completion
//! and validation through `# yaml-language-server: $schema=…` lines.

use serde_json::{Value, json};

use crate::spec::Kind;

/// `(file name, schema)` for every kind, plus `all.json` accepting any kind.
pub fn schemas() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for &kind in Kind::ALL {
        let schema = crate::kinds::schema(kind);
        let mut v = schema.to_value();
        if let Some(props) = v.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(
                "kind".into(),
                json!({ "const": kind.as_str(), "description": "The kind of this document." }),
            );
        }
        if let Some(obj) = v.as_object_mut() {
            obj.insert("title".into(), json!(kind.as_str()));
        }
        out.push((format!("{}.json", kind.as_str().to_lowercase()), v));
    }
    let all = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "reconcile spec",
        "description": "Any reconcile document; dispatches on `kind`.",
        "oneOf": Kind::ALL.iter().map(|k| json!({ "$ref": format!("{}.json", k.as_str().to_lowercase()) })).collect::<Vec<_>>(),
    });
    out.push(("all.json".into(), all));
    out
}

/// Pretty JSON with a trailing newline, as committed.
pub fn render(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}
