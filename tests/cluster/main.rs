//! Self-tests for the fake Kubernetes API server in `tests/apiserver/`, driven only
//! through the real `kube` client, kube-runtime's watcher and kube-lease-manager, and
//! (module `e2e`) cluster mode end to end: the real `petdns controller` and
//! `petdns serve --kube` against it, answers checked with `dig`.

#[path = "../apiserver/mod.rs"]
mod apiserver;
mod e2e;
#[path = "../support/mod.rs"]
mod support;

use apiserver::FakeApiServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::{sleep, timeout};

const NS: &str = "petdns-test";

fn pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

fn api_code(e: &kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn peerset_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("petdns.io", "v1alpha2", "PeerSet"),
        "peersets",
    )
}

#[tokio::test]
async fn typed_crud_conflicts_and_gc() {
    let server = FakeApiServer::start();
    let client = server.client(NS);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());

    let created = pods
        .create(&PostParams::default(), &pod("web-0", json!({"app": "web"})))
        .await
        .unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some(NS));
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let rv0 = created.metadata.resource_version.clone().unwrap();

    // AlreadyExists
    let err = pods
        .create(&PostParams::default(), &pod("web-0", json!({})))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (409, "AlreadyExists".into()));

    pods.create(
        &PostParams::default(),
        &pod("db-0", json!({"app": "db", "tier": "data"})),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("web-1", json!({"app": "web", "canary": "yes"})),
    )
    .await
    .unwrap();

    // get / 404 / get_opt
    assert_eq!(
        pods.get("web-0").await.unwrap().metadata.name.as_deref(),
        Some("web-0")
    );
    let err = pods.get("nope").await.unwrap_err();
    assert_eq!(api_code(&err), (404, "NotFound".into()));
    assert!(pods.get_opt("nope").await.unwrap().is_none());

    // list with selectors
    let names = |l: kube::core::ObjectList<Pod>| -> Vec<String> {
        l.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect()
    };
    let all = pods.list(&ListParams::default()).await.unwrap();
    assert!(all.metadata.resource_version.is_some());
    assert_eq!(names(all), ["db-0", "web-0", "web-1"]);
    let sel = |s: &str| ListParams::default().labels(s);
    assert_eq!(
        names(pods.list(&sel("app=web")).await.unwrap()),
        ["web-0", "web-1"]
    );
    assert_eq!(
        names(pods.list(&sel("app==web,!canary")).await.unwrap()),
        ["web-0"]
    );
    assert_eq!(names(pods.list(&sel("app!=web")).await.unwrap()), ["db-0"]);
    assert_eq!(
        names(pods.list(&sel("app in (db, web),canary")).await.unwrap()),
        ["web-1"]
    );
    assert_eq!(
        names(pods.list(&sel("app notin (web)")).await.unwrap()),
        ["db-0"]
    );
    assert_eq!(names(pods.list(&sel("tier")).await.unwrap()), ["db-0"]);
    let by_name = ListParams::default().fields("metadata.name=web-1");
    assert_eq!(names(pods.list(&by_name).await.unwrap()), ["web-1"]);
    let by_ns = ListParams::default().fields(&format!("metadata.namespace={NS}"));
    assert_eq!(
        Api::<Pod>::all(client.clone())
            .list(&by_ns)
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    // pagination
    let page = pods.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().unwrap();
    let rest = pods
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(rest), ["web-1"]);

    // replace with the current resourceVersion succeeds; a stale one conflicts
    let mut p = pods.get("web-0").await.unwrap();
    p.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("v".into(), "2".into());
    let replaced = pods
        .replace("web-0", &PostParams::default(), &p)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version.as_deref(),
        Some(rv0.as_str())
    );
    assert_eq!(
        replaced.metadata.generation,
        Some(1),
        "labels do not bump generation"
    );
    let err = pods
        .replace("web-0", &PostParams::default(), &p)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (409, "Conflict".into()));
    let mut p = replaced.clone();
    p.spec.as_mut().unwrap().containers[0].image = Some("nginx".into());
    let replaced = pods
        .replace("web-0", &PostParams::default(), &p)
        .await
        .unwrap();
    assert_eq!(
        replaced.metadata.generation,
        Some(2),
        "spec change bumps generation"
    );

    // merge patch
    let patched = pods
        .patch(
            "web-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"v": null}}})),
        )
        .await
        .unwrap();
    assert!(!patched.metadata.labels.unwrap().contains_key("v"));

    // delete
    let deleted = pods
        .delete("web-0", &DeleteParams::default())
        .await
        .unwrap();
    assert!(deleted.is_left());
    assert!(pods.get_opt("web-0").await.unwrap().is_none());
    let err = pods
        .delete("web-0", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (404, "NotFound".into()));

    // StatefulSet owns a PeerSet; deleting the StatefulSet garbage-collects the PeerSet
    let sts_api: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}},
    }))
    .unwrap();
    let sts = sts_api.create(&PostParams::default(), &sts).await.unwrap();
    let listed = sts_api.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let peersets: Api<DynamicObject> =
        Api::default_namespaced_with(client.clone(), &peerset_resource());
    let mut ps = DynamicObject::new("web", &peerset_resource())
        .data(json!({"spec": {"statefulSet": "web"}}));
    ps.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: "web".into(),
            uid: sts.metadata.uid.clone().unwrap(),
            controller: Some(true),
            ..Default::default()
        },
    ]);
    peersets.create(&PostParams::default(), &ps).await.unwrap();
    assert!(peersets.get_opt("web").await.unwrap().is_some());
    sts_api
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        peersets.get_opt("web").await.unwrap().is_none(),
        "PeerSet garbage-collected"
    );

    // finalizers: delete marks, clearing the finalizer removes
    let mut p = pod("fin", json!({}));
    p.metadata.finalizers = Some(vec!["petdns.io/test".into()]);
    pods.create(&PostParams::default(), &p).await.unwrap();
    pods.delete("fin", &DeleteParams::default()).await.unwrap();
    let marked = pods.get("fin").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    pods.patch(
        "fin",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(pods.get_opt("fin").await.unwrap().is_none());

    // request log: no PeerSet writes other than the one create above
    assert_eq!(server.count_writes("/apis/petdns.io/"), 1);
    assert_eq!(
        server.count_requests(
            "DELETE",
            "/apis/apps/v1/namespaces/petdns-test/statefulsets"
        ),
        1
    );
    assert!(server.count_requests("GET", "/api/v1/") > 10);
}

#[tokio::test]
async fn raw_watch_bookmarks_history_and_gone() {
    let server = FakeApiServer::start();
    server.set_bookmark_interval(Duration::from_millis(100));
    let client = server.client(NS);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let a = pods
        .create(&PostParams::default(), &pod("a", json!({"app": "x"})))
        .await
        .unwrap();
    let start_rv = a.metadata.resource_version.clone().unwrap();
    pods.create(&PostParams::default(), &pod("b", json!({"app": "y"})))
        .await
        .unwrap();
    pods.delete("a", &DeleteParams::default()).await.unwrap();

    // replay from a resourceVersion, with a label selector; then bookmarks
    let wp = WatchParams::default().labels("app=x").timeout(5);
    let mut stream = pods.watch(&wp, &start_rv).await.unwrap().boxed();
    let ev = timeout(Duration::from_secs(3), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev {
        WatchEvent::Deleted(p) => assert_eq!(p.metadata.name.as_deref(), Some("a")),
        other => panic!("expected DELETED, got {other:?}"),
    }
    let ev = timeout(Duration::from_secs(3), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let WatchEvent::Bookmark(bm) = ev else {
        panic!("expected BOOKMARK, got {ev:?}")
    };
    assert_eq!(
        bm.metadata.resource_version,
        server.resource_version().to_string()
    );
    assert_eq!(bm.types.kind, "Pod");

    // a label change makes the object enter the selector: ADDED
    pods.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
    )
    .await
    .unwrap();
    loop {
        let ev = timeout(Duration::from_secs(3), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match ev {
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Added(p) => {
                assert_eq!(p.metadata.name.as_deref(), Some("b"));
                break;
            }
            other => panic!("expected ADDED, got {other:?}"),
        }
    }
    drop(stream);

    // watch from "0": synthetic ADDED for existing objects
    let mut s0 = pods
        .watch(&WatchParams::default().disable_bookmarks().timeout(1), "0")
        .await
        .unwrap()
        .boxed();
    let ev = timeout(Duration::from_secs(3), s0.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, WatchEvent::Added(ref p) if p.metadata.name.as_deref() == Some("b")));
    // timeoutSeconds ends the stream
    let end = timeout(Duration::from_secs(3), s0.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(end.is_none());

    // compaction: an old resourceVersion gets a 410 ERROR event (HTTP 200)
    server.compact();
    let mut s = pods
        .watch(&WatchParams::default(), &start_rv)
        .await
        .unwrap()
        .boxed();
    let ev = timeout(Duration::from_secs(3), s.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let WatchEvent::Error(status) = ev else {
        panic!("expected ERROR, got {ev:?}")
    };
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    assert!(
        timeout(Duration::from_secs(3), s.try_next())
            .await
            .unwrap()
            .unwrap()
            .is_none()
    );
    // ... or an HTTP 410 when asked to
    server.set_gone_as_http_status(true);
    let err = pods
        .watch(&WatchParams::default(), &start_rv)
        .await
        .err()
        .expect("410");
    assert_eq!(api_code(&err), (410, "Expired".into()));
}

#[tokio::test]
async fn runtime_watcher_survives_drops_and_gone() {
    let server = FakeApiServer::start();
    server.set_bookmark_interval(Duration::from_millis(100));
    let client = server.client(NS);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod("pre", json!({})))
        .await
        .unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let w = watcher(pods.clone(), watcher::Config::default());
    let task = tokio::spawn(async move {
        let mut w = w.boxed();
        while let Some(ev) = w.next().await {
            let s = match ev {
                Ok(watcher::Event::Init) => "init".to_string(),
                Ok(watcher::Event::InitApply(p)) => {
                    format!("initapply:{}", p.metadata.name.unwrap())
                }
                Ok(watcher::Event::InitDone) => "initdone".to_string(),
                Ok(watcher::Event::Apply(p)) => format!("apply:{}", p.metadata.name.unwrap()),
                Ok(watcher::Event::Delete(p)) => format!("delete:{}", p.metadata.name.unwrap()),
                Err(e) => format!("error:{e}"),
            };
            if tx.send(s).is_err() {
                break;
            }
        }
    });
    let mut next = async || {
        timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("watcher event")
            .unwrap()
    };
    assert_eq!(next().await, "init");
    assert_eq!(next().await, "initapply:pre");
    assert_eq!(next().await, "initdone");

    pods.create(&PostParams::default(), &pod("p1", json!({})))
        .await
        .unwrap();
    assert_eq!(next().await, "apply:p1");
    pods.patch(
        "p1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"k": "v"}}})),
    )
    .await
    .unwrap();
    assert_eq!(next().await, "apply:p1");
    pods.delete("p1", &DeleteParams::default()).await.unwrap();
    assert_eq!(next().await, "delete:p1");

    // the watcher asked for bookmarks and a 290 s timeout, paged its list at 500
    let reqs = server.requests();
    let w = reqs
        .iter()
        .find(|r| r.query.contains("watch=true"))
        .expect("watch request");
    assert!(w.query.contains("allowWatchBookmarks=true"), "{}", w.query);
    assert!(w.query.contains("timeoutSeconds=290"), "{}", w.query);
    let l = reqs
        .iter()
        .find(|r| r.method == "GET" && !r.query.contains("watch"))
        .unwrap();
    assert!(l.query.contains("limit=500"), "{}", l.query);
    // advance the global resourceVersion without touching pods, let a few bookmarks go
    // by, then drop the stream: the watcher re-watches from the bookmark, no re-list
    server.insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}));
    let bookmark_rv = server.resource_version();
    sleep(Duration::from_millis(350)).await;
    let gets = |watch: bool| {
        server
            .requests()
            .iter()
            .filter(|r| {
                r.method == "GET"
                    && r.path.ends_with("/pods")
                    && r.query.contains("watch=true") == watch
            })
            .count()
    };
    let (lists_before, watches_before) = (gets(false), gets(true));
    server.drop_watches();
    sleep(Duration::from_millis(200)).await;
    pods.create(&PostParams::default(), &pod("p2", json!({})))
        .await
        .unwrap();
    assert_eq!(next().await, "apply:p2");
    assert_eq!(
        gets(false),
        lists_before,
        "a dropped watch must not cause a re-list"
    );
    assert!(gets(true) > watches_before, "the watcher re-watched");
    let rewatch = server
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.query.contains("watch=true"))
        .unwrap();
    assert!(
        rewatch
            .query
            .contains(&format!("resourceVersion={bookmark_rv}")),
        "re-watch should resume from the bookmark rv {bookmark_rv}: {}",
        rewatch.query
    );

    // outage + compaction: the watcher gets 410 on re-watch and re-lists
    server.outage();
    sleep(Duration::from_millis(100)).await;
    server.insert(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "during", "namespace": NS}}),
    );
    server.compact();
    server.resume();
    let mut seen = Vec::new();
    while !seen.contains(&"initdone".to_string()) {
        seen.push(next().await);
    }
    assert!(seen.iter().any(|s| s.starts_with("error:")), "{seen:?}");
    assert!(seen.contains(&"init".to_string()), "{seen:?}");
    assert!(seen.contains(&"initapply:during".to_string()), "{seen:?}");
    server.delete("v1", "Pod", NS, "during").unwrap();
    assert_eq!(next().await, "delete:during");
    task.abort();
}

#[tokio::test]
async fn server_side_apply_and_status_subresource() {
    let server = FakeApiServer::start();
    let client = server.client(NS);
    let sts_api: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let desired = |replicas: i32, labels: Value| -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "labels": labels},
            "spec": {"replicas": replicas, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}},
            "status": {"replicas": 99},
        })
    };
    let pp = PatchParams::apply("petdns");
    let s = sts_api
        .patch(
            "web",
            &pp,
            &Patch::Apply(desired(1, json!({"a": "1", "b": "2"}))),
        )
        .await
        .unwrap();
    assert_eq!(s.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(s.metadata.generation, Some(1));
    assert!(s.status.is_none(), "status is ignored on the main resource");
    let req = server.requests().into_iter().last().unwrap();
    assert_eq!(
        req.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert!(req.query.contains("fieldManager=petdns"));

    // re-apply: change replicas, stop applying label b -> removed
    let s = sts_api
        .patch("web", &pp, &Patch::Apply(desired(3, json!({"a": "1"}))))
        .await
        .unwrap();
    assert_eq!(s.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(s.metadata.generation, Some(2));
    assert!(!s.metadata.labels.as_ref().unwrap().contains_key("b"));
    // idempotent apply: no new resourceVersion
    let again = sts_api
        .patch("web", &pp, &Patch::Apply(desired(3, json!({"a": "1"}))))
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, s.metadata.resource_version);

    // another manager changing an owned field conflicts unless forced
    let partial = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let err = sts_api
        .patch(
            "web",
            &PatchParams::apply("hpa"),
            &Patch::Apply(partial.clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (409, "Conflict".into()));
    let s = sts_api
        .patch(
            "web",
            &PatchParams::apply("hpa").force(),
            &Patch::Apply(partial),
        )
        .await
        .unwrap();
    assert_eq!(s.spec.as_ref().unwrap().replicas, Some(5));
    // petdns no longer owns replicas: dropping it from its config keeps hpa's value
    let mut d = desired(0, json!({"a": "1"}));
    d["spec"].as_object_mut().unwrap().remove("replicas");
    let s = sts_api.patch("web", &pp, &Patch::Apply(d)).await.unwrap();
    assert_eq!(s.spec.as_ref().unwrap().replicas, Some(5));

    // status via the status subresource
    let st = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "status": {"replicas": 5, "readyReplicas": 2}});
    let generation = s.metadata.generation;
    let s = sts_api
        .patch_status("web", &pp, &Patch::Apply(st))
        .await
        .unwrap();
    assert_eq!(s.status.as_ref().unwrap().ready_replicas, Some(2));
    assert_eq!(
        s.metadata.generation, generation,
        "status does not bump generation"
    );

    // dynamic PeerSet: apply spec, then apply status on /status
    let ar = peerset_resource();
    let peersets: Api<DynamicObject> = Api::default_namespaced_with(client.clone(), &ar);
    let ps =
        DynamicObject::new("web", &ar).data(json!({"spec": {"statefulSet": "web", "port": 53}}));
    let applied = peersets
        .patch("web", &pp, &Patch::Apply(&ps))
        .await
        .unwrap();
    assert_eq!(applied.data["spec"]["port"], 53);
    assert_eq!(applied.types.as_ref().unwrap().kind, "PeerSet");
    let status = DynamicObject::new("web", &ar)
        .data(json!({"status": {"observedGeneration": 1, "peers": ["a", "b"]}}));
    let s = peersets
        .patch_status("web", &pp, &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(s.data["status"]["peers"], json!(["a", "b"]));
    assert_eq!(s.data["spec"]["port"], 53);
    // a main-resource write with .status leaves status alone
    let with_status = DynamicObject::new("web", &ar)
        .data(json!({"spec": {"statefulSet": "web", "port": 54}, "status": {"peers": []}}));
    let s = peersets
        .patch("web", &pp, &Patch::Apply(&with_status))
        .await
        .unwrap();
    assert_eq!(s.data["spec"]["port"], 54);
    assert_eq!(s.data["status"]["peers"], json!(["a", "b"]));
    assert_eq!(s.metadata.generation, Some(2));
    // status apply on a missing object is a 404
    let missing = DynamicObject::new("ghost", &ar).data(json!({"status": {"peers": []}}));
    let err = peersets
        .patch_status("ghost", &pp, &Patch::Apply(&missing))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), (404, "NotFound".into()));
    // the hook view agrees
    let stored = server
        .get("petdns.io/v1alpha2", "PeerSet", NS, "web")
        .unwrap();
    assert_eq!(stored["status"]["peers"], json!(["a", "b"]));
    assert_eq!(
        server.count_requests(
            "PATCH",
            "/apis/petdns.io/v1alpha2/namespaces/petdns-test/peersets/web/status"
        ),
        1
    );
}

#[tokio::test]
async fn lease_manager_election() {
    use kube_lease_manager::LeaseManagerBuilder;
    let server = FakeApiServer::start();
    let client = server.client(NS);
    let build = |id: &str| {
        LeaseManagerBuilder::new(client.clone(), "petdns-leader")
            .with_namespace(NS)
            .with_identity(id)
            .with_duration(2)
            .with_grace(1)
            .build()
    };
    let a = build("a").await.unwrap();
    let (mut a_rx, a_task) = a.watch().await;
    timeout(Duration::from_secs(5), a_rx.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let b = build("b").await.unwrap();
    let (mut b_rx, b_task) = b.watch().await;
    sleep(Duration::from_millis(500)).await;
    assert!(!*b_rx.borrow(), "b must not lead while a holds the lease");
    let lease: Api<Lease> = Api::default_namespaced(client.clone());
    let l = lease.get("petdns-leader").await.unwrap();
    assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("a"));

    // a releases (dropping the receiver); b takes over
    drop(a_rx);
    a_task.await.unwrap().unwrap();
    timeout(Duration::from_secs(6), b_rx.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let l = lease.get("petdns-leader").await.unwrap();
    assert_eq!(
        l.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("b")
    );

    // b stops without releasing (task killed); a new manager takes over after expiry
    let c = build("c").await.unwrap();
    let (mut c_rx, c_task) = c.watch().await;
    b_task.abort();
    timeout(Duration::from_secs(8), c_rx.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let l = lease.get("petdns-leader").await.unwrap();
    let spec = l.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("c"));
    assert!(spec.lease_transitions.unwrap_or(0) >= 2, "{spec:?}");
    drop(c_rx);
    c_task.await.unwrap().unwrap();
    // lease-manager used server-side apply and strategic merge patches
    let cts: Vec<String> = server
        .requests()
        .into_iter()
        .filter_map(|r| r.content_type)
        .collect();
    assert!(cts.iter().any(|c| c == "application/apply-patch+yaml"));
    assert!(
        cts.iter()
            .any(|c| c == "application/strategic-merge-patch+json")
    );
}

#[tokio::test]
async fn kubeconfig_and_faults() {
    let server = FakeApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path, "from-kubeconfig").unwrap();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(cfg.default_namespace, "from-kubeconfig");
    let client = kube::Client::try_from(cfg).unwrap();
    let info = client.apiserver_version().await.unwrap();
    assert_eq!(info.minor, "33");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod("k", json!({})))
        .await
        .unwrap();
    assert!(server.get("v1", "Pod", "from-kubeconfig", "k").is_some());
    // discovery endpoints kube uses for dynamic APIs
    let groups = client.list_api_groups().await.unwrap();
    assert!(groups.groups.iter().any(|g| g.name == "petdns.io"));
    let res = client
        .list_api_group_resources("petdns.io/v1alpha2")
        .await
        .unwrap();
    assert!(res.resources.iter().any(|r| r.name == "peersets/status"));

    // fail the next two requests with 500
    server.fail_next(2);
    for _ in 0..2 {
        let err = pods.get("k").await.unwrap_err();
        assert_eq!(api_code(&err), (500, "InternalError".into()));
    }
    pods.get("k").await.unwrap();
    // fail everything for a while
    server.fail_for(Duration::from_millis(300));
    assert!(pods.get("k").await.is_err());
    sleep(Duration::from_millis(350)).await;
    pods.get("k").await.unwrap();

    // pause holds requests until resumed
    server.pause();
    let p2 = pods.clone();
    let pending = tokio::spawn(async move { p2.get("k").await });
    sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished());
    server.resume();
    timeout(Duration::from_secs(3), pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // hooks: direct edits are visible through the API
    server.modify("v1", "Pod", "from-kubeconfig", "k", |p| {
        p["status"] = json!({"phase": "Running"})
    });
    let p = pods.get("k").await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Running"));
    server.insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}));
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(server.count_requests("GET", "/api/v1/nodes") >= 1);
}

/// Why petdns builds its client without kube's default retry: that client retries 503 by
/// itself (up to 15 times, from 5 ms doubling: minutes), so its caller, a watcher, sees
/// neither the error nor the outage. petdns's own client (`k8s::kube_client`) returns the
/// 503 at once, after one request.
#[tokio::test]
async fn kube_default_retry_hides_503s() {
    let server = FakeApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig, NS).unwrap();
    let ours: Api<Pod> = Api::default_namespaced(
        petdns::k8s::kube_client(Some(&kubeconfig))
            .await
            .expect("petdns's client"),
    );
    let default: Api<Pod> = Api::default_namespaced(server.client(NS));
    default
        .create(&PostParams::default(), &pod("a", json!({})))
        .await
        .unwrap();
    let path = format!("/api/v1/namespaces/{NS}/pods/a");

    server.unavailable();
    server.clear_requests();
    let err = ours.get("a").await.expect_err("503");
    assert_eq!(api_code(&err).0, 503, "{err:?}");
    assert_eq!(server.count_requests("GET", &path), 1);

    server.clear_requests();
    let pending = tokio::spawn(async move { default.get("a").await });
    sleep(Duration::from_millis(500)).await;
    assert!(!pending.is_finished(), "{:?}", pending.await);
    assert!(server.count_requests("GET", &path) > 1, "no retry seen");
    server.heal();
    let got = timeout(Duration::from_secs(10), pending)
        .await
        .expect("done");
    got.unwrap()
        .expect("the 503s were retried away, unseen by the caller");
}

#[tokio::test]
async fn going_down_refuses_connections_and_cuts_open_ones() {
    let server = FakeApiServer::start();
    server.set_bookmark_interval(Duration::from_millis(100));
    let addr = server.addr();
    let client = server.client(NS);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod("a", json!({})))
        .await
        .unwrap();
    let mut watch = pods
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        watch.try_next().await.unwrap(),
        Some(WatchEvent::Added(_))
    ));

    server.go_down();
    // The open watch is cut (it ends or fails), not left hanging.
    let end = timeout(Duration::from_secs(3), async {
        loop {
            match watch.try_next().await {
                Ok(Some(WatchEvent::Bookmark(_))) => continue,
                other => break other,
            }
        }
    })
    .await
    .expect("the open watch is cut");
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    // Connecting is refused, and a request fails at once instead of being held or retried.
    let refused = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let started = std::time::Instant::now();
    let err = pods.get("a").await.unwrap_err();
    assert!(!matches!(err, kube::Error::Api(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{err:?}");
    // Test hooks still edit the store meanwhile.
    server
        .modify("v1", "Pod", NS, "a", |p| {
            p["metadata"]["labels"] = json!({"changed": "while-down"})
        })
        .unwrap();

    server.come_up();
    assert_eq!(server.addr(), addr);
    let a = pods.get("a").await.unwrap();
    assert_eq!(
        a.metadata
            .labels
            .unwrap()
            .get("changed")
            .map(String::as_str),
        Some("while-down")
    );
}

#[tokio::test]
async fn runtime_finalizer_helper_uses_json_patch() {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{Event, finalizer};
    use std::sync::Arc;
    let server = FakeApiServer::start();
    let client = server.client(NS);
    let ar = peerset_resource();
    let peersets: Api<DynamicObject> = Api::default_namespaced_with(client, &ar);
    let ps = DynamicObject::new("fin", &ar).data(json!({"spec": {"statefulSet": "fin"}}));
    let ps = peersets.create(&PostParams::default(), &ps).await.unwrap();
    let fname = "petdns.io/cleanup";
    let run = |obj: DynamicObject| {
        let peersets = peersets.clone();
        async move {
            finalizer(&peersets, fname, Arc::new(obj), |ev| async move {
                Ok::<_, std::io::Error>(match ev {
                    Event::Apply(_) => Action::await_change(),
                    Event::Cleanup(_) => Action::await_change(),
                })
            })
            .await
            .unwrap();
        }
    };
    run(ps).await; // adds the finalizer (test null + add)
    let ps = peersets.get("fin").await.unwrap();
    assert_eq!(ps.metadata.finalizers, Some(vec![fname.to_string()]));
    peersets
        .delete("fin", &DeleteParams::default())
        .await
        .unwrap();
    let ps = peersets.get("fin").await.unwrap();
    assert!(ps.metadata.deletion_timestamp.is_some());
    run(ps).await; // cleanup: test + remove by index
    assert!(peersets.get_opt("fin").await.unwrap().is_none());
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.content_type.as_deref() == Some("application/json-patch+json"))
    );
}
