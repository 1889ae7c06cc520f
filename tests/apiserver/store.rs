//! The in-memory object store: objects, resourceVersions, watch history, field owners.

use super::patch::{self, Path};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// One served resource.
#[derive(Debug)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `/status` subresource: writes to the main resource ignore `.status`.
    pub status: bool,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods`, `statefulsets.apps`: the name used in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const fn rd(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
) -> ResourceDef {
    ResourceDef {
        group,
        version,
        plural,
        kind,
        namespaced,
        status,
    }
}

/// The fixed resource table.
pub const RESOURCES: &[ResourceDef] = &[
    rd("", "v1", "pods", "Pod", true, true),
    rd("", "v1", "services", "Service", true, true),
    rd("", "v1", "nodes", "Node", false, true),
    rd("", "v1", "namespaces", "Namespace", false, true),
    rd("", "v1", "events", "Event", true, false),
    rd("", "v1", "configmaps", "ConfigMap", true, false),
    rd("events.k8s.io", "v1", "events", "Event", true, false),
    rd(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
        false,
    ),
    rd("apps", "v1", "statefulsets", "StatefulSet", true, true),
    rd("coordination.k8s.io", "v1", "leases", "Lease", true, false),
    rd("petdns.io", "v1alpha2", "peersets", "PeerSet", true, true),
    // Served only so that a controller of the v1alpha1 era can be measured against this
    // server (`watch_traffic_on_the_in_process_api_server`); no conversion between the two.
    rd("petdns.io", "v1alpha1", "peersets", "PeerSet", true, true),
    rd(
        "petdns.io",
        "v1alpha2",
        "peerslices",
        "PeerSlice",
        true,
        false,
    ),
    rd(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        true,
    ),
];

pub fn find_resource(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Find by `apiVersion` and either kind (`Pod`) or plural (`pods`).
pub fn find_by_api_version(api_version: &str, kind_or_plural: &str) -> Option<usize> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    RESOURCES.iter().position(|r| {
        r.group == group
            && r.version == version
            && (r.kind == kind_or_plural || r.plural == kind_or_plural)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as kept in the watch history and fanned out to watchers.
#[derive(Debug)]
pub struct Record {
    pub rv: u64,
    pub res: usize,
    pub ns: String,
    pub etype: EventType,
    pub old: Option<Value>,
    pub new: Value,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, def: &ResourceDef, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": def.group, "kind": def.plural}));
        self
    }

    pub fn not_found(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", def.qualified(), name),
        )
        .with_details(def, name)
    }

    pub fn already_exists(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", def.qualified(), name),
        )
        .with_details(def, name)
    }

    pub fn conflict(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                def.qualified(),
                name
            ),
        )
        .with_details(def, name)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn invalid(def: &ResourceDef, name: &str, message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message).with_details(def, name)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// The `meta/v1 Status` body.
    pub fn status_json(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub res: usize,
    pub ns: String,
    pub name: String,
}

/// Simplified managedFields: which manager owns which leaf paths, and what each
/// manager last applied (server-side apply).
#[derive(Debug, Clone, Default)]
pub struct Fields {
    owners: BTreeMap<String, BTreeSet<Path>>,
    applied: BTreeMap<String, BTreeSet<Path>>,
}

#[derive(Debug)]
struct Entry {
    obj: Value,
    fields: Fields,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    Main,
    Status,
}

pub struct Store {
    pub rv: u64,
    /// Watches from a resourceVersion below this get 410 Gone.
    pub compacted: u64,
    objects: BTreeMap<Key, Entry>,
    history: VecDeque<Arc<Record>>,
    watchers: Vec<UnboundedSender<Arc<Record>>>,
    uid_seq: u64,
    salt: u64,
}

pub const HISTORY_LIMIT: usize = 100_000;

pub fn now_rfc3339() -> String {
    let ts = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(ts.as_second())
        .expect("valid timestamp")
        .to_string()
}

fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get("metadata")?.get(field)?.as_str()
}

/// The object without metadata and status: what `metadata.generation` tracks.
fn spec_part(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

fn strip_system_meta(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            m.remove(f);
        }
    }
}

fn has_finalizers(v: &Value) -> bool {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

impl Store {
    pub fn new() -> Self {
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            rv: 1,
            compacted: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            watchers: Vec::new(),
            uid_seq: 0,
            salt,
        }
    }

    // ----- watch plumbing -------------------------------------------------------

    pub fn subscribe(&mut self) -> UnboundedReceiver<Arc<Record>> {
        let (tx, rx) = unbounded_channel();
        self.watchers.push(tx);
        rx
    }

    pub fn drop_watchers(&mut self) {
        self.watchers.clear();
    }

    pub fn open_watchers(&mut self) -> usize {
        self.watchers.retain(|w| !w.is_closed());
        self.watchers.len()
    }

    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    /// History strictly after `rv`, or 410 if it has been compacted away.
    pub fn history_since(&self, rv: u64) -> ApiResult<Vec<Arc<Record>>> {
        if rv < self.compacted {
            return Err(ApiError::gone(format!(
                "too old resource version: {} ({})",
                rv, self.compacted
            )));
        }
        Ok(self.history.iter().filter(|r| r.rv > rv).cloned().collect())
    }

    fn publish(&mut self, rec: Record) {
        let rec = Arc::new(rec);
        self.watchers.retain(|w| w.send(rec.clone()).is_ok());
        self.history.push_back(rec);
        while self.history.len() > HISTORY_LIMIT {
            if let Some(r) = self.history.pop_front() {
                self.compacted = r.rv;
            }
        }
    }

    fn next_uid(&mut self) -> String {
        self.uid_seq += 1;
        let s = self.salt;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (s >> 32) as u32,
            (s >> 16) as u16,
            (s & 0xfff) as u16,
            (self.uid_seq >> 48) & 0xfff,
            self.uid_seq & 0xffff_ffff_ffff
        )
    }

    // ----- reads ----------------------------------------------------------------

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key).map(|e| &e.obj)
    }

    /// All objects of a resource, optionally in one namespace, sorted by (namespace, name).
    pub fn list(&self, res: usize, ns: Option<&str>) -> Vec<Value> {
        let start = Key {
            res,
            ns: ns.unwrap_or("").to_string(),
            name: String::new(),
        };
        self.objects
            .range(start..)
            .take_while(|(k, _)| k.res == res && ns.is_none_or(|n| k.ns == n))
            .map(|(_, e)| e.obj.clone())
            .collect()
    }

    // ----- the single write path ------------------------------------------------

    /// Store `new` under `key`, filling in system metadata, bumping resourceVersion and
    /// generation, and emitting a watch event. A no-op write returns the old object
    /// unchanged (no new resourceVersion, no event), as the real apiserver does.
    fn commit(&mut self, key: &Key, mut new: Value, mut fields: Fields) -> Value {
        let def = &RESOURCES[key.res];
        let old = self.objects.get(key).map(|e| e.obj.clone());
        if !new.is_object() {
            new = json!({});
        }
        new["apiVersion"] = json!(def.api_version());
        new["kind"] = json!(def.kind);
        if !new.get("metadata").is_some_and(Value::is_object) {
            new["metadata"] = json!({});
        }
        new["metadata"]["name"] = json!(key.name);
        if def.namespaced {
            new["metadata"]["namespace"] = json!(key.ns);
        } else if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let meta = new["metadata"].as_object_mut().expect("metadata object");
        match &old {
            None => {
                if !meta.get("uid").is_some_and(Value::is_string) {
                    meta.insert("uid".into(), json!(self.next_uid()));
                }
                if !meta.contains_key("creationTimestamp") {
                    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
                }
                meta.insert("generation".into(), json!(1));
            }
            Some(o) => {
                for f in ["uid", "creationTimestamp", "deletionTimestamp"] {
                    match o["metadata"].get(f) {
                        Some(v) => {
                            meta.insert(f.into(), v.clone());
                        }
                        None if f == "deletionTimestamp" => {}
                        None => {
                            meta.remove(f);
                        }
                    }
                }
                let generation = o["metadata"]["generation"].as_i64().unwrap_or(1);
                let generation = if spec_part(o) != spec_part(&new) {
                    generation + 1
                } else {
                    generation
                };
                new["metadata"]["generation"] = json!(generation);
                new["metadata"]["resourceVersion"] = o["metadata"]["resourceVersion"].clone();
                if &new == o {
                    if let Some(e) = self.objects.get_mut(key) {
                        e.fields = fields;
                        prune_fields(&mut e.fields, &e.obj);
                    }
                    return new;
                }
            }
        }
        self.rv += 1;
        let rv = self.rv;
        new["metadata"]["resourceVersion"] = json!(rv.to_string());

        // finalizers all gone on an object being deleted: it goes away now
        if new.pointer("/metadata/deletionTimestamp").is_some() && !has_finalizers(&new) {
            self.objects.remove(key);
            let uid = meta_str(&new, "uid").unwrap_or_default().to_string();
            self.publish(Record {
                rv,
                res: key.res,
                ns: key.ns.clone(),
                etype: EventType::Deleted,
                old,
                new: new.clone(),
            });
            self.collect_garbage(&uid);
            return new;
        }

        prune_fields(&mut fields, &new);
        let etype = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.objects.insert(
            key.clone(),
            Entry {
                obj: new.clone(),
                fields,
            },
        );
        self.publish(Record {
            rv,
            res: key.res,
            ns: key.ns.clone(),
            etype,
            old,
            new: new.clone(),
        });
        new
    }

    /// Delete now, or mark for deletion if finalizers are present.
    fn delete_key(&mut self, key: &Key) -> Option<Value> {
        let entry = self.objects.get(key)?;
        let obj = entry.obj.clone();
        if has_finalizers(&obj) {
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                return Some(obj);
            }
            let mut new = obj.clone();
            new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let fields = entry.fields.clone();
            // commit keeps the old deletionTimestamp (none), so set it after the fact
            self.rv += 1;
            let rv = self.rv;
            new["metadata"]["resourceVersion"] = json!(rv.to_string());
            self.objects.insert(
                key.clone(),
                Entry {
                    obj: new.clone(),
                    fields,
                },
            );
            self.publish(Record {
                rv,
                res: key.res,
                ns: key.ns.clone(),
                etype: EventType::Modified,
                old: Some(obj),
                new: new.clone(),
            });
            return Some(new);
        }
        self.objects.remove(key);
        self.rv += 1;
        let rv = self.rv;
        let mut gone = obj.clone();
        gone["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.publish(Record {
            rv,
            res: key.res,
            ns: key.ns.clone(),
            etype: EventType::Deleted,
            old: Some(obj),
            new: gone.clone(),
        });
        let uid = meta_str(&gone, "uid").unwrap_or_default().to_string();
        self.collect_garbage(&uid);
        Some(gone)
    }

    /// Background-propagation garbage collection, done synchronously: delete every
    /// object that lists `uid` as an owner and whose owners are now all gone.
    fn collect_garbage(&mut self, uid: &str) {
        if uid.is_empty() {
            return;
        }
        let live: HashSet<String> = self
            .objects
            .values()
            .filter_map(|e| meta_str(&e.obj, "uid").map(str::to_string))
            .collect();
        let doomed: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, e)| {
                let refs = e
                    .obj
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array);
                refs.is_some_and(|refs| {
                    let uids: Vec<&str> =
                        refs.iter().filter_map(|r| r.get("uid")?.as_str()).collect();
                    uids.contains(&uid) && uids.iter().all(|u| !live.contains(*u))
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.delete_key(&k);
        }
    }

    // ----- API operations -------------------------------------------------------

    fn check_type(def: &ResourceDef, body: &Value, required: bool) -> ApiResult<()> {
        let kind = body.get("kind").and_then(Value::as_str);
        let av = body.get("apiVersion").and_then(Value::as_str);
        if required && (kind.is_none() || av.is_none()) {
            return Err(ApiError::bad_request("apiVersion and kind must be set"));
        }
        if kind.is_some_and(|k| k != def.kind) || av.is_some_and(|a| a != def.api_version()) {
            return Err(ApiError::bad_request(format!(
                "the body of the request was in an unknown format: expected {}/{}, got {}/{}",
                def.api_version(),
                def.kind,
                av.unwrap_or(""),
                kind.unwrap_or("")
            )));
        }
        Ok(())
    }

    fn check_name_ns(def: &ResourceDef, key: &Key, body: &Value) -> ApiResult<()> {
        if let Some(n) = meta_str(body, "name")
            && n != key.name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                key.name
            )));
        }
        if def.namespaced
            && let Some(n) = meta_str(body, "namespace")
            && !n.is_empty()
            && n != key.ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        Ok(())
    }

    pub fn api_create(
        &mut self,
        res: usize,
        ns: &str,
        mut body: Value,
        manager: &str,
    ) -> ApiResult<Value> {
        let def = &RESOURCES[res];
        if !body.is_object() {
            return Err(ApiError::bad_request("request body must be a JSON object"));
        }
        Self::check_type(def, &body, false)?;
        let name = match meta_str(&body, "name") {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match meta_str(&body, "generateName") {
                Some(g) if !g.is_empty() => {
                    self.uid_seq += 1;
                    format!(
                        "{g}{:05x}",
                        (self.salt ^ self.uid_seq.wrapping_mul(2654435761)) & 0xfffff
                    )
                }
                _ => {
                    return Err(ApiError::invalid(
                        def,
                        "",
                        "name or generateName is required",
                    ));
                }
            },
        };
        let key = Key {
            res,
            ns: ns.to_string(),
            name,
        };
        Self::check_name_ns(def, &key, &body)?;
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(def, &key.name));
        }
        strip_system_meta(&mut body);
        if def.status
            && let Some(m) = body.as_object_mut()
        {
            m.remove("status");
        }
        let mut fields = Fields::default();
        fields.owners.insert(
            manager.to_string(),
            patch::leaves(&body).into_keys().collect(),
        );
        Ok(self.commit(&key, body, fields))
    }

    /// Build the object to store from a full desired object for a PUT or non-apply PATCH.
    fn merge_for_sub(def: &ResourceDef, old: &Value, mut desired: Value, sub: Sub) -> Value {
        match sub {
            Sub::Status => {
                let mut new = old.clone();
                match desired.get("status") {
                    Some(s) if !s.is_null() => new["status"] = s.clone(),
                    _ => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                new
            }
            Sub::Main => {
                if def.status {
                    match old.get("status") {
                        Some(s) => desired["status"] = s.clone(),
                        None => {
                            if let Some(m) = desired.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                desired
            }
        }
    }

    /// Record an update (non-apply) by `manager`: it takes over every changed field.
    fn track_update(fields: &mut Fields, old: &Value, new: &Value, manager: &str) {
        let before = patch::leaves(old);
        let after = patch::leaves(new);
        let changed: Vec<Path> = after
            .iter()
            .filter(|(p, v)| before.get(*p) != Some(*v))
            .map(|(p, _)| p.clone())
            .collect();
        for (m, set) in fields.owners.iter_mut() {
            if m != manager {
                set.retain(|p| !changed.iter().any(|c| patch::overlaps(c, p)));
            }
        }
        fields
            .owners
            .entry(manager.to_string())
            .or_default()
            .extend(changed);
    }

    fn existing(&self, key: &Key) -> ApiResult<(Value, Fields)> {
        let def = &RESOURCES[key.res];
        self.objects
            .get(key)
            .map(|e| (e.obj.clone(), e.fields.clone()))
            .ok_or_else(|| ApiError::not_found(def, &key.name))
    }

    pub fn api_replace(
        &mut self,
        key: &Key,
        sub: Sub,
        body: Value,
        manager: &str,
    ) -> ApiResult<Value> {
        let def = &RESOURCES[key.res];
        if !body.is_object() {
            return Err(ApiError::bad_request("request body must be a JSON object"));
        }
        Self::check_type(def, &body, false)?;
        Self::check_name_ns(def, key, &body)?;
        let (old, mut fields) = self.existing(key)?;
        if let Some(rv) = meta_str(&body, "resourceVersion")
            && !rv.is_empty()
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(def, &key.name));
        }
        let mut body = body;
        strip_system_meta(&mut body);
        let new = Self::merge_for_sub(def, &old, body, sub);
        Self::track_update(&mut fields, &old, &new, manager);
        Ok(self.commit(key, new, fields))
    }

    /// Merge patch, strategic merge patch (treated as merge patch) or JSON patch.
    pub fn api_patch(
        &mut self,
        key: &Key,
        sub: Sub,
        content_type: &str,
        body: &Value,
        manager: &str,
    ) -> ApiResult<Value> {
        let def = &RESOURCES[key.res];
        let (old, mut fields) = self.existing(key)?;
        let mut patched = old.clone();
        match content_type {
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                patch::merge_patch(&mut patched, body)
            }
            "application/json-patch+json" => patch::json_patch(&mut patched, body)
                .map_err(|e| ApiError::new(422, "Invalid", e))?,
            other => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other})"
                    ),
                ));
            }
        }
        // a resourceVersion inside the patch is a precondition
        if meta_str(&patched, "resourceVersion") != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(def, &key.name));
        }
        Self::check_name_ns(def, key, &patched)?;
        // system metadata cannot be patched
        let mut desired = patched;
        strip_system_meta(&mut desired);
        let new = Self::merge_for_sub(def, &old, desired, sub);
        Self::track_update(&mut fields, &old, &new, manager);
        Ok(self.commit(key, new, fields))
    }

    /// Server-side apply. Returns the object and whether it was created.
    pub fn api_apply(
        &mut self,
        key: &Key,
        sub: Sub,
        cfg: Value,
        manager: &str,
        force: bool,
    ) -> ApiResult<(Value, bool)> {
        let def = &RESOURCES[key.res];
        if !cfg.is_object() {
            return Err(ApiError::bad_request(
                "apply configuration must be an object",
            ));
        }
        Self::check_type(def, &cfg, true)?;
        Self::check_name_ns(def, key, &cfg)?;
        // the part of the configuration that this endpoint may change
        let mut cfg = cfg;
        strip_system_meta(&mut cfg);
        let cfg = match sub {
            Sub::Status => json!({"status": cfg.get("status").cloned().unwrap_or(Value::Null)}),
            Sub::Main => {
                if def.status
                    && let Some(m) = cfg.as_object_mut()
                {
                    m.remove("status");
                }
                cfg
            }
        };
        let applied = patch::leaves(&cfg);
        // what this manager applied is tracked per subresource
        let akey = match sub {
            Sub::Main => manager.to_string(),
            Sub::Status => format!("{manager}\u{0}status"),
        };
        let Some(entry) = self.objects.get(key) else {
            if sub == Sub::Status {
                return Err(ApiError::not_found(def, &key.name));
            }
            let mut fields = Fields::default();
            let paths: BTreeSet<Path> = applied.keys().cloned().collect();
            fields.owners.insert(manager.to_string(), paths.clone());
            fields.applied.insert(akey, paths);
            return Ok((self.commit(key, cfg, fields), true));
        };
        let old = entry.obj.clone();
        let mut fields = entry.fields.clone();

        // conflicts: a field we would change that another manager owns
        let mut conflicts: Vec<(String, Path)> = Vec::new();
        for (p, v) in &applied {
            if patch::get_path(&old, p) == Some(v) {
                continue;
            }
            for (m, set) in &fields.owners {
                if m != manager && set.iter().any(|q| patch::overlaps(p, q)) {
                    conflicts.push((m.clone(), p.clone()));
                }
            }
        }
        if !conflicts.is_empty() {
            if !force {
                let lines: Vec<String> = conflicts
                    .iter()
                    .map(|(m, p)| format!("conflict with \"{m}\": {}", patch::dotted(p)))
                    .collect();
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|(m, p)| {
                        json!({"type": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": patch::dotted(p)})
                    })
                    .collect();
                let mut err = ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Apply failed with {} conflict{}: {}",
                        conflicts.len(),
                        if conflicts.len() == 1 { "" } else { "s" },
                        lines.join(",")
                    ),
                );
                err.details = Some(
                    json!({"name": key.name, "group": def.group, "kind": def.plural, "causes": causes}),
                );
                return Err(err);
            }
            for (m, p) in &conflicts {
                if let Some(set) = fields.owners.get_mut(m) {
                    set.retain(|q| !patch::overlaps(p, q));
                }
            }
        }

        let mut new = old.clone();
        // fields this manager applied before but no longer applies
        let previously = fields.applied.get(&akey).cloned().unwrap_or_default();
        for p in previously.iter().filter(|p| !applied.contains_key(*p)) {
            let owned_elsewhere = fields
                .owners
                .iter()
                .any(|(m, set)| m != manager && set.iter().any(|q| patch::overlaps(p, q)));
            if let Some(set) = fields.owners.get_mut(manager) {
                set.remove(p);
            }
            if !owned_elsewhere {
                patch::remove_path(&mut new, p);
            }
        }
        for (p, v) in &applied {
            patch::set_path(&mut new, p, v.clone());
        }
        let paths: BTreeSet<Path> = applied.keys().cloned().collect();
        fields
            .owners
            .entry(manager.to_string())
            .or_default()
            .extend(paths.iter().cloned());
        fields.applied.insert(akey, paths);
        Ok((self.commit(key, new, fields), false))
    }

    pub fn api_delete(&mut self, key: &Key, opts: Option<&Value>) -> ApiResult<Value> {
        let def = &RESOURCES[key.res];
        let (old, _) = self.existing(key)?;
        if let Some(pre) = opts.and_then(|o| o.get("preconditions")) {
            for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
                if let Some(want) = pre.get(field).and_then(Value::as_str)
                    && Some(want) != meta_str(&old, field)
                {
                    let mut e = ApiError::conflict(def, &key.name);
                    e.message = format!(
                        "Precondition failed: {label} in precondition: {want}, {label} in object meta: {}",
                        meta_str(&old, field).unwrap_or("")
                    );
                    return Err(e);
                }
            }
        }
        Ok(self.delete_key(key).expect("exists"))
    }

    // ----- test hooks -----------------------------------------------------------

    /// Create or overwrite an object verbatim (status included), emitting a watch event.
    pub fn hook_upsert(&mut self, res: usize, obj: Value) -> Value {
        let def = &RESOURCES[res];
        let name = meta_str(&obj, "name")
            .expect("object needs metadata.name")
            .to_string();
        let ns = if def.namespaced {
            meta_str(&obj, "namespace").unwrap_or("default").to_string()
        } else {
            String::new()
        };
        let key = Key { res, ns, name };
        let (old, mut fields) = match self.objects.get(&key) {
            Some(e) => (e.obj.clone(), e.fields.clone()),
            None => (json!({}), Fields::default()),
        };
        Self::track_update(&mut fields, &old, &obj, "test-harness");
        self.commit(&key, obj, fields)
    }

    pub fn hook_delete(&mut self, key: &Key) -> Option<Value> {
        self.delete_key(key)
    }
}

fn prune_fields(fields: &mut Fields, obj: &Value) {
    for set in fields
        .owners
        .values_mut()
        .chain(fields.applied.values_mut())
    {
        set.retain(|p| patch::get_path(obj, p).is_some());
    }
    fields.owners.retain(|_, s| !s.is_empty());
}
