//! An in-process fake Kubernetes API server for tests, good enough for the real,
//! unmodified `kube` 5.0 client (typed `Api<K>`, `Api<DynamicObject>`,
//! `kube::runtime::watcher`, kube-lease-manager) over plain HTTP on 127.0.0.1.
//!
//! What it does: a generic in-memory store of `serde_json::Value` objects for a FIXED
//! resource table (see `store::RESOURCES`), one global resourceVersion counter, uid /
//! creationTimestamp / generation bookkeeping, get / list (label + field selectors,
//! limit + continue) / watch (history replay, BOOKMARKs, timeoutSeconds, 410 Gone as an
//! ERROR event) / create / replace (optimistic concurrency) / delete (finalizers,
//! preconditions, owner-reference garbage collection) / deletecollection / merge patch /
//! JSON patch / server-side apply, `/status` subresources, legacy discovery, and test
//! hooks for direct object edits, request counting and fault injection.
//!
//! Honest limits (things a real apiserver does that this one does NOT):
//! - No authn/authz/admission, no validation or defaulting against OpenAPI schemas (a Pod
//!   without containers is accepted; no `status.phase: Pending` on create), no
//!   namespace existence checks, no immutable-field checks (e.g. StatefulSet selector).
//! - The resource table is fixed: creating a CustomResourceDefinition stores it but does
//!   not register or unregister anything; `peersets.petdns.io` and `peerslices.petdns.io` are always served.
//! - Strategic merge patch is applied as a plain JSON merge patch: lists are replaced
//!   wholesale, never merged by key (`containers`, `ports`, `conditions`, ...), and
//!   `$patch`/`$retainKeys` directives are ignored.
//! - Server-side apply is a simplification: ownership is tracked per manager on leaf
//!   paths; lists are atomic (no `listType=map` merge-by-key, no per-item ownership);
//!   empty maps in an apply config are not created on existing objects. A conflict is
//!   "another manager owns this path (or an ancestor/descendant of it) and the value
//!   would change"; managers with the same name never conflict (the real apiserver
//!   keeps a manager's Apply and Update entries apart; here they are one). Non-apply
//!   writes give their manager (`fieldManager`, else the User-Agent product, else
//!   `unknown`) every field they change; fields that disappear lose all owners, which
//!   is what lets kube-lease-manager's release-then-apply work. `force=true` takes
//!   ownership. A field this manager applied before and no longer applies is removed
//!   when no other manager owns it. `metadata.managedFields` is NOT exposed on objects.
//! - resourceVersion semantics: there is no MVCC. `list` always returns the current
//!   state (`resourceVersion`/`resourceVersionMatch` are accepted and ignored); a
//!   `continue` page reads the current state after the last key but reports the first
//!   page's resourceVersion. `get` with a resourceVersion returns the current object.
//!   Watches from a resourceVersion newer than the current one do not wait.
//! - Watch history is kept until `compact()` (or 100 000 events). A watch from an rv
//!   below the compaction point returns HTTP 200 with one `ERROR` event (code 410,
//!   reason `Expired`) and then ends, like the real watch cache; `set_gone_as_http_status`
//!   switches to a plain HTTP 410 response instead (see the self-tests for why that
//!   matters to kube-runtime).
//! - Watches without a resourceVersion (or "0") start with synthetic ADDED events for
//!   the current state. `sendInitialEvents=true` is supported with the
//!   `k8s.io/initial-events-end` bookmark. BOOKMARKs come every `bookmark_interval`
//!   (default 1 s) when `allowWatchBookmarks=true`.
//! - Garbage collection is synchronous background propagation: deleting an owner
//!   immediately deletes dependents whose owners are all gone; `propagationPolicy`,
//!   `blockOwnerDeletion` and foreground deletion are ignored, and dependents whose
//!   owner never existed are never collected. Deletion honours `metadata.finalizers`
//!   (deletionTimestamp set, object removed once the finalizers are emptied) but
//!   ignores `gracePeriodSeconds`.
//! - Like the real apiserver, list items carry no `apiVersion`/`kind` (watch event
//!   objects and single GETs do). Test hooks (`insert`, `modify`) write objects verbatim,
//!   status included, bypassing every API rule above except metadata bookkeeping.
//! - `dryRun` is rejected with 400. No `/scale`, `/eviction`, `/log`, exec, port-forward
//!   or websockets. No aggregated discovery (only legacy `/api`, `/apis`, `/api/v1`,
//!   `/apis/{g}/{v}`, `/version`). No protobuf, no gzip, no table output.
//! - Faults: `pause()` holds NEW requests; open watch streams keep flowing unless
//!   `drop_watches()` is also called (`outage()` does both). `go_down()` closes the
//!   listening socket (connections refused) and cuts every open connection until
//!   `come_up()` listens again on the same port, as when the process exits and restarts.
//!   Injected failures are HTTP 500 `InternalError` (kube's default retry policy only
//!   retries 429/503/504, so these surface to the caller); `unavailable()` answers every
//!   request 503 with a plain-text body, as a load balancer with no backend does.
#![allow(dead_code)]

mod http;
mod listener;
mod patch;
mod selector;
mod store;

pub use http::RequestRecord;

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{Key, RESOURCES, Store, find_by_api_version};

#[derive(Default)]
struct Faults {
    fail_next: usize,
    fail_until: Option<Instant>,
    /// Every request answered 503 (`unavailable`).
    unavailable: bool,
}

struct Shared {
    addr: SocketAddr,
    store: Mutex<Store>,
    faults: Mutex<Faults>,
    paused: tokio::sync::watch::Sender<bool>,
    requests: Mutex<Vec<RequestRecord>>,
    bookmark_interval: Mutex<Duration>,
    gone_as_http: AtomicBool,
    /// Up or down (`go_down` / `come_up`), watched by the listener.
    gate: tokio::sync::watch::Sender<listener::Gate>,
    /// Whether the listening socket is open, as the listener last left it.
    listening: AtomicBool,
}

/// Handle to a running fake apiserver. It runs on its own thread and tokio runtime, so
/// it keeps serving while test code blocks, and across `#[tokio::test]` runtimes.
/// Dropping the handle stops it.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeApiServer {
    /// Bind 127.0.0.1:0 and start serving. Works inside or outside a tokio runtime.
    pub fn start() -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fake-apiserver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind");
                    let addr = socket.local_addr().expect("local addr");
                    let shared = Arc::new(Shared {
                        addr,
                        store: Mutex::new(Store::new()),
                        faults: Mutex::new(Faults::default()),
                        paused: tokio::sync::watch::channel(false).0,
                        requests: Mutex::new(Vec::new()),
                        bookmark_interval: Mutex::new(Duration::from_secs(1)),
                        gone_as_http: AtomicBool::new(false),
                        gate: tokio::sync::watch::channel(listener::Gate::default()).0,
                        listening: AtomicBool::new(true),
                    });
                    let listener = listener::GatedListener::new(socket, shared.clone());
                    addr_tx.send(shared.clone()).expect("report address");
                    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
                        let shared = shared.clone();
                        async move { http::handle(shared, req).await }
                    });
                    tokio::select! {
                        r = axum::serve(listener, app) => r.expect("serve"),
                        _ = shutdown_rx => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(200));
            })
            .expect("spawn fake apiserver thread");
        let shared = addr_rx.recv().expect("fake apiserver failed to start");
        Self {
            shared,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A kube client config pointing here, with `namespace` as the default namespace.
    pub fn config(&self, namespace: &str) -> kube::Config {
        let mut c = kube::Config::new(self.url().parse().expect("valid url"));
        c.default_namespace = namespace.to_string();
        c
    }

    /// A kube client pointing here. Must be called inside a tokio runtime.
    pub fn client(&self, namespace: &str) -> kube::Client {
        kube::Client::try_from(self.config(namespace)).expect("kube client")
    }

    /// A kubeconfig (server `http://127.0.0.1:PORT`, no auth, `namespace` in the context).
    pub fn kubeconfig_yaml(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {url}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: {namespace}
current-context: fake
users:
- name: fake
  user: {{}}
preferences: {{}}
",
            url = self.url()
        )
    }

    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml(namespace))
    }

    // ----- objects --------------------------------------------------------------

    fn res(api_version: &str, kind: &str) -> usize {
        find_by_api_version(api_version, kind)
            .unwrap_or_else(|| panic!("fake apiserver does not serve {api_version} {kind}"))
    }

    fn key(api_version: &str, kind: &str, namespace: &str, name: &str) -> Key {
        let res = Self::res(api_version, kind);
        let ns = if RESOURCES[res].namespaced {
            namespace
        } else {
            ""
        };
        Key {
            res,
            ns: ns.to_string(),
            name: name.to_string(),
        }
    }

    /// Create or overwrite an object verbatim (status included, no conflict checks),
    /// emitting ADDED/MODIFIED. `apiVersion`, `kind` and `metadata.name` are required;
    /// a missing namespace means `default`. Returns the stored object.
    pub fn insert(&self, obj: Value) -> Value {
        let av = obj["apiVersion"].as_str().expect("apiVersion").to_string();
        let kind = obj["kind"].as_str().expect("kind").to_string();
        let res = Self::res(&av, &kind);
        self.shared.store.lock().unwrap().hook_upsert(res, obj)
    }

    /// Read an object (`namespace` is ignored for cluster-scoped kinds). `kind` may also
    /// be the plural (`"pods"`).
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = Self::key(api_version, kind, namespace, name);
        self.shared.store.lock().unwrap().get(&key).cloned()
    }

    /// All objects of a kind, in one namespace or (None) all of them.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let res = Self::res(api_version, kind);
        self.shared.store.lock().unwrap().list(res, namespace)
    }

    /// Edit an object in place (emits MODIFIED if anything changed). None if missing.
    pub fn modify(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let key = Self::key(api_version, kind, namespace, name);
        let mut st = self.shared.store.lock().unwrap();
        let mut obj = st.get(&key)?.clone();
        f(&mut obj);
        Some(st.hook_upsert(key.res, obj))
    }

    /// Delete as the API would (finalizers honoured, dependents garbage-collected).
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let key = Self::key(api_version, kind, namespace, name);
        self.shared.store.lock().unwrap().hook_delete(&key)
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().unwrap().rv
    }

    // ----- request log ----------------------------------------------------------

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// Requests whose method matches (`""` or `"*"` = any) and whose path starts with
    /// `path_prefix`, e.g. `count_requests("PATCH", "/apis/petdns.io/")`.
    pub fn count_requests(&self, method: &str, path_prefix: &str) -> usize {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| method.is_empty() || method == "*" || r.method.eq_ignore_ascii_case(method))
            .filter(|r| r.path.starts_with(path_prefix))
            .count()
    }

    /// POST/PUT/PATCH/DELETE requests under `path_prefix`.
    pub fn count_writes(&self, path_prefix: &str) -> usize {
        ["POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .map(|m| self.count_requests(m, path_prefix))
            .sum()
    }

    /// POST/PUT/PATCH/DELETE requests to exactly `path` (an object, or its subresource).
    pub fn count_writes_to(&self, path: &str) -> usize {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| ["POST", "PUT", "PATCH", "DELETE"].contains(&r.method.as_str()))
            .filter(|r| r.path == path)
            .count()
    }

    // ----- faults ---------------------------------------------------------------

    /// End every open watch stream cleanly (clients see the stream end and re-watch).
    pub fn drop_watches(&self) {
        self.shared.store.lock().unwrap().drop_watchers();
    }

    /// Number of watch streams currently open.
    pub fn open_watches(&self) -> usize {
        self.shared.store.lock().unwrap().open_watchers()
    }

    /// Fail the next `n` requests (any path) with HTTP 500.
    pub fn fail_next(&self, n: usize) {
        self.shared.faults.lock().unwrap().fail_next = n;
    }

    /// Fail every request with HTTP 500 for `d`.
    pub fn fail_for(&self, d: Duration) {
        self.shared.faults.lock().unwrap().fail_until = Some(Instant::now() + d);
    }

    /// Answer every request 503 Service Unavailable, with a plain-text body, until `heal()`,
    /// and end every open watch stream: a load balancer in front of the API server with no
    /// healthy backend left. kube's default client retries 503 itself (see
    /// `kube_default_retry_hides_503s` in tests/cluster/main.rs).
    pub fn unavailable(&self) {
        self.shared.faults.lock().unwrap().unavailable = true;
        self.drop_watches();
    }

    /// Clear injected failures.
    pub fn heal(&self) {
        *self.shared.faults.lock().unwrap() = Faults::default();
    }

    /// Hold every new request until `resume()`.
    pub fn pause(&self) {
        self.shared.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.shared.paused.send_replace(false);
    }

    /// `pause()` plus `drop_watches()`: looks like the apiserver went away.
    pub fn outage(&self) {
        self.pause();
        self.drop_watches();
    }

    /// The API server process is gone: the listening socket closes, so connecting is refused
    /// (ECONNREFUSED), and every open connection (watch streams, idle keep-alive ones,
    /// requests in flight) is cut. Returns once connections are refused. Test hooks
    /// (`modify`, `insert`, `compact`...) keep working meanwhile.
    pub fn go_down(&self) {
        self.shared.gate.send_modify(|g| {
            g.down = true;
            g.cut.cancel();
            g.cut = tokio_util::sync::CancellationToken::new();
        });
        self.drop_watches();
        self.wait_listening(false);
    }

    /// Listen again on the same address after `go_down()`. Returns once connections are
    /// accepted.
    pub fn come_up(&self) {
        self.shared.gate.send_modify(|g| g.down = false);
        self.wait_listening(true);
    }

    fn wait_listening(&self, want: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.shared.listening.load(Ordering::SeqCst) != want {
            assert!(
                Instant::now() < deadline,
                "fake apiserver: listening never became {want}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Forget the watch history: a watch from any older resourceVersion gets 410 Gone.
    pub fn compact(&self) {
        self.shared.store.lock().unwrap().compact();
    }

    /// Interval between BOOKMARK events on watches that allow them (default 1 s).
    pub fn set_bookmark_interval(&self, d: Duration) {
        *self.shared.bookmark_interval.lock().unwrap() = d;
    }

    /// Answer too-old watches with HTTP 410 instead of a 200 + ERROR event.
    pub fn set_gone_as_http_status(&self, on: bool) {
        self.shared.gone_as_http.store(on, Ordering::SeqCst);
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.resume();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
