//! Reading Kubernetes manifests: multi-document YAML (or JSON) files and directories.
//!
//! Every document is parsed on its own so that an error names its file and line and every
//! bad document is reported, not only the first. Kinds other than Namespace, Service,
//! StatefulSet, Pod and Node are skipped; `kind: List` (what `kubectl get -o yaml` prints) is
//! unpacked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Namespace, Node, Pod, PodCondition, PodIP, PodSpec, PodStatus, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tracing::debug;

/// Namespaces every cluster has.
pub const BUILTIN_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The most replicas a StatefulSet in a manifest may declare (the bound cluster mode applies,
/// [`crate::identity::MAX_DECLARED`]). Every declared ordinal becomes an identity (and,
/// materialised, a Pod and an address lease) whether its pod exists or not, so an unbounded
/// `replicas` (the API allows up to 2^31 - 1) would exhaust memory: found while writing the
/// `manifests` fuzz target, `replicas: 2147483647` aborted petdns on a failed allocation. A
/// local file is the user's own, so it is rejected with the reason rather than cut short.
pub const MAX_REPLICAS: i32 = crate::identity::MAX_DECLARED;

/// One problem in the input, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
        } else {
            write!(f, "{}: {}", self.file.display(), self.reason)
        }
    }
}

/// The objects read from the manifests, keyed as the API server would key them.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub namespaces: BTreeSet<String>,
    pub services: BTreeMap<(String, String), Service>,
    pub stateful_sets: BTreeMap<(String, String), StatefulSet>,
    /// Boxed: a `Pod` is large, and a B-tree moves its values when it splits a node.
    pub pods: BTreeMap<(String, String), Box<Pod>>,
    pub nodes: BTreeMap<String, Node>,
}

impl Objects {
    /// Every namespace that exists: the built-in ones, Namespace objects, and the namespaces
    /// the other objects live in.
    pub fn all_namespaces(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = BUILTIN_NAMESPACES.iter().map(|s| s.to_string()).collect();
        out.extend(self.namespaces.iter().cloned());
        out.extend(self.services.keys().map(|k| k.0.clone()));
        out.extend(self.stateful_sets.keys().map(|k| k.0.clone()));
        out.extend(self.pods.keys().map(|k| k.0.clone()));
        out
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
}

#[derive(Deserialize)]
struct ListItems {
    #[serde(default)]
    items: Vec<serde_json::Value>,
}

/// The files a set of paths names: files as given, directories' `*.yaml`, `*.yml` and
/// `*.json` entries (not recursive, as `kubectl apply -f DIR`), in name order.
pub fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<ManifestError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| is_manifest_name(p) && p.is_file())
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => errors.push(whole_file(path, format!("cannot list directory: {e}"))),
            },
            Ok(_) => files.push(path.clone()),
            Err(e) => errors.push(whole_file(path, format!("cannot read: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// True for names a directory load picks up (editor swap and backup files are not).
pub fn is_manifest_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Loads every object of `paths`. Errors are collected across all files.
pub fn load(paths: &[PathBuf]) -> Result<Objects, Vec<ManifestError>> {
    let files = manifest_files(paths)?;
    let mut objects = Objects::default();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, (PathBuf, usize)> = BTreeMap::new();
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(text) => parse_into(file, &text, &mut objects, &mut seen, &mut errors),
            Err(e) => errors.push(whole_file(file, format!("cannot read: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

/// The fields of a Pod that the identity rules read (`controller::reconcile`: the metadata,
/// `spec.nodeName`, `spec.hostname`, `spec.subdomain`, `status.phase`, `status.podIP(s)` and
/// `status.conditions`); the rest of a Pod (containers, volumes, container statuses: most of
/// its bytes) is skipped by the parser instead of being built and then dropped. At 100,000
/// pods that halves what a load allocates; `a_pod_reads_the_same_through_the_fields_parsed`
/// checks that the identity table is the same as from the whole Pod.
#[derive(Deserialize)]
struct PodFields {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<PodSpecFields>,
    #[serde(default)]
    status: Option<PodStatusFields>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpecFields {
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    subdomain: Option<String>,
}

#[derive(Deserialize)]
struct PodStatusFields {
    #[serde(default)]
    phase: Option<String>,
    #[serde(default, rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(default, rename = "podIPs")]
    pod_ips: Option<Vec<PodIP>>,
    #[serde(default)]
    conditions: Option<Vec<PodCondition>>,
}

impl PodFields {
    fn into_pod(self) -> Pod {
        Pod {
            metadata: self.metadata,
            spec: self.spec.map(|s| PodSpec {
                node_name: s.node_name,
                hostname: s.hostname,
                subdomain: s.subdomain,
                ..PodSpec::default()
            }),
            status: self.status.map(|s| PodStatus {
                phase: s.phase,
                pod_ip: s.pod_ip,
                pod_ips: s.pod_ips,
                conditions: s.conditions,
                ..PodStatus::default()
            }),
        }
    }
}

/// One document, parsed (the part that can run in parallel).
enum Parsed {
    /// Blank, comments only, or a kind petdns does not use.
    Skip,
    /// A document that does not parse: (line within the document, reason).
    Invalid(usize, String),
    /// `kind` missing.
    NoKind,
    Object(String, Result<Object, (usize, String)>),
    /// A `List`: each item's kind and object (or why it was not one).
    List(Vec<(String, Result<Option<Object>, String>)>),
}

/// An object of a kind petdns uses.
enum Object {
    Namespace(Box<Namespace>),
    Service(Box<Service>),
    StatefulSet(Box<StatefulSet>),
    Pod(Box<Pod>),
    Node(Box<Node>),
}

fn parse_doc(doc: &str) -> Parsed {
    if doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    }) {
        return Parsed::Skip;
    }
    let meta: TypeMeta = match typed(doc) {
        Ok(m) => m,
        Err((line, reason)) => return Parsed::Invalid(line, reason),
    };
    let Some(kind) = meta.kind else {
        return Parsed::NoKind;
    };
    if kind == "List" {
        let list: ListItems = match typed(doc) {
            Ok(l) => l,
            Err((line, reason)) => return Parsed::Invalid(line, reason),
        };
        let items = list
            .items
            .into_iter()
            .map(|item| {
                let item_kind = item
                    .get("kind")
                    .and_then(|k| k.as_str())
                    .unwrap_or("")
                    .to_string();
                let object = object_from_value(&item_kind, item);
                (item_kind, object)
            })
            .collect();
        return Parsed::List(items);
    }
    let object = match kind.as_str() {
        "Namespace" => typed(doc).map(|o| Object::Namespace(Box::new(o))),
        "Service" => typed(doc).map(|o| Object::Service(Box::new(o))),
        "StatefulSet" => typed(doc).map(|o| Object::StatefulSet(Box::new(o))),
        "Pod" => typed::<PodFields>(doc).map(|o| Object::Pod(Box::new(o.into_pod()))),
        "Node" => typed(doc).map(|o| Object::Node(Box::new(o))),
        other => {
            debug!(kind = other, api_version = ?meta.api_version, "skipping a kind petdns does not use");
            return Parsed::Skip;
        }
    };
    Parsed::Object(kind, object)
}

/// Parses the documents, in order, on every core (scoped threads, so their allocator state is
/// given back when they end and `set_after_load`'s hook can return the garbage to the system).
fn parse_all(docs: &[(usize, &str)]) -> Vec<Parsed> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || docs.len() < 1024 {
        return docs.iter().map(|(_, d)| parse_doc(d)).collect();
    }
    let chunk = docs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = docs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|(_, d)| parse_doc(d)).collect::<Vec<_>>())
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Parses one file's text into `objects`.
pub fn parse_into(
    file: &Path,
    text: &str,
    objects: &mut Objects,
    seen: &mut BTreeMap<String, (PathBuf, usize)>,
    errors: &mut Vec<ManifestError>,
) {
    let docs = split_documents(text);
    let parsed = parse_all(&docs);
    for ((first_line, _), parsed) in docs.iter().zip(parsed) {
        let first_line = *first_line;
        let err = |line: usize, reason: String| ManifestError {
            file: file.to_path_buf(),
            line,
            reason,
        };
        match parsed {
            Parsed::Skip => {}
            Parsed::Invalid(line, reason) => {
                errors.push(err(first_line + line.saturating_sub(1), reason));
            }
            Parsed::NoKind => errors.push(err(first_line, "document has no `kind`".into())),
            Parsed::List(items) => {
                for (i, (item_kind, object)) in items.into_iter().enumerate() {
                    let added = object.and_then(|o| match o {
                        Some(o) => add_object(o, objects)
                            .map(|k| {
                                record_seen(seen, k, file, first_line, errors);
                                Some(())
                            })
                            .map_err(|(_, reason)| reason),
                        None => Ok(None),
                    });
                    if let Err(reason) = added {
                        errors.push(err(
                            first_line,
                            format!("List item {i} ({item_kind}): {reason}"),
                        ));
                    }
                }
            }
            Parsed::Object(kind, object) => match object.and_then(|o| add_object(o, objects)) {
                Ok(key) => record_seen(seen, key, file, first_line, errors),
                Err((line, reason)) => errors.push(err(
                    first_line + line.saturating_sub(1),
                    format!("{kind}: {reason}"),
                )),
            },
        }
    }
}

fn add_object(o: Object, objects: &mut Objects) -> Added {
    match o {
        Object::Namespace(o) => add_namespace(*o, objects),
        Object::Service(o) => add_service(*o, objects),
        Object::StatefulSet(o) => add_stateful_set(*o, objects),
        Object::Pod(o) => add_pod(o, objects),
        Object::Node(o) => add_node(*o, objects),
    }
}

fn record_seen(
    seen: &mut BTreeMap<String, (PathBuf, usize)>,
    key: String,
    file: &Path,
    line: usize,
    errors: &mut Vec<ManifestError>,
) {
    if let Some((f, l)) = seen.get(&key) {
        errors.push(ManifestError {
            file: file.to_path_buf(),
            line,
            reason: format!("{key} is defined again (first at {}:{l})", f.display()),
        });
    } else {
        seen.insert(key, (file.to_path_buf(), line));
    }
}

type Added = Result<String, (usize, String)>;

/// A document as `T`. A document written as JSON (as `kubectl get -o json` and generators
/// write them) is read by the JSON parser, many times faster; YAML is a superset of JSON, so
/// the result is the same, and anything the JSON parser refuses (comments, YAML flow syntax,
/// errors to report with a line) goes to the YAML parser.
fn typed<T: DeserializeOwned>(doc: &str) -> Result<T, (usize, String)> {
    if doc.trim_start().starts_with('{')
        && let Ok(v) = serde_json::from_str::<T>(doc)
    {
        return Ok(v);
    }
    serde_saphyr::from_str::<T>(doc).map_err(|e| describe(&e))
}

fn object_from_value(kind: &str, value: serde_json::Value) -> Result<Option<Object>, String> {
    fn conv<T: DeserializeOwned>(v: serde_json::Value) -> Result<Box<T>, String> {
        serde_json::from_value(v)
            .map(Box::new)
            .map_err(|e| e.to_string())
    }
    Ok(Some(match kind {
        "Namespace" => Object::Namespace(conv(value)?),
        "Service" => Object::Service(conv(value)?),
        "StatefulSet" => Object::StatefulSet(conv(value)?),
        "Pod" => Object::Pod(Box::new(conv::<PodFields>(value)?.into_pod())),
        "Node" => Object::Node(conv(value)?),
        _ => return Ok(None),
    }))
}

fn name_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<String, (usize, String)> {
    let name = meta.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err((0, "metadata.name is missing".into()));
    }
    Ok(name)
}

fn namespace_of(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<String, (usize, String)> {
    let ns = meta
        .namespace
        .get_or_insert_with(|| "default".into())
        .clone();
    check_label("metadata.namespace", &ns)?;
    Ok(ns)
}

/// Names that become DNS labels must be RFC 1123 labels, as the API server requires.
fn check_label(field: &str, value: &str) -> Result<(), (usize, String)> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err((
            0,
            format!(
                "{field} {value:?} is not a valid DNS label (lower-case letters, digits and '-', at most 63 characters)"
            ),
        ))
    }
}

fn add_namespace(mut o: Namespace, objects: &mut Objects) -> Added {
    let name = name_of(&o.metadata)?;
    check_label("metadata.name", &name)?;
    o.metadata.namespace = None;
    objects.namespaces.insert(name.clone());
    Ok(format!("Namespace {name}"))
}

fn add_service(mut o: Service, objects: &mut Objects) -> Added {
    let name = name_of(&o.metadata)?;
    check_label("metadata.name", &name)?;
    let ns = namespace_of(&mut o.metadata)?;
    for p in o.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
        if !(1..=65535).contains(&p.port) {
            return Err((
                0,
                format!("port {} of Service {name} is outside 1-65535", p.port),
            ));
        }
    }
    objects.services.insert((ns.clone(), name.clone()), o);
    Ok(format!("Service {ns}/{name}"))
}

fn add_stateful_set(mut o: StatefulSet, objects: &mut Objects) -> Added {
    let name = name_of(&o.metadata)?;
    check_label("metadata.name", &name)?;
    let ns = namespace_of(&mut o.metadata)?;
    let Some(spec) = o.spec.as_ref() else {
        return Err((0, format!("StatefulSet {name} has no spec")));
    };
    if spec.replicas.is_some_and(|r| r < 0) {
        return Err((
            0,
            format!("spec.replicas of StatefulSet {name} is negative"),
        ));
    }
    if let Some(r) = spec.replicas.filter(|r| *r > MAX_REPLICAS) {
        return Err((
            0,
            format!(
                "spec.replicas of StatefulSet {name} is {r}, above the {MAX_REPLICAS} petdns serves per StatefulSet"
            ),
        ));
    }
    if spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .is_some_and(|s| s < 0)
    {
        return Err((
            0,
            format!("spec.ordinals.start of StatefulSet {name} is negative"),
        ));
    }
    if let Some(svc) = spec.service_name.as_deref().filter(|s| !s.is_empty()) {
        check_label("spec.serviceName", svc)?;
    }
    objects.stateful_sets.insert((ns.clone(), name.clone()), o);
    Ok(format!("StatefulSet {ns}/{name}"))
}

fn add_pod(mut o: Box<Pod>, objects: &mut Objects) -> Added {
    let name = name_of(&o.metadata)?;
    let ns = namespace_of(&mut o.metadata)?;
    objects.pods.insert((ns.clone(), name.clone()), o);
    Ok(format!("Pod {ns}/{name}"))
}

fn add_node(mut o: Node, objects: &mut Objects) -> Added {
    let name = name_of(&o.metadata)?;
    o.metadata.namespace = None;
    objects.nodes.insert(name.clone(), o);
    Ok(format!("Node {name}"))
}

fn whole_file(path: &Path, reason: String) -> ManifestError {
    ManifestError {
        file: path.to_path_buf(),
        line: 0,
        reason,
    }
}

/// The error's line (1-based, within the document; 0 when unknown) and a one-line reason.
fn describe(e: &serde_saphyr::Error) -> (usize, String) {
    let line = e.location().map(|l| l.line() as usize).unwrap_or(0);
    let text = e.to_string();
    // The rendered error may carry a source snippet after the first line; the reason is the
    // first line, without a repeated "line N column M" prefix.
    let reason = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid YAML")
        .trim();
    let reason = reason.strip_prefix("error: ").unwrap_or(reason);
    (line, strip_location(reason).to_string())
}

/// `line 6 column 13: unclosed bracket` -> `unclosed bracket`: the line there counts from the
/// start of the document, not the file, and the caller reports the file's line already.
fn strip_location(reason: &str) -> &str {
    let Some((location, rest)) = reason.split_once(": ") else {
        return reason;
    };
    let words: Vec<&str> = location.split(' ').collect();
    match words.as_slice() {
        ["line", l, "column", c]
            if l.parse::<usize>().is_ok() && c.parse::<usize>().is_ok() && !rest.is_empty() =>
        {
            rest
        }
        _ => reason,
    }
}

/// Splits YAML text at `---` document markers, returning each document with the 1-based line
/// its text starts on. A marker must start the line; `...` ends a document.
pub fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = |m: &str| {
            bare.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if is_marker("---") || is_marker("...") {
            docs.push((start_line, &text[start_byte..offset]));
            // Content after `--- ` on the same line belongs to the next document.
            let rest = bare.strip_prefix("---").map(str::trim_start).unwrap_or("");
            if rest.is_empty() || rest.starts_with('#') {
                start_byte = offset + line.len();
                start_line = i + 2;
            } else {
                start_byte = offset + (bare.len() - rest.len());
                start_line = i + 1;
            }
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start_byte..]));
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` parsed as the file `file`: the objects and the errors.
    fn parse(file: &str, text: &str) -> (Objects, Vec<ManifestError>) {
        let mut objects = Objects::default();
        let mut errors = Vec::new();
        parse_into(
            Path::new(file),
            text,
            &mut objects,
            &mut BTreeMap::new(),
            &mut errors,
        );
        (objects, errors)
    }

    /// The identity table from Pods read through `PodFields` is the one the whole Pods give,
    /// for every state the rules tell apart, from JSON and from YAML documents.
    #[test]
    fn a_pod_reads_the_same_through_the_fields_parsed() {
        use crate::identity::fixtures::*;
        use crate::identity::reconcile;
        use k8s_openapi::api::core::v1::{Container, ContainerStatus, Volume};

        let pods: Vec<Pod> = vec![
            mk_pod("web", 0),
            mk_pod("web", 1).not_ready(),
            mk_pod("web", 2).without_ip(),
            mk_pod("web", 3).with_ips(&["192.0.2.3", "2001:db8::3"]),
            mk_pod("web", 4).terminating(),
            mk_pod("web", 5).on_node("lost"),
            mk_pod("web", 6).phase("Failed"),
            mk_pod("web", 7).subdomain(None),
            mk_pod("web", 8).hostname(Some("other")),
            mk_pod("web", 9).without_conditions(),
            mk_pod("web", 10).ready_status("Unknown"),
            mk_pod("web", 11).with_pod_ip_fields(Some("192.0.2.11"), None),
            mk_pod("web", 20),
        ]
        .into_iter()
        .map(|mut p| {
            // What a real Pod carries besides: all of it skipped.
            let spec = p.spec.get_or_insert_with(Default::default);
            spec.containers = vec![Container {
                name: "app".into(),
                image: Some("registry.example/app:1".into()),
                args: Some(vec!["--serve".into(); 3]),
                ..Default::default()
            }];
            spec.volumes = Some(vec![Volume {
                name: "data".into(),
                ..Default::default()
            }]);
            p.status
                .get_or_insert_with(Default::default)
                .container_statuses = Some(vec![ContainerStatus {
                name: "app".into(),
                restart_count: 3,
                ready: true,
                ..Default::default()
            }]);
            p
        })
        .collect();
        let set = mk_statefulset("web", 12);
        let service = mk_governing_service("web");
        let nodes = node_map(vec![mk_node("lost", false)]);
        let refs: Vec<&Pod> = pods.iter().collect();
        let want = reconcile(&set, Some(&service), &refs, &nodes);

        let json: String = pods
            .iter()
            .map(|p| format!("---\n{}\n", serde_json::to_string(p).unwrap()))
            .collect();
        let yaml: String = pods
            .iter()
            .map(|p| format!("---\n{}", serde_saphyr::to_string(p).unwrap()))
            .collect();
        for (form, text) in [("JSON", json), ("YAML", yaml)] {
            let (objects, errors) = parse("pods.yaml", &text);
            assert!(errors.is_empty(), "{form}: {errors:?}");
            let parsed: Vec<&Pod> = objects.pods.values().map(|p| &**p).collect();
            assert_eq!(parsed.len(), pods.len(), "{form}");
            assert!(
                parsed
                    .iter()
                    .all(|p| p.spec.as_ref().is_none_or(|s| s.containers.is_empty())),
                "{form}: containers are not kept"
            );
            assert_eq!(
                reconcile(&set, Some(&service), &parsed, &nodes),
                want,
                "{form}"
            );
        }
    }

    /// A file large enough to be parsed on several threads keeps document order: every object
    /// arrives, and a bad document far down is reported at its own line.
    #[test]
    fn a_large_file_parsed_in_parallel_keeps_order_and_lines() {
        let mut text = String::new();
        for i in 0..3000 {
            if i == 2500 {
                text.push_str("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: [\n");
            } else {
                text.push_str(&format!(
                    "---\n{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"p-{i}\"}}}}\n"
                ));
            }
        }
        let (objects, errors) = parse("big.yaml", &text);
        assert_eq!(objects.pods.len(), 2999);
        assert_eq!(errors.len(), 1, "{errors:?}");
        // 2,500 two-line documents, then `---` (line 5,001) and the bad document, whose
        // unclosed `[` is on its fourth line.
        assert_eq!(errors[0].line, 5005, "{}", errors[0]);
        assert!(
            errors[0].to_string().starts_with("big.yaml:"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn split_tracks_lines() {
        let text = "a: 1\n---\nb: 2\nc: 3\n--- # comment\nd: 4\n";
        let docs = split_documents(text);
        assert_eq!(
            docs,
            vec![(1, "a: 1\n"), (3, "b: 2\nc: 3\n"), (6, "d: 4\n")]
        );
    }

    #[test]
    fn bad_document_names_file_and_line() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: ok\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  replicas: three\n";
        let (_, errors) = parse("x.yaml", text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 11, "{}", errors[0]);
        assert!(
            errors[0].to_string().starts_with("x.yaml:11: StatefulSet"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn missing_namespace_means_default_and_unknown_kinds_are_skipped() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: nginx\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n";
        let (objects, errors) = parse("x.yaml", text);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(
            objects
                .services
                .contains_key(&("default".to_string(), "nginx".to_string()))
        );
    }

    #[test]
    fn list_items_are_unpacked_and_duplicates_rejected() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a, namespace: x}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a, namespace: x}\n";
        let (objects, errors) = parse("dump.yaml", text);
        assert_eq!(objects.services.len(), 1);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].reason.contains("defined again"));
    }

    /// `replicas: 2147483647` made petdns try to allocate an identity and a Pod for every
    /// ordinal, and abort (`memory allocation of 4672924415872 bytes failed`) instead of
    /// rejecting the manifest and keeping the last good state.
    #[test]
    fn regression_huge_replicas_aborted_instead_of_being_rejected() {
        let set = |replicas: i64| {
            format!(
                "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  serviceName: nginx\n  replicas: {replicas}\n"
            )
        };
        for (replicas, ok) in [
            (MAX_REPLICAS as i64, true),
            (MAX_REPLICAS as i64 + 1, false),
            (i32::MAX as i64, false),
        ] {
            let mut objects = Objects::default();
            let mut errors = Vec::new();
            parse_into(
                Path::new("x.yaml"),
                &set(replicas),
                &mut objects,
                &mut BTreeMap::new(),
                &mut errors,
            );
            assert_eq!(errors.is_empty(), ok, "{replicas}: {errors:?}");
            if !ok {
                assert_eq!(errors[0].line, 1, "{}", errors[0]);
                assert!(
                    errors[0].reason.contains("above the 10000"),
                    "{}",
                    errors[0]
                );
            }
        }
    }

    #[test]
    fn invalid_dns_label_is_rejected() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: Bad_Name\n";
        let (_, errors) = parse("x.yaml", text);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].reason.contains("not a valid DNS label"));
    }
}
