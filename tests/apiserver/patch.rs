//! JSON helpers: merge patch (RFC 7386), JSON patch (RFC 6902), and field paths
//! used for the simplified server-side-apply field ownership.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A field path: object keys from the root. Lists are never descended into.
pub type Path = Vec<String>;

/// RFC 7386 JSON merge patch. Also used for strategic merge patch (see limits).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if k.starts_with('$') {
            // strategic-merge-patch directives ($patch, $retainKeys, ...) are ignored
            continue;
        }
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(ptr: &str) -> Result<Vec<String>, String> {
    if ptr.is_empty() {
        return Ok(Vec::new());
    }
    let rest = ptr
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {ptr:?}"))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn parent_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("path element {t:?} not found"))?,
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| format!("bad array index {t:?}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("array index {i} out of range"))?
            }
            _ => return Err(format!("cannot descend into scalar at {t:?}")),
        };
    }
    Ok(cur)
}

fn ptr_get(doc: &Value, ptr: &str) -> Result<Value, String> {
    doc.pointer(ptr)
        .cloned()
        .ok_or_else(|| format!("path {ptr:?} not found"))
}

fn ptr_remove(doc: &mut Value, ptr: &str) -> Result<Value, String> {
    let toks = split_pointer(ptr)?;
    let (last, parents) = toks.split_last().ok_or("cannot remove the root")?;
    match parent_mut(doc, parents)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("path {ptr:?} not found")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("bad array index {last:?}"))?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(format!("array index {i} out of range"))
            }
        }
        _ => Err(format!("path {ptr:?} not found")),
    }
}

fn ptr_add(doc: &mut Value, ptr: &str, v: Value, replace: bool) -> Result<(), String> {
    let toks = split_pointer(ptr)?;
    let Some((last, parents)) = toks.split_last() else {
        *doc = v;
        return Ok(());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => {
            if replace && !m.contains_key(last) {
                return Err(format!("path {ptr:?} not found"));
            }
            m.insert(last.clone(), v);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" && !replace {
                a.push(v);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("bad array index {last:?}"))?;
            if replace {
                *a.get_mut(i)
                    .ok_or_else(|| format!("array index {i} out of range"))? = v;
            } else if i <= a.len() {
                a.insert(i, v);
            } else {
                return Err(format!("array index {i} out of range"));
            }
            Ok(())
        }
        _ => Err(format!("cannot add at {ptr:?}")),
    }
}

/// RFC 6902 JSON patch: add, remove, replace, move, copy, test.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("JSON patch must be an array")?;
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).ok_or("op missing")?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("path missing")?;
        let value = || op.get("value").cloned().ok_or("value missing".to_string());
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or("from missing".to_string())
        };
        match kind {
            "add" => ptr_add(doc, path, value()?, false)?,
            "replace" => ptr_add(doc, path, value()?, true)?,
            "remove" => {
                ptr_remove(doc, path)?;
            }
            "move" => {
                let v = ptr_remove(doc, from()?)?;
                ptr_add(doc, path, v, false)?;
            }
            "copy" => {
                let v = ptr_get(doc, from()?)?;
                ptr_add(doc, path, v, false)?;
            }
            "test" => {
                // like the real apiserver, a missing path tests equal to null
                if doc.pointer(path).cloned().unwrap_or(Value::Null) != value()? {
                    return Err(format!("test operation failed at {path:?}"));
                }
            }
            other => return Err(format!("unknown JSON patch op {other:?}")),
        }
    }
    Ok(())
}

/// Fields that are never "owned" by a field manager.
fn is_system_path(p: &[String]) -> bool {
    match p {
        [a, ..] if a == "apiVersion" || a == "kind" => true,
        [m, f, ..] if m == "metadata" => matches!(
            f.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "managedFields"
                | "selfLink"
                | "generateName"
        ),
        _ => false,
    }
}

/// Flatten an object into leaf paths: scalars and lists (atomic) are leaves; empty
/// objects and nulls yield nothing; system metadata is skipped.
pub fn leaves(v: &Value) -> BTreeMap<Path, Value> {
    fn walk(v: &Value, prefix: &mut Path, out: &mut BTreeMap<Path, Value>) {
        match v {
            Value::Null => {}
            Value::Object(m) => {
                for (k, child) in m {
                    prefix.push(k.clone());
                    if !is_system_path(prefix) {
                        walk(child, prefix, out);
                    }
                    prefix.pop();
                }
            }
            other => {
                out.insert(prefix.clone(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

pub fn get_path<'a>(v: &'a Value, p: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in p {
        cur = cur.as_object()?.get(seg)?;
    }
    if cur.is_null() { None } else { Some(cur) }
}

pub fn set_path(v: &mut Value, p: &[String], val: Value) {
    let Some((last, parents)) = p.split_last() else {
        *v = val;
        return;
    };
    let mut cur = v;
    for seg in parents {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("object")
            .entry(seg.clone())
            .or_insert(Value::Null);
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    cur.as_object_mut()
        .expect("object")
        .insert(last.clone(), val);
}

pub fn remove_path(v: &mut Value, p: &[String]) {
    let Some((last, parents)) = p.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        match cur.as_object_mut().and_then(|m| m.get_mut(seg)) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// True when `a` equals `b` or one is a prefix of the other.
pub fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// Render a path as `.spec.foo` for conflict messages.
pub fn dotted(p: &[String]) -> String {
    p.iter().map(|s| format!(".{s}")).collect()
}
