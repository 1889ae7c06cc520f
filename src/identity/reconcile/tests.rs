//! Table-driven tests of `reconcile` against identity.md and records.md ("published").
//!
//! Each table row names the rule it checks. Inputs come from `controller::fixtures`; expected
//! identities are `(ordinal, state, published, addresses)` rows in table order (declared
//! ordinals ascending, then condemned ones).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::*;
use crate::identity::fixtures::*;
use IdentityState::*;

/// `(ordinal, state, published, addresses)`.
type Row = (i32, IdentityState, bool, &'static [&'static str]);

struct Case {
    name: &'static str,
    set: StatefulSet,
    service: Option<Service>,
    pods: Vec<Pod>,
    nodes: Vec<Node>,
    want: Vec<Row>,
}

/// A case for `mk_statefulset("web", replicas)` governed by its matching headless Service.
fn case(name: &'static str, replicas: i32) -> Case {
    Case {
        name,
        set: mk_statefulset("web", replicas),
        service: Some(mk_governing_service("web")),
        pods: Vec::new(),
        nodes: Vec::new(),
        want: Vec::new(),
    }
}

impl Case {
    fn set(mut self, f: impl FnOnce(StatefulSet) -> StatefulSet) -> Self {
        self.set = f(self.set);
        self
    }
    fn service(mut self, service: Option<Service>) -> Self {
        self.service = service;
        self
    }
    fn pnra(self) -> Self {
        let service = self.service.clone().map(|s| s.publish_not_ready());
        self.service(service)
    }
    fn pods(mut self, pods: Vec<Pod>) -> Self {
        self.pods = pods;
        self
    }
    fn nodes(mut self, nodes: Vec<Node>) -> Self {
        self.nodes = nodes;
        self
    }
    fn want(mut self, rows: Vec<Row>) -> Self {
        self.want = rows;
        self
    }
    fn run(&self) -> IdentityTable {
        run(
            &self.set,
            self.service.as_ref(),
            &self.pods,
            self.nodes.clone(),
        )
    }
}

fn run(
    set: &StatefulSet,
    service: Option<&Service>,
    pods: &[Pod],
    nodes: Vec<Node>,
) -> IdentityTable {
    let refs: Vec<&Pod> = pods.iter().collect();
    reconcile(set, service, &refs, &node_map(nodes))
}

fn ips(addrs: &[&str]) -> Vec<IpAddr> {
    addrs
        .iter()
        .map(|a| a.parse().expect("test address"))
        .collect()
}

type GotRow = (i32, IdentityState, bool, Vec<IpAddr>);

fn rows_of(table: &IdentityTable) -> Vec<GotRow> {
    table
        .identities
        .iter()
        .map(|i| (i.ordinal, i.state, i.published, i.addresses.clone()))
        .collect()
}

fn expected(rows: &[Row]) -> Vec<GotRow> {
    rows.iter()
        .map(|(o, s, p, a)| (*o, *s, *p, ips(a)))
        .collect()
}

fn check(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in &cases {
        let got = rows_of(&c.run());
        let want = expected(&c.want);
        if got != want {
            failures.push(format!(
                "case {:?}:\n  want {want:?}\n   got {got:?}",
                c.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn condition<'a>(table: &'a IdentityTable, type_: &str) -> &'a Condition {
    table
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", table.conditions))
}

const NONE: &[&str] = &[];

#[test]
fn ordinals_follow_start_and_replicas() {
    check(vec![
        case("three replicas from 0", 3)
            .pods(vec![mk_pod("web", 0), mk_pod("web", 1), mk_pod("web", 2)])
            .want(vec![
                (0, Ready, true, &["192.0.2.10"]),
                (1, Ready, true, &["192.0.2.11"]),
                (2, Ready, true, &["192.0.2.12"]),
            ]),
        case("start 5 replicas 3 without pods: 5, 6, 7 missing", 3)
            .set(|s| s.with_start(5))
            .want(vec![
                (5, Missing, false, NONE),
                (6, Missing, false, NONE),
                (7, Missing, false, NONE),
            ]),
        case("start 5 replicas 3 with pods", 3)
            .set(|s| s.with_start(5))
            .pods(vec![mk_pod("web", 5), mk_pod("web", 6), mk_pod("web", 7)])
            .want(vec![
                (5, Ready, true, &["192.0.2.15"]),
                (6, Ready, true, &["192.0.2.16"]),
                (7, Ready, true, &["192.0.2.17"]),
            ]),
        case("explicit start 0 is the default", 2)
            .set(|s| s.with_start(0))
            .pods(vec![mk_pod("web", 0)])
            .want(vec![
                (0, Ready, true, &["192.0.2.10"]),
                (1, Missing, false, NONE),
            ]),
        case("replicas 0 declares nothing", 0).want(vec![]),
        case("replicas unset defaults to 1", 0)
            .set(|s| s.without_replicas())
            .pods(vec![mk_pod("web", 0)])
            .want(vec![(0, Ready, true, &["192.0.2.10"])]),
        case("replicas unset with start 3 declares ordinal 3", 0)
            .set(|s| s.without_replicas().with_start(3))
            .want(vec![(3, Missing, false, NONE)]),
        case("negative replicas declare nothing", -1).want(vec![]),
    ]);
}

#[test]
fn ordinals_in_the_table_metadata() {
    let t = case("", 3).set(|s| s.with_start(5)).run();
    assert_eq!(
        t.ordinals,
        Ordinals {
            start: 5,
            replicas: 3
        }
    );
    assert_eq!(t.declared(), 3);
    let t = case("", 0).set(|s| s.without_replicas()).run();
    assert_eq!(
        t.ordinals,
        Ordinals {
            start: 0,
            replicas: 1
        }
    );
    let t = case("", 0).run();
    assert_eq!(t.declared(), 0);
    assert!(t.identities.is_empty());
}

#[test]
fn parent_and_ordinal_follows_the_upstream_regex() {
    let cases: &[(&str, Option<(&str, i32)>)] = &[
        ("web-0", Some(("web", 0))),
        ("web-10", Some(("web", 10))),
        ("web-1-0", Some(("web-1", 0))),
        ("my-app-db-3", Some(("my-app-db", 3))),
        ("web-x", None),
        ("web-1x", None),
        ("web-", None),
        ("web", None),
        ("", None),
        ("web-+1", None),
        ("web- 1", None),
        ("web-2147483647", Some(("web", i32::MAX))),
        ("web-2147483648", None),
        ("web-99999999999999999999", None),
        ("-0", Some(("", 0))),
    ];
    for (name, want) in cases {
        assert_eq!(parent_and_ordinal(name), *want, "name {name:?}");
    }
}

#[test]
fn pod_names_select_members_by_greedy_parent() {
    // Every pod below carries the set's labels, so only the name decides membership.
    let as_web = |p: Pod| p.label("app", Some("web"));
    check(vec![
        case("web-1-0 belongs to web-1, not to web", 2)
            .pods(vec![mk_pod("web", 0), as_web(mk_pod("web-1", 0))])
            .want(vec![
                (0, Ready, true, &["192.0.2.10"]),
                (1, Missing, false, NONE),
            ]),
        case("web-10 belongs to web (condemned above replicas 2)", 2)
            .pods(vec![mk_pod("web", 10)])
            .want(vec![
                (0, Missing, false, NONE),
                (1, Missing, false, NONE),
                (10, Condemned, true, &["192.0.2.20"]),
            ]),
        case("web-x belongs to nobody", 1)
            .pods(vec![mk_pod("web", 0).named("web-x")])
            .want(vec![(0, Missing, false, NONE)]),
        case("an ordinal overflowing int32 is ignored", 1)
            .pods(vec![mk_pod("web", 0).named("web-2147483648")])
            .want(vec![(0, Missing, false, NONE)]),
        case("a set named like a prefix does not capture longer names", 1)
            .pods(vec![as_web(mk_pod("webx", 0))])
            .want(vec![(0, Missing, false, NONE)]),
    ]);

    // And from the other side: set web-1 owns web-1-0.
    let set = mk_statefulset("web-1", 1);
    let service = mk_governing_service("web-1");
    let t = run(&set, Some(&service), &[mk_pod("web-1", 0)], vec![]);
    assert_eq!(
        rows_of(&t),
        expected(&[(0, Ready, true, &["192.0.2.10"])]),
        "web-1-0 in set web-1"
    );
    assert_eq!(t.identities[0].pod, "web-1-0");
}

#[test]
fn each_state_is_derived_in_the_documented_order() {
    check(vec![
        // Missing
        case("Missing: declared, no pod", 2)
            .pods(vec![mk_pod("web", 0)])
            .want(vec![
                (0, Ready, true, &["192.0.2.10"]),
                (1, Missing, false, NONE),
            ]),
        case(
            "Missing is never published, even with publishNotReadyAddresses",
            1,
        )
        .pnra()
        .want(vec![(0, Missing, false, NONE)]),
        // Pending
        case("Pending: pod without an IP", 1)
            .pods(vec![mk_pod("web", 0).without_ip()])
            .want(vec![(0, Pending, false, NONE)]),
        case(
            "Pending without an IP is not published under publishNotReadyAddresses",
            1,
        )
        .pnra()
        .pods(vec![mk_pod("web", 0).without_ip().not_ready()])
        .want(vec![(0, Pending, false, NONE)]),
        case("Pending: only unparsable IPs count as no IP", 1)
            .pods(vec![mk_pod("web", 0).with_ips(&["not-an-ip"])])
            .want(vec![(0, Pending, false, NONE)]),
        case(
            "Pending: phase Failed keeps no address and is not published",
            1,
        )
        .pods(vec![mk_pod("web", 0).phase("Failed")])
        .want(vec![(0, Pending, false, NONE)]),
        case(
            "Pending: phase Succeeded keeps no address and is not published",
            1,
        )
        .pods(vec![mk_pod("web", 0).phase("Succeeded")])
        .want(vec![(0, Pending, false, NONE)]),
        case(
            "Pending: phase Failed under publishNotReadyAddresses is not published",
            1,
        )
        .pnra()
        .pods(vec![mk_pod("web", 0).phase("Failed").not_ready()])
        .want(vec![(0, Pending, false, NONE)]),
        case("Pending wins over NodeLost (no IP on a lost node)", 1)
            .pods(vec![mk_pod("web", 0).without_ip()])
            .nodes(vec![mk_node(NODE, false)])
            .want(vec![(0, Pending, false, NONE)]),
        // NodeLost
        case(
            "NodeLost: node Ready=False, pod still Ready keeps its record",
            1,
        )
        .pods(vec![mk_pod("web", 0)])
        .nodes(vec![mk_node(NODE, false)])
        .want(vec![(0, NodeLost, true, &["192.0.2.10"])]),
        case(
            "NodeLost: node Ready=Unknown, pod still Ready keeps its record",
            1,
        )
        .pods(vec![mk_pod("web", 0)])
        .nodes(vec![mk_node(NODE, true).ready_unknown()])
        .want(vec![(0, NodeLost, true, &["192.0.2.10"])]),
        case("NodeLost: pod Ready flipped to False loses its record", 1)
            .pods(vec![mk_pod("web", 0).not_ready()])
            .nodes(vec![mk_node(NODE, true).ready_unknown()])
            .want(vec![(0, NodeLost, false, &["192.0.2.10"])]),
        case("NodeLost: pod Ready=Unknown loses its record", 1)
            .pods(vec![mk_pod("web", 0).ready_status("Unknown")])
            .nodes(vec![mk_node(NODE, false)])
            .want(vec![(0, NodeLost, false, &["192.0.2.10"])]),
        case(
            "NodeLost: not-ready pod published under publishNotReadyAddresses",
            1,
        )
        .pnra()
        .pods(vec![mk_pod("web", 0).not_ready()])
        .nodes(vec![mk_node(NODE, false)])
        .want(vec![(0, NodeLost, true, &["192.0.2.10"])]),
        case("NodeLost: out-of-service taint on a Ready node", 1)
            .pods(vec![mk_pod("web", 0)])
            .nodes(vec![mk_node(NODE, true).out_of_service()])
            .want(vec![(0, NodeLost, true, &["192.0.2.10"])]),
        case("NodeLost wins over Terminating", 1)
            .pods(vec![mk_pod("web", 0).terminating()])
            .nodes(vec![mk_node(NODE, false)])
            .want(vec![(0, NodeLost, false, &["192.0.2.10"])]),
        case("a node absent from the map counts as healthy", 1)
            .pods(vec![mk_pod("web", 0).on_node("node-gone")])
            .nodes(vec![mk_node(NODE, false)])
            .want(vec![(0, Ready, true, &["192.0.2.10"])]),
        case("a pod on a healthy node is not NodeLost", 2)
            .pods(vec![mk_pod("web", 0), mk_pod("web", 1).on_node("node-b")])
            .nodes(vec![mk_node(NODE, true), mk_node("node-b", false)])
            .want(vec![
                (0, Ready, true, &["192.0.2.10"]),
                (1, NodeLost, true, &["192.0.2.11"]),
            ]),
        // Terminating
        case(
            "Terminating: Ready pod with deletionTimestamp is not published",
            1,
        )
        .pods(vec![mk_pod("web", 0).terminating()])
        .want(vec![(0, Terminating, false, &["192.0.2.10"])]),
        case("Terminating wins over NotReady", 1)
            .pods(vec![mk_pod("web", 0).terminating().not_ready()])
            .want(vec![(0, Terminating, false, &["192.0.2.10"])]),
        case("Terminating is published under publishNotReadyAddresses", 1)
            .pnra()
            .pods(vec![mk_pod("web", 0).terminating()])
            .want(vec![(0, Terminating, true, &["192.0.2.10"])]),
        // NotReady
        case("NotReady: Ready=False", 1)
            .pods(vec![mk_pod("web", 0).not_ready()])
            .want(vec![(0, NotReady, false, &["192.0.2.10"])]),
        case("NotReady: Ready=Unknown", 1)
            .pods(vec![mk_pod("web", 0).ready_status("Unknown")])
            .want(vec![(0, NotReady, false, &["192.0.2.10"])]),
        case("NotReady: no Ready condition at all", 1)
            .pods(vec![mk_pod("web", 0).without_conditions()])
            .want(vec![(0, NotReady, false, &["192.0.2.10"])]),
        case("NotReady is published under publishNotReadyAddresses", 1)
            .pnra()
            .pods(vec![mk_pod("web", 0).not_ready()])
            .want(vec![(0, NotReady, true, &["192.0.2.10"])]),
        // Ready
        case("Ready: IP and Ready=True", 1)
            .pods(vec![mk_pod("web", 0)])
            .want(vec![(0, Ready, true, &["192.0.2.10"])]),
        case(
            "Ready is shown whatever the phase (Pending phase with an IP)",
            1,
        )
        .pods(vec![mk_pod("web", 0).phase("Pending")])
        .want(vec![(0, Ready, true, &["192.0.2.10"])]),
        // Condemned
        case(
            "Condemned: ordinal above the range, still Ready, still published",
            2,
        )
        .pods(vec![mk_pod("web", 0), mk_pod("web", 1), mk_pod("web", 2)])
        .want(vec![
            (0, Ready, true, &["192.0.2.10"]),
            (1, Ready, true, &["192.0.2.11"]),
            (2, Condemned, true, &["192.0.2.12"]),
        ]),
        case("Condemned: ordinal below start", 2)
            .set(|s| s.with_start(5))
            .pods(vec![mk_pod("web", 4), mk_pod("web", 5), mk_pod("web", 6)])
            .want(vec![
                (5, Ready, true, &["192.0.2.15"]),
                (6, Ready, true, &["192.0.2.16"]),
                (4, Condemned, true, &["192.0.2.14"]),
            ]),
        case("Condemned: every pod when replicas is 0", 0)
            .pods(vec![mk_pod("web", 1), mk_pod("web", 0)])
            .want(vec![
                (0, Condemned, true, &["192.0.2.10"]),
                (1, Condemned, true, &["192.0.2.11"]),
            ]),
        case(
            "Condemned and terminating: state Condemned, not published",
            1,
        )
        .pods(vec![mk_pod("web", 0), mk_pod("web", 1).terminating()])
        .want(vec![
            (0, Ready, true, &["192.0.2.10"]),
            (1, Condemned, false, &["192.0.2.11"]),
        ]),
        case("Condemned and not ready: not published", 1)
            .pods(vec![mk_pod("web", 0), mk_pod("web", 1).not_ready()])
            .want(vec![
                (0, Ready, true, &["192.0.2.10"]),
                (1, Condemned, false, &["192.0.2.11"]),
            ]),
        case("Condemned without an IP: no address, not published", 1)
            .pnra()
            .pods(vec![mk_pod("web", 0), mk_pod("web", 1).without_ip()])
            .want(vec![
                (0, Ready, true, &["192.0.2.10"]),
                (1, Condemned, false, NONE),
            ]),
        case("Condemned and Failed: no address, not published", 1)
            .pnra()
            .pods(vec![mk_pod("web", 0), mk_pod("web", 1).phase("Failed")])
            .want(vec![
                (0, Ready, true, &["192.0.2.10"]),
                (1, Condemned, false, NONE),
            ]),
    ]);
}

#[test]
fn publish_rule_is_pnra_or_ready_and_not_terminating() {
    // (ready, terminating, publishNotReadyAddresses) -> published, for a pod with an IP on a
    // healthy node.
    let matrix = [
        (false, false, false, false),
        (false, false, true, true),
        (false, true, false, false),
        (false, true, true, true),
        (true, false, false, true),
        (true, false, true, true),
        (true, true, false, false),
        (true, true, true, true),
    ];
    for (ready, terminating, pnra, want) in matrix {
        let mut pod = mk_pod("web", 0).ready_status(if ready { "True" } else { "False" });
        if terminating {
            pod = pod.terminating();
        }
        let mut c = case("matrix", 1).pods(vec![pod]);
        if pnra {
            c = c.pnra();
        }
        let t = c.run();
        assert_eq!(
            t.identities[0].published, want,
            "ready={ready} terminating={terminating} publishNotReadyAddresses={pnra}"
        );
        assert_eq!(t.publish_not_ready_addresses, pnra);
        assert_eq!(
            t.identities[0].published_addresses().len(),
            usize::from(want)
        );
    }
}

#[test]
fn subdomain_and_hostname_must_match_to_publish() {
    struct SubCase {
        name: &'static str,
        pod: Pod,
        matches: bool,
    }
    let cases = vec![
        SubCase {
            name: "subdomain and hostname as the controller sets them",
            pod: mk_pod("web", 0),
            matches: true,
        },
        SubCase {
            name: "subdomain names another Service",
            pod: mk_pod("web", 0).subdomain(Some("other")),
            matches: false,
        },
        SubCase {
            name: "no subdomain",
            pod: mk_pod("web", 0).subdomain(None),
            matches: false,
        },
        SubCase {
            name: "hostname differs from the pod name",
            pod: mk_pod("web", 0).hostname(Some("web-9")),
            matches: false,
        },
        SubCase {
            name: "no hostname",
            pod: mk_pod("web", 0).hostname(None),
            matches: false,
        },
        SubCase {
            name: "mismatch also blocks publishNotReadyAddresses",
            pod: mk_pod("web", 0).subdomain(Some("other")).not_ready(),
            matches: false,
        },
    ];
    for c in cases {
        let t = case(c.name, 2)
            .pnra()
            .pods(vec![c.pod, mk_pod("web", 1)])
            .run();
        let id = &t.identities[0];
        // The state is still shown; only the answer is withheld.
        assert!(
            matches!(id.state, Ready | NotReady),
            "{}: {:?}",
            c.name,
            id.state
        );
        assert_eq!(id.addresses, ips(&["192.0.2.10"]), "{}", c.name);
        assert_eq!(id.published, c.matches, "{}: published", c.name);
        assert!(t.identities[1].published, "{}: web-1 unaffected", c.name);
        let cond = condition(&t, "SubdomainsMatch");
        if c.matches {
            assert_eq!(cond.status, ConditionStatus::True, "{}", c.name);
        } else {
            assert_eq!(cond.status, ConditionStatus::False, "{}", c.name);
            assert_eq!(cond.reason, "SubdomainMismatch", "{}", c.name);
            assert!(
                cond.message.contains("web-0"),
                "{}: {}",
                c.name,
                cond.message
            );
            assert!(
                !cond.message.contains("web-1"),
                "{}: {}",
                c.name,
                cond.message
            );
        }
        assert!(t.service_resolved(), "{}", c.name);
    }
}

#[test]
fn subdomain_mismatch_names_every_mismatched_pod() {
    let t = case("", 3)
        .pods(vec![
            mk_pod("web", 0).subdomain(Some("other")),
            mk_pod("web", 1),
            mk_pod("web", 2).hostname(Some("db-2")),
        ])
        .run();
    let cond = condition(&t, "SubdomainsMatch");
    assert_eq!(cond.reason, "SubdomainMismatch");
    assert!(cond.message.contains("web-0") && cond.message.contains("web-2"));
    assert!(!cond.message.contains("web-1"), "{}", cond.message);
    assert_eq!(t.published(), 1);
}

#[test]
fn service_misconfigurations_resolve_false_and_publish_nothing() {
    // (case name, set modifier, Service, expected ServiceResolved reason or None for True)
    type SetFn = fn(StatefulSet) -> StatefulSet;
    let keep: SetFn = |s| s;
    let cases: Vec<(&str, SetFn, Option<Service>, Option<&str>)> = vec![
        (
            "headless Service selecting the template",
            keep,
            Some(mk_governing_service("web")),
            None,
        ),
        (
            "selector is a subset of the template labels",
            |s| s.with_template_labels(&[("app", "web"), ("tier", "db")]),
            Some(mk_governing_service("web")),
            None,
        ),
        ("no Service object", keep, None, Some("ServiceNotFound")),
        (
            "set with empty serviceName",
            |s| s.with_service_name(""),
            None,
            Some("ServiceNotFound"),
        ),
        (
            "clusterIP allocated",
            keep,
            Some(mk_governing_service("web").not_headless()),
            Some("ServiceNotHeadless"),
        ),
        (
            "clusterIP unset (the API server would allocate one)",
            keep,
            Some(mk_governing_service("web").without_cluster_ip()),
            Some("ServiceNotHeadless"),
        ),
        (
            "no selector",
            keep,
            Some(mk_governing_service("web").without_selector()),
            Some("SelectorMismatch"),
        ),
        (
            "empty selector",
            keep,
            Some(mk_headless_service(SERVICE, &[])),
            Some("SelectorMismatch"),
        ),
        (
            "selector value differs from the template",
            keep,
            Some(mk_headless_service(SERVICE, &[("app", "db")])),
            Some("SelectorMismatch"),
        ),
        (
            "selector has a key the template lacks",
            keep,
            Some(mk_headless_service(
                SERVICE,
                &[("app", "web"), ("tier", "db")],
            )),
            Some("SelectorMismatch"),
        ),
        (
            "template without labels",
            |s| s.with_template_labels(&[]),
            Some(mk_governing_service("web")),
            Some("SelectorMismatch"),
        ),
    ];
    for (name, set_fn, service, reason) in cases {
        let set = set_fn(mk_statefulset("web", 2));
        let pods = vec![mk_pod("web", 0), mk_pod("web", 1), mk_pod("web", 2)];
        // publishNotReadyAddresses must not bypass the Service check either.
        let service = service.map(|s| s.publish_not_ready());
        let t = run(&set, service.as_ref(), &pods, vec![]);
        let cond = condition(&t, "ServiceResolved");
        match reason {
            None => {
                assert_eq!(cond.status, ConditionStatus::True, "{name}: {cond:?}");
                assert!(t.service_resolved(), "{name}");
                assert_eq!(t.published(), 3, "{name}");
            }
            Some(reason) => {
                assert_eq!(cond.status, ConditionStatus::False, "{name}: {cond:?}");
                assert_eq!(cond.reason, reason, "{name}: {cond:?}");
                assert!(!cond.message.is_empty(), "{name}");
                assert!(!t.service_resolved(), "{name}");
                assert_eq!(t.published(), 0, "{name}: nothing published");
                // States are still derived.
                let states: Vec<_> = t.identities.iter().map(|i| i.state).collect();
                assert_eq!(states, vec![Ready, Ready, Condemned], "{name}");
            }
        }
        assert_eq!(
            t.conditions
                .iter()
                .filter(|c| c.type_ == "ServiceResolved")
                .count(),
            1,
            "{name}: exactly one ServiceResolved condition"
        );
    }
}

#[test]
fn selector_membership_excludes_pods_the_set_does_not_select() {
    check(vec![
        case("web-0 with foreign labels is not a member", 2)
            .pods(vec![
                mk_pod("web", 0).label("app", Some("other")),
                mk_pod("web", 1),
            ])
            .want(vec![
                (0, Missing, false, NONE),
                (1, Ready, true, &["192.0.2.11"]),
            ]),
        case("web-0 without labels is not a member", 1)
            .pods(vec![mk_pod("web", 0).label("app", None)])
            .want(vec![(0, Missing, false, NONE)]),
        case("a foreign web-5 is not condemned", 1)
            .pods(vec![
                mk_pod("web", 0),
                mk_pod("web", 5).label("app", Some("other")),
            ])
            .want(vec![(0, Ready, true, &["192.0.2.10"])]),
        case("every matchLabels entry of the set selector must match", 2)
            .set(|s| {
                s.with_selector(&[("app", "web"), ("tier", "db")])
                    .with_template_labels(&[("app", "web"), ("tier", "db")])
            })
            .pods(vec![
                mk_pod("web", 0),
                mk_pod("web", 1).label("tier", Some("db")),
            ])
            .want(vec![
                (0, Missing, false, NONE),
                (1, Ready, true, &["192.0.2.11"]),
            ]),
        case("extra pod labels do not matter", 1)
            .pods(vec![mk_pod("web", 0).label("extra", Some("x"))])
            .want(vec![(0, Ready, true, &["192.0.2.10"])]),
    ]);
}

#[test]
fn selector_match_expressions() {
    let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "db")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let expr = |key: &str, op: &str, values: &[&str]| LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }]),
        ..Default::default()
    };
    let cases = [
        (
            "empty selector matches everything",
            LabelSelector::default(),
            true,
        ),
        ("In hit", expr("tier", "In", &["db", "cache"]), true),
        ("In miss", expr("tier", "In", &["cache"]), false),
        ("In on an absent key", expr("zone", "In", &["a"]), false),
        ("NotIn hit", expr("tier", "NotIn", &["db"]), false),
        ("NotIn miss", expr("tier", "NotIn", &["cache"]), true),
        (
            "NotIn on an absent key",
            expr("zone", "NotIn", &["a"]),
            true,
        ),
        ("Exists", expr("tier", "Exists", &[]), true),
        ("Exists absent", expr("zone", "Exists", &[]), false),
        ("DoesNotExist", expr("zone", "DoesNotExist", &[]), true),
        (
            "DoesNotExist present",
            expr("tier", "DoesNotExist", &[]),
            false,
        ),
        (
            "unknown operator matches nothing",
            expr("tier", "Gt", &["1"]),
            false,
        ),
    ];
    for (name, selector, want) in cases {
        assert_eq!(selector_matches(&selector, Some(&labels)), want, "{name}");
    }
    assert!(!selector_matches(&expr("tier", "Exists", &[]), None));
}

#[test]
fn pods_from_another_namespace_are_ignored() {
    check(vec![
        case("web-0 in namespace other", 2)
            .pods(vec![
                mk_pod("web", 0).in_namespace("other"),
                mk_pod("web", 1),
            ])
            .want(vec![
                (0, Missing, false, NONE),
                (1, Ready, true, &["192.0.2.11"]),
            ]),
        case("a condemned ordinal in another namespace", 1)
            .pods(vec![
                mk_pod("web", 0),
                mk_pod("web", 3).in_namespace("other"),
            ])
            .want(vec![(0, Ready, true, &["192.0.2.10"])]),
        case("set in namespace prod ignores default pods", 1)
            .set(|s| s.in_namespace("prod"))
            .pods(vec![mk_pod("web", 0)])
            .want(vec![(0, Missing, false, NONE)]),
        case("set in namespace prod takes prod pods", 1)
            .set(|s| s.in_namespace("prod"))
            .pods(vec![mk_pod("web", 0).in_namespace("prod")])
            .want(vec![(0, Ready, true, &["192.0.2.10"])]),
    ]);
}

#[test]
fn ports_resolve_target_ports_against_the_template() {
    let port = |name: Option<&str>, protocol: &str, port: u16| PortSpec {
        name: name.map(Into::into),
        protocol: protocol.into(),
        port,
    };
    let containers = || {
        vec![
            vec![
                container_port("web", 80, Some("TCP")),
                container_port("http", 8080, None),
                container_port("dns-udp", 5353, Some("UDP")),
            ],
            vec![container_port("metrics", 9090, Some("TCP"))],
        ]
    };
    let cases: Vec<(&str, Vec<ServicePort>, Vec<PortSpec>)> = vec![
        (
            "absent targetPort means the Service port",
            vec![svc_port(Some("web"), 80, None, Some("TCP"))],
            vec![port(Some("web"), "TCP", 80)],
        ),
        (
            "numeric targetPort",
            vec![svc_port(Some("web"), 80, numbered(8081), Some("TCP"))],
            vec![port(Some("web"), "TCP", 8081)],
        ),
        (
            "string-numeric targetPort reads as a number",
            vec![svc_port(Some("web"), 80, named("8082"), Some("TCP"))],
            vec![port(Some("web"), "TCP", 8082)],
        ),
        (
            "named targetPort resolved against container ports",
            vec![svc_port(Some("web"), 80, named("http"), Some("TCP"))],
            vec![port(Some("web"), "TCP", 8080)],
        ),
        (
            "named targetPort in a second container",
            vec![svc_port(
                Some("metrics"),
                9000,
                named("metrics"),
                Some("TCP"),
            )],
            vec![port(Some("metrics"), "TCP", 9090)],
        ),
        (
            "unresolvable named port is dropped, the others kept",
            vec![
                svc_port(Some("admin"), 81, named("admin"), Some("TCP")),
                svc_port(Some("web"), 80, named("web"), Some("TCP")),
            ],
            vec![port(Some("web"), "TCP", 80)],
        ),
        (
            "protocol defaults to TCP",
            vec![svc_port(Some("web"), 80, named("http"), None)],
            vec![port(Some("web"), "TCP", 8080)],
        ),
        (
            "UDP protocol kept",
            vec![svc_port(Some("dns"), 53, named("dns-udp"), Some("UDP"))],
            vec![port(Some("dns"), "UDP", 5353)],
        ),
        (
            "unnamed Service port",
            vec![svc_port(None, 80, None, None)],
            vec![port(None, "TCP", 80)],
        ),
        (
            "empty port name is no name",
            vec![svc_port(Some(""), 80, None, None)],
            vec![port(None, "TCP", 80)],
        ),
        (
            "target ports outside 1..=65535 are dropped",
            vec![
                svc_port(Some("zero"), 80, numbered(0), None),
                svc_port(Some("big"), 80, numbered(70000), None),
                svc_port(Some("web"), 80, None, None),
            ],
            vec![port(Some("web"), "TCP", 80)],
        ),
        (
            "Service order is kept",
            vec![
                svc_port(Some("metrics"), 9000, named("metrics"), None),
                svc_port(Some("web"), 80, None, None),
            ],
            vec![
                port(Some("metrics"), "TCP", 9090),
                port(Some("web"), "TCP", 80),
            ],
        ),
    ];
    for (name, service_ports, want) in cases {
        let t = case(name, 1)
            .set(|s| s.with_containers(containers()))
            .service(Some(mk_governing_service("web").with_ports(service_ports)))
            .run();
        assert_eq!(t.ports, want, "{name}");
    }

    // No Service: no ports.
    assert!(case("", 1).service(None).run().ports.is_empty());
}

#[test]
fn regression_named_target_port_must_match_the_service_protocol() {
    // FindPort (pkg/api/v1/pod) matches a named port on name *and* protocol: a UDP Service
    // port named after a TCP container port resolves to nothing and is dropped.
    let t = case("", 1)
        .set(|s| {
            s.with_containers(vec![vec![
                container_port("dns", 5353, Some("TCP")),
                container_port("web", 80, None),
            ]])
        })
        .service(Some(mk_governing_service("web").with_ports(vec![
            svc_port(Some("dns"), 53, named("dns"), Some("UDP")),
            svc_port(Some("web"), 80, named("web"), Some("TCP")),
        ])))
        .run();
    assert_eq!(
        t.ports,
        vec![PortSpec {
            name: Some("web".into()),
            protocol: "TCP".into(),
            port: 80,
        }]
    );
}

#[test]
fn regression_named_target_port_on_a_native_sidecar_resolves() {
    // FindPort also looks at init containers with restartPolicy Always (sidecars), and only
    // at those: a plain init container's port is gone by the time the pod serves.
    let t = case("", 1)
        .set(|s| {
            s.with_init_container(vec![container_port("proxy", 15001, None)], true)
                .with_init_container(vec![container_port("setup", 7000, None)], false)
        })
        .service(Some(mk_governing_service("web").with_ports(vec![
            svc_port(Some("proxy"), 80, named("proxy"), None),
            svc_port(Some("setup"), 81, named("setup"), None),
        ])))
        .run();
    assert_eq!(
        t.ports,
        vec![PortSpec {
            name: Some("proxy".into()),
            protocol: "TCP".into(),
            port: 15001,
        }]
    );
}

#[test]
fn claims_are_template_set_ordinal() {
    let t = case("", 2)
        .set(|s| s.with_claim_templates(&["www", "data"]))
        .pods(vec![mk_pod("web", 0), mk_pod("web", 2)])
        .run();
    let claims: Vec<(i32, IdentityState, Vec<String>)> = t
        .identities
        .iter()
        .map(|i| (i.ordinal, i.state, i.claims.clone()))
        .collect();
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        claims,
        vec![
            (0, Ready, v(&["www-web-0", "data-web-0"])),
            (1, Missing, v(&["www-web-1", "data-web-1"])),
            (2, Condemned, v(&["www-web-2", "data-web-2"])),
        ]
    );

    let t = case("", 1).pods(vec![mk_pod("web", 0)]).run();
    assert!(t.identities[0].claims.is_empty(), "no volumeClaimTemplates");

    let t = case("", 1)
        .set(|s| s.with_start(7).with_claim_templates(&["www"]))
        .run();
    assert_eq!(t.identities[0].claims, v(&["www-web-7"]));
}

#[test]
fn revision_comes_from_the_controller_revision_hash_label() {
    let t = case("", 3)
        .pods(vec![
            mk_pod("web", 0),
            mk_pod("web", 1).label(REVISION_LABEL, None),
        ])
        .run();
    let revisions: Vec<Option<String>> = t.identities.iter().map(|i| i.revision.clone()).collect();
    assert_eq!(revisions, vec![Some(revision("web")), None, None]);
}

#[test]
fn identity_names_node_and_hostname() {
    let t = case("", 2)
        .set(|s| s.with_start(3))
        .pods(vec![mk_pod("web", 3).on_node("node-b")])
        .run();
    let a = &t.identities[0];
    assert_eq!(
        (a.pod.as_str(), a.hostname.as_str(), a.node.as_deref()),
        ("web-3", "web-3", Some("node-b"))
    );
    let b = &t.identities[1];
    assert_eq!(
        (b.pod.as_str(), b.hostname.as_str(), b.node.as_deref()),
        ("web-4", "web-4", None),
        "a Missing identity still has its name"
    );
}

#[test]
fn dual_stack_addresses_are_deduplicated() {
    check(vec![
        case("podIP repeated in podIPs with an IPv6 address", 1)
            .pods(vec![
                mk_pod("web", 0).with_ips(&["192.0.2.10", "2001:db8::10"]),
            ])
            .want(vec![(0, Ready, true, &["192.0.2.10", "2001:db8::10"])]),
        case("IPv6-primary dual stack", 1)
            .pods(vec![
                mk_pod("web", 0).with_ips(&["2001:db8::10", "192.0.2.10"]),
            ])
            .want(vec![(0, Ready, true, &["2001:db8::10", "192.0.2.10"])]),
        case("podIP only, podIPs unset", 1)
            .pods(vec![
                mk_pod("web", 0).with_pod_ip_fields(Some("192.0.2.10"), None),
            ])
            .want(vec![(0, Ready, true, &["192.0.2.10"])]),
        case("podIPs only, podIP unset", 1)
            .pods(vec![mk_pod("web", 0).with_pod_ip_fields(
                None,
                Some(&["192.0.2.10", "2001:db8::10"]),
            )])
            .want(vec![(0, Ready, true, &["192.0.2.10", "2001:db8::10"])]),
        case("same IPv6 address spelled differently", 1)
            .pods(vec![mk_pod("web", 0).with_pod_ip_fields(
                Some("2001:DB8:0::10"),
                Some(&["2001:db8::10"]),
            )])
            .want(vec![(0, Ready, true, &["2001:db8::10"])]),
        case("unparsable entries are skipped", 1)
            .pods(vec![mk_pod("web", 0).with_ips(&["192.0.2.10", "bogus"])])
            .want(vec![(0, Ready, true, &["192.0.2.10"])]),
    ]);
}

#[test]
fn srv_priority_from_the_service_annotation() {
    let cases = [
        ("ordinal", SrvPriority::Ordinal),
        ("Ordinal", SrvPriority::Ordinal),
        ("uniform", SrvPriority::Uniform),
        ("", SrvPriority::Uniform),
        ("leader", SrvPriority::Uniform),
    ];
    for (value, want) in cases {
        let t = case("", 1)
            .service(Some(mk_governing_service("web").with_srv_priority(value)))
            .run();
        assert_eq!(t.srv_priority, want, "annotation {value:?}");
    }
    assert_eq!(case("", 1).run().srv_priority, SrvPriority::Uniform);
    assert_eq!(
        case("", 1).service(None).run().srv_priority,
        SrvPriority::Uniform
    );
}

#[test]
fn table_metadata_names_the_set_service_and_policy() {
    let t = case("", 1).pods(vec![mk_pod("web", 0)]).run();
    assert_eq!(t.namespace, NS);
    assert_eq!(t.stateful_set, "web");
    assert_eq!(t.service, SERVICE);
    assert_eq!(t.pod_management_policy, "OrderedReady");
    assert!(!t.publish_not_ready_addresses);
    assert_eq!(t.published(), 1);

    let t = case("", 1)
        .set(|s| s.with_pod_management_policy("Parallel"))
        .pnra()
        .run();
    assert_eq!(t.pod_management_policy, "Parallel");
    assert!(t.publish_not_ready_addresses);

    let t = case("", 1)
        .set(|s| s.with_service_name(""))
        .service(None)
        .run();
    assert_eq!(t.service, "");
}

#[test]
fn duplicate_pod_objects_give_one_identity() {
    let t = case("", 1)
        .pods(vec![mk_pod("web", 0), mk_pod("web", 0).not_ready()])
        .run();
    assert_eq!(
        rows_of(&t),
        expected(&[(0, Ready, true, &["192.0.2.10"])]),
        "first of the repeated objects is kept"
    );
}

/// A StatefulSet may declare up to 2^31 - 1 replicas; one identity per declared ordinal would
/// exhaust the controller's memory. The table declares the first `MAX_DECLARED` and says why.
#[test]
fn replicas_beyond_the_bound_declare_the_first_max_declared_ordinals() {
    let table = case("huge", i32::MAX).run();
    assert_eq!(table.ordinals.replicas, MAX_DECLARED);
    assert_eq!(table.identities.len(), MAX_DECLARED as usize);
    assert_eq!(
        table.identities.last().map(|i| i.ordinal),
        Some(MAX_DECLARED - 1)
    );
    let c = condition(&table, "ReplicasWithinBound");
    assert_eq!(c.status, ConditionStatus::False);
    assert_eq!(c.reason, "TooManyReplicas");
    assert!(c.message.contains("2147483647"), "{}", c.message);
    // At the bound nothing is said.
    let table = case("at bound", MAX_DECLARED).run();
    assert_eq!(table.identities.len(), MAX_DECLARED as usize);
    assert!(
        table
            .conditions
            .iter()
            .all(|c| c.type_ != "ReplicasWithinBound")
    );
}
