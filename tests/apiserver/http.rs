//! HTTP layer: URL routing, fault injection, request log, list/watch/CRUD handlers.

use super::Shared;
use super::selector::Selectors;
use super::store::{ApiError, EventType, Key, RESOURCES, Record, Store, Sub, find_resource};
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One request as seen by the server (recorded before fault injection).
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
}

pub fn json_response(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(v).expect("serializable")))
        .expect("valid response")
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.status_json())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

enum Route {
    Version,
    CoreVersions,
    Groups,
    Resources(String, String),
    Collection { res: usize, ns: Option<String> },
    Object { key: Key, sub: Sub },
}

fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn route(path: &str) -> Result<Route, ApiError> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (group, version, rest) = match s.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found_path()),
    };
    if rest.is_empty() {
        return Ok(Route::Resources(group.to_string(), version.to_string()));
    }
    let namespaced = match rest {
        ["namespaces", ns, plural, tail @ ..] => find_resource(group, version, plural)
            .filter(|&r| RESOURCES[r].namespaced)
            .map(|r| (r, ns.to_string(), tail)),
        _ => None,
    };
    let (res, ns, tail) = match namespaced {
        Some(x) => x,
        None => {
            let res = find_resource(group, version, rest[0]).ok_or_else(not_found_path)?;
            (res, String::new(), &rest[1..])
        }
    };
    let def = &RESOURCES[res];
    let ns_given = !ns.is_empty();
    match tail {
        [] => Ok(Route::Collection {
            res,
            ns: ns_given.then_some(ns),
        }),
        [name] | [name, "status"] if def.namespaced == ns_given => {
            let sub = if tail.len() == 2 {
                if !def.status {
                    return Err(not_found_path());
                }
                Sub::Status
            } else {
                Sub::Main
            };
            Ok(Route::Object {
                key: Key {
                    res,
                    ns,
                    name: name.to_string(),
                },
                sub,
            })
        }
        _ => Err(not_found_path()),
    }
}

fn default_manager(req: &Request<Body>) -> String {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

/// Entry point for every request.
pub async fn handle(shared: Arc<Shared>, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
    shared.requests.lock().unwrap().push(RequestRecord {
        method: req.method().to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
    });

    // pause: hold until resumed
    let mut paused = shared.paused.subscribe();
    let _ = paused.wait_for(|p| !*p).await;

    // injected failures
    {
        let mut f = shared.faults.lock().unwrap();
        if f.unavailable {
            // As a load balancer with no healthy API server behind it answers: plain text,
            // not a Kubernetes Status.
            return Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("no healthy upstream"))
                .expect("valid response");
        }
        let fail = if f.fail_next > 0 {
            f.fail_next -= 1;
            true
        } else {
            f.fail_until.is_some_and(|t| Instant::now() < t)
        };
        if fail {
            return error_response(&ApiError::new(
                500,
                "InternalError",
                "injected failure (fake apiserver)",
            ));
        }
    }

    let q = parse_query(&query);
    let route = match route(&path) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    if q.get("dryRun").is_some_and(|v| !v.is_empty()) {
        return error_response(&ApiError::bad_request(
            "dryRun is not supported by the fake apiserver",
        ));
    }
    let method = req.method().clone();
    let manager = q
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| default_manager(&req));
    let body = match axum::body::to_bytes(req.into_body(), 64 << 20).await {
        Ok(b) => b,
        Err(e) => return error_response(&ApiError::bad_request(format!("reading body: {e}"))),
    };
    let parse_json = |b: &Bytes| -> Result<Value, ApiError> {
        serde_json::from_slice(b)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    };

    let result: Result<Response<Body>, ApiError> = match (route, method) {
        (Route::Version, Method::GET) => Ok(json_response(200, &version_info())),
        (Route::CoreVersions, Method::GET) => Ok(json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}]}),
        )),
        (Route::Groups, Method::GET) => Ok(json_response(200, &group_list())),
        (Route::Resources(g, v), Method::GET) => {
            resource_list(&g, &v).map(|v| json_response(200, &v))
        }
        (Route::Collection { res, ns }, Method::GET) => {
            if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                watch(&shared, res, ns, &q)
            } else {
                list(&shared.store.lock().unwrap(), res, ns.as_deref(), &q)
                    .map(|v| json_response(200, &v))
            }
        }
        (Route::Collection { res, ns }, Method::POST) => match ns {
            Some(ns) => parse_json(&body)
                .and_then(|b| {
                    shared
                        .store
                        .lock()
                        .unwrap()
                        .api_create(res, &ns, b, &manager)
                })
                .map(|v| json_response(201, &v)),
            None if !RESOURCES[res].namespaced => parse_json(&body)
                .and_then(|b| {
                    shared
                        .store
                        .lock()
                        .unwrap()
                        .api_create(res, "", b, &manager)
                })
                .map(|v| json_response(201, &v)),
            None => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "POST needs a namespace",
            )),
        },
        (Route::Collection { res, ns }, Method::DELETE) => {
            delete_collection(&shared, res, ns.as_deref(), &q)
        }
        (Route::Object { key, .. }, Method::GET) => {
            let st = shared.store.lock().unwrap();
            st.get(&key)
                .map(|v| json_response(200, v))
                .ok_or_else(|| ApiError::not_found(&RESOURCES[key.res], &key.name))
        }
        (Route::Object { key, sub }, Method::PUT) => parse_json(&body)
            .and_then(|b| {
                shared
                    .store
                    .lock()
                    .unwrap()
                    .api_replace(&key, sub, b, &manager)
            })
            .map(|v| json_response(200, &v)),
        (Route::Object { key, sub }, Method::PATCH) => {
            let ct = content_type.unwrap_or_default();
            if ct == "application/apply-patch+yaml" {
                if !q.contains_key("fieldManager") {
                    Err(ApiError::bad_request(
                        "PATCH requests with apply content type require fieldManager",
                    ))
                } else {
                    let force = q.get("force").is_some_and(|f| f == "true");
                    parse_apply(&body).and_then(|cfg| {
                        let (v, created) = shared
                            .store
                            .lock()
                            .unwrap()
                            .api_apply(&key, sub, cfg, &manager, force)?;
                        Ok(json_response(if created { 201 } else { 200 }, &v))
                    })
                }
            } else {
                parse_json(&body)
                    .and_then(|b| {
                        shared
                            .store
                            .lock()
                            .unwrap()
                            .api_patch(&key, sub, &ct, &b, &manager)
                    })
                    .map(|v| json_response(200, &v))
            }
        }
        (
            Route::Object {
                key,
                sub: Sub::Main,
            },
            Method::DELETE,
        ) => {
            let opts = if body.is_empty() {
                None
            } else {
                serde_json::from_slice::<Value>(&body).ok()
            };
            shared
                .store
                .lock()
                .unwrap()
                .api_delete(&key, opts.as_ref())
                .map(|v| json_response(200, &v))
        }
        (_, m) => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("method {m} not allowed here"),
        )),
    };
    result.unwrap_or_else(|e| error_response(&e))
}

fn parse_apply(body: &Bytes) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("invalid YAML: {e}")))
}

fn selectors(q: &HashMap<String, String>) -> Result<Selectors, ApiError> {
    Selectors::parse(
        q.get("labelSelector").map(String::as_str),
        q.get("fieldSelector").map(String::as_str),
    )
    .map_err(ApiError::bad_request)
}

fn strip_type(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

fn list(
    st: &Store,
    res: usize,
    ns: Option<&str>,
    q: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let def = &RESOURCES[res];
    let sel = selectors(q)?;
    // continue token: "<rv>|<namespace>|<name>" of the last item returned
    let (list_rv, after) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(tok) => {
            let mut it = tok.splitn(3, '|');
            match (it.next(), it.next(), it.next()) {
                (Some(rv), Some(ns), Some(name)) => {
                    (rv.to_string(), Some((ns.to_string(), name.to_string())))
                }
                _ => return Err(ApiError::bad_request("invalid continue token")),
            }
        }
        None => (st.rv.to_string(), None),
    };
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|&l| l > 0);
    let mut items: Vec<Value> = st
        .list(res, ns)
        .into_iter()
        .filter(|o| {
            after.as_ref().is_none_or(|(ans, aname)| {
                let ons = o
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let oname = o
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                (ons, oname) > (ans.as_str(), aname.as_str())
            })
        })
        .filter(|o| sel.matches(o))
        .collect();
    let mut meta = json!({"resourceVersion": list_rv});
    if let Some(limit) = limit
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let last = items.last().expect("limit > 0");
        let ons = last
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        let oname = last
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        meta["continue"] = json!(format!("{list_rv}|{ons}|{oname}"));
        meta["remainingItemCount"] = json!(remaining);
    }
    Ok(json!({
        "kind": format!("{}List", def.kind),
        "apiVersion": def.api_version(),
        "metadata": meta,
        "items": items.into_iter().map(strip_type).collect::<Vec<_>>(),
    }))
}

fn delete_collection(
    shared: &Shared,
    res: usize,
    ns: Option<&str>,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let sel = selectors(q)?;
    let mut st = shared.store.lock().unwrap();
    let def = &RESOURCES[res];
    let victims: Vec<Value> = st
        .list(res, ns)
        .into_iter()
        .filter(|o| sel.matches(o))
        .collect();
    let mut deleted = Vec::new();
    for v in victims {
        let key = Key {
            res,
            ns: v
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            name: v
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        };
        if let Ok(d) = st.api_delete(&key, None) {
            deleted.push(strip_type(d));
        }
    }
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(), "metadata": {"resourceVersion": st.rv.to_string()}, "items": deleted}),
    ))
}

// ----- watch -----------------------------------------------------------------------

fn event_line(etype: &str, obj: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": etype, "object": obj})).expect("serializable");
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark_line(res: usize, rv: u64, initial_end: bool) -> Bytes {
    let def = &RESOURCES[res];
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": meta}),
    )
}

struct WatchFilter {
    res: usize,
    ns: Option<String>,
    sel: Selectors,
}

impl WatchFilter {
    /// The event this watcher sees for a change, taking selector transitions into account.
    fn render(&self, rec: &Record) -> Option<Bytes> {
        if rec.res != self.res || self.ns.as_ref().is_some_and(|n| *n != rec.ns) {
            return None;
        }
        let new_m = self.sel.matches(&rec.new);
        let old_m = rec.old.as_ref().is_some_and(|o| self.sel.matches(o));
        let etype = match rec.etype {
            EventType::Added => new_m.then_some("ADDED"),
            EventType::Deleted => (old_m || new_m).then_some("DELETED"),
            EventType::Modified => match (old_m, new_m) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            },
        }?;
        Some(event_line(etype, &rec.new))
    }
}

fn watch(
    shared: &Arc<Shared>,
    res: usize,
    ns: Option<String>,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let filter = WatchFilter {
        res,
        ns,
        sel: selectors(q)?,
    };
    let bookmarks = q
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true" || b == "1");
    let send_initial = q.get("sendInitialEvents").is_some_and(|b| b == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|&t| t > 0);
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let interval = *shared.bookmark_interval.lock().unwrap();

    let mut first: Vec<Bytes> = Vec::new();
    let mut gone = false;
    let (mut rx, mut last_rv) = {
        let mut st = shared.store.lock().unwrap();
        if send_initial || rv_param.is_empty() || rv_param == "0" {
            for obj in st.list(res, filter.ns.as_deref()) {
                if filter.sel.matches(&obj) {
                    first.push(event_line("ADDED", &obj));
                }
            }
            if send_initial {
                first.push(bookmark_line(res, st.rv, true));
            }
        } else {
            let n: u64 = rv_param.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version {rv_param:?}"))
            })?;
            match st.history_since(n) {
                Ok(recs) => first.extend(recs.iter().filter_map(|r| filter.render(r))),
                Err(e) => {
                    if shared
                        .gone_as_http
                        .load(std::sync::atomic::Ordering::SeqCst)
                    {
                        return Err(e);
                    }
                    first.push(event_line("ERROR", &e.status_json()));
                    gone = true;
                }
            }
        }
        (st.subscribe(), st.rv)
    };

    let (tx, body_rx) = mpsc::channel::<Bytes>(64);
    let shared = shared.clone();
    tokio::spawn(async move {
        for line in first {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if gone {
            return;
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + Duration::from_secs(t));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => return,
                ev = rx.recv() => match ev {
                    None => return, // dropped by the harness
                    Some(rec) => {
                        if rec.rv > last_rv {
                            last_rv = rec.rv;
                            if let Some(line) = filter.render(&rec)
                                && tx.send(line).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                },
                _ = tick.tick(), if bookmarks => {
                    // everything up to `cur` is already queued in `rx`: drain it, then bookmark
                    let cur = shared.store.lock().unwrap().rv;
                    loop {
                        match rx.try_recv() {
                            Ok(rec) => {
                                if rec.rv > last_rv {
                                    last_rv = rec.rv;
                                    if let Some(line) = filter.render(&rec)
                                        && tx.send(line).await.is_err()
                                    {
                                        return;
                                    }
                                }
                            }
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => return,
                        }
                    }
                    last_rv = last_rv.max(cur);
                    if tx.send(bookmark_line(filter.res, last_rv, false)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream = futures::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok(Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("valid response"))
}

// ----- discovery -------------------------------------------------------------------

fn version_info() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-petdns-fake", "gitCommit": "0000000",
        "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24",
        "compiler": "gc", "platform": "linux/amd64"
    })
}

fn group_list() -> Value {
    let mut groups: Vec<(&str, &str)> = RESOURCES
        .iter()
        .filter(|r| !r.group.is_empty())
        .map(|r| (r.group, r.version))
        .collect();
    groups.dedup();
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(group: &str, version: &str) -> Result<Value, ApiError> {
    let verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.push(json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs}));
        if r.status {
            resources.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    if resources.is_empty() {
        return Err(not_found_path());
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}
