//! `petdns explain NAME`: what a name answers and why, or why not, with the fix.
//!
//! Works on identity tables only, so it explains the manifests (offline) and the cluster's
//! PeerSets (live) alike, with the same reasons the PeerSet conditions carry.

use std::fmt::Write as _;

use super::model::{ConditionStatus, Identity, IdentityState, IdentityTable};
use super::reconcile::parent_and_ordinal;

/// What the name is, once the zone and the `svc` label are taken off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `<svc>.<ns>`
    Service { namespace: String, service: String },
    /// `<pod>.<svc>.<ns>`
    Pod {
        namespace: String,
        service: String,
        pod: String,
    },
    /// `_<port>._<proto>.<svc>.<ns>`
    Port {
        namespace: String,
        service: String,
        port: String,
        protocol: String,
    },
}

/// Parses a full name (`web-0.nginx.default.svc.cluster.local`), a short one
/// (`web-0.nginx.default`, `nginx.default`) or a bare Service name (`nginx`, namespace
/// `default`).
pub fn parse_target(name: &str, zone: &str) -> Result<Target, String> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    let rel = match name.strip_suffix(&format!(".svc.{zone}")) {
        Some(rel) => rel.to_string(),
        None if name.ends_with(&zone) => {
            return Err(format!(
                "{name} is not under svc.{zone}: petdns answers <pod>.<service>.<namespace>.svc.{zone} names"
            ));
        }
        None => name.clone(),
    };
    let labels: Vec<&str> = rel.split('.').filter(|l| !l.is_empty()).collect();
    let s = |x: &str| x.to_string();
    match labels.as_slice() {
        [service] => Ok(Target::Service {
            namespace: s("default"),
            service: s(service),
        }),
        [service, ns] => Ok(Target::Service {
            namespace: s(ns),
            service: s(service),
        }),
        [pod, service, ns] => Ok(Target::Pod {
            namespace: s(ns),
            service: s(service),
            pod: s(pod),
        }),
        [port, proto, service, ns] => Ok(Target::Port {
            namespace: s(ns),
            service: s(service),
            port: s(port.trim_start_matches('_')),
            protocol: s(proto.trim_start_matches('_')),
        }),
        _ => Err(format!(
            "cannot read {name:?} as a pod, Service or port name"
        )),
    }
}

/// The explanation of `target` over `tables`, as lines of text. The first line is the verdict.
pub fn explain(target: &Target, tables: &[IdentityTable]) -> String {
    let mut out = String::new();
    match target {
        Target::Service { namespace, service } => {
            explain_service(&mut out, namespace, service, tables)
        }
        Target::Pod {
            namespace,
            service,
            pod,
        } => explain_pod(&mut out, namespace, service, pod, tables),
        Target::Port {
            namespace,
            service,
            port,
            protocol,
        } => {
            explain_service(&mut out, namespace, service, tables);
            let governed = governed(namespace, service, tables);
            let has = governed.iter().any(|t| {
                t.ports.iter().any(|p| {
                    p.name
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(port))
                        && p.protocol.eq_ignore_ascii_case(protocol)
                })
            });
            if !governed.is_empty() && !has {
                let known: Vec<String> = governed
                    .iter()
                    .flat_map(|t| t.ports.iter())
                    .filter_map(|p| {
                        p.name
                            .as_ref()
                            .map(|n| format!("_{n}._{}", p.protocol.to_ascii_lowercase()))
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "- Service {service} has no port named {port:?} with protocol {}: the name is NXDOMAIN. Named ports: {}.",
                    protocol.to_ascii_uppercase(),
                    if known.is_empty() {
                        "none (SRV needs a port name)".into()
                    } else {
                        known.join(", ")
                    }
                );
            }
        }
    }
    out
}

fn governed<'t>(
    namespace: &str,
    service: &str,
    tables: &'t [IdentityTable],
) -> Vec<&'t IdentityTable> {
    tables
        .iter()
        .filter(|t| t.namespace == namespace && t.service == service)
        .collect()
}

fn conditions(out: &mut String, table: &IdentityTable) -> bool {
    let mut bad = false;
    for c in table
        .conditions
        .iter()
        .filter(|c| c.status == ConditionStatus::False)
    {
        bad = true;
        let _ = writeln!(out, "- {}: {}", c.reason, c.message);
    }
    bad
}

fn explain_service(out: &mut String, namespace: &str, service: &str, tables: &[IdentityTable]) {
    let governed = governed(namespace, service, tables);
    if governed.is_empty() {
        let _ = writeln!(
            out,
            "{service}.{namespace}: NXDOMAIN, no StatefulSet is governed by this Service."
        );
        let elsewhere: Vec<String> = tables
            .iter()
            .filter(|t| t.service == service && t.namespace != namespace)
            .map(|t| format!("{}/{}", t.namespace, t.stateful_set))
            .collect();
        if !elsewhere.is_empty() {
            let _ = writeln!(
                out,
                "- StatefulSets in other namespaces name it: {}. Query <service>.<their namespace>.svc.",
                elsewhere.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "- petdns answers for headless Services named by a StatefulSet's spec.serviceName. Set serviceName: {service} on the StatefulSet (it is immutable: recreate the set), or query the Service your StatefulSet names."
        );
        return;
    }
    let published: usize = governed.iter().map(|t| t.published()).sum();
    let declared: usize = governed.iter().map(|t| t.declared()).sum();
    let verdict = if published > 0 {
        format!(
            "answers {published} published identit{} ({published}/{declared} published)",
            if published == 1 { "y" } else { "ies" }
        )
    } else if declared > 0 && governed.iter().all(|t| t.service_resolved()) {
        format!(
            "NODATA: {declared} identities are declared but none is published yet (petdns answers NODATA, not NXDOMAIN, so nothing caches a false miss)"
        )
    } else {
        "NXDOMAIN: nothing is declared or the Service is misconfigured".to_string()
    };
    let _ = writeln!(out, "{service}.{namespace}: {verdict}.");
    for t in governed {
        let _ = writeln!(
            out,
            "StatefulSet {}/{} ({} of {} declared published):",
            t.namespace,
            t.stateful_set,
            t.published(),
            t.declared()
        );
        if conditions(out, t) {
            continue;
        }
        for i in t.identities.iter().filter(|i| !i.published) {
            let _ = writeln!(out, "- {}: {}", i.pod, why_unpublished(t, i));
        }
        if t.identities.iter().all(|i| i.published) {
            let _ = writeln!(out, "- every identity is published");
        }
    }
}

fn explain_pod(
    out: &mut String,
    namespace: &str,
    service: &str,
    pod: &str,
    tables: &[IdentityTable],
) {
    let Some((set_name, ordinal)) = parent_and_ordinal(pod) else {
        let _ = writeln!(
            out,
            "{pod}.{service}.{namespace}: NXDOMAIN, {pod:?} is not a StatefulSet pod name (<set>-<ordinal>)."
        );
        return;
    };
    let Some(table) = tables
        .iter()
        .find(|t| t.namespace == namespace && t.stateful_set == set_name)
    else {
        let _ = writeln!(
            out,
            "{pod}.{service}.{namespace}: NXDOMAIN, there is no StatefulSet {set_name} in namespace {namespace}."
        );
        let same: Vec<&str> = tables
            .iter()
            .filter(|t| t.stateful_set == set_name)
            .map(|t| t.namespace.as_str())
            .collect();
        if !same.is_empty() {
            let _ = writeln!(
                out,
                "- A StatefulSet {set_name} exists in: {}.",
                same.join(", ")
            );
        }
        return;
    };
    if table.service != service {
        let _ = writeln!(
            out,
            "{pod}.{service}.{namespace}: NXDOMAIN, StatefulSet {set_name} is governed by Service {:?}, not {service:?}.",
            table.service
        );
        let _ = writeln!(
            out,
            "- Per-pod names live under the governing Service only (the pod's subdomain): query {pod}.{}.{namespace}.svc.",
            table.service
        );
        return;
    }
    let identity = table.identities.iter().find(|i| i.ordinal == ordinal);
    let declared = table.ordinals.contains(ordinal);
    match identity {
        Some(i) if i.published => {
            let addrs: Vec<String> = i.addresses.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "{pod}.{service}.{namespace}: answers {} ({}).",
                addrs.join(", "),
                i.state
            );
            if i.state == IdentityState::Condemned {
                let _ = writeln!(
                    out,
                    "- ordinal {ordinal} is outside the declared range {}: the pod is being scaled down and its name goes with it.",
                    range(table)
                );
            }
            if i.state == IdentityState::NodeLost {
                let _ = writeln!(
                    out,
                    "- its node {} is not Ready; the record stays while the pod's Ready condition is True.",
                    i.node.as_deref().unwrap_or("?")
                );
            }
        }
        Some(i) => {
            // A misconfigured Service contributes no names at all (see the conditions).
            let verdict = if declared && table.service_resolved() {
                "NODATA (declared, nothing published)"
            } else {
                "NXDOMAIN"
            };
            let _ = writeln!(out, "{pod}.{service}.{namespace}: {verdict}.");
            if !conditions(out, table) {
                let _ = writeln!(out, "- {}", why_unpublished(table, i));
            }
        }
        None => {
            let _ = writeln!(
                out,
                "{pod}.{service}.{namespace}: NXDOMAIN, ordinal {ordinal} is outside the declared range {} of StatefulSet {set_name}.",
                range(table)
            );
            let _ = writeln!(
                out,
                "- Scale the StatefulSet so that start + replicas > {ordinal} (kubectl scale statefulset {set_name} --replicas=N)."
            );
        }
    }
}

fn range(t: &IdentityTable) -> String {
    format!(
        "[{}, {})",
        t.ordinals.start,
        t.ordinals.start as i64 + t.ordinals.replicas as i64
    )
}

/// Why a declared (or condemned) identity is not published, and what would change it.
fn why_unpublished(table: &IdentityTable, i: &Identity) -> String {
    let pnra = format!(
        "set publishNotReadyAddresses: true on Service {} to publish pods before they are Ready (peer discovery during bootstrap)",
        table.service
    );
    match i.state {
        IdentityState::Missing => format!(
            "no Pod {} exists: the StatefulSet controller has not created it (OrderedReady waits for lower ordinals to be Ready) or it was deleted",
            i.pod
        ),
        IdentityState::Pending => format!(
            "Pod {} has no IP yet (scheduling, image pull or a terminal phase)",
            i.pod
        ),
        IdentityState::NotReady => format!(
            "Pod {} is not Ready: its name answers NODATA until its readiness probe passes; or {pnra}",
            i.pod
        ),
        IdentityState::Terminating => format!(
            "Pod {} is terminating (deletionTimestamp set), so it left DNS; with publishNotReadyAddresses: true on Service {} a terminating pod stays published until it is gone",
            i.pod, table.service
        ),
        IdentityState::NodeLost => format!(
            "Pod {} is on node {}, which is NotReady or out of service, and the pod is no longer Ready; it returns when the node does, or after the pod is replaced (delete the Node or add the out-of-service taint once it is truly down)",
            i.pod,
            i.node.as_deref().unwrap_or("?")
        ),
        IdentityState::Ready => format!(
            "Pod {} is Ready but its spec.subdomain/hostname do not name Service {} (SubdomainMismatch): recreate it from the StatefulSet template",
            i.pod, table.service
        ),
        IdentityState::Condemned => format!(
            "Pod {} is outside the declared range {} (scale-down in progress) and not Ready",
            i.pod,
            range(table)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::fixtures::*;
    use crate::identity::reconcile;

    /// `web` with 3 replicas governed by `nginx`; pods given.
    fn table(
        pods: &[k8s_openapi::api::core::v1::Pod],
        service: Option<k8s_openapi::api::core::v1::Service>,
    ) -> IdentityTable {
        let set = mk_statefulset("web", 3);
        let refs: Vec<&_> = pods.iter().collect();
        reconcile(&set, service.as_ref(), &refs, &Default::default())
    }

    fn svc() -> Option<k8s_openapi::api::core::v1::Service> {
        Some(mk_governing_service("web"))
    }

    fn pod_target(pod: &str) -> Target {
        parse_target(
            &format!("{pod}.nginx.default.svc.cluster.local."),
            "cluster.local",
        )
        .unwrap()
    }

    #[test]
    fn names_parse_in_full_short_and_bare_forms() {
        let pod = Target::Pod {
            namespace: "default".into(),
            service: "nginx".into(),
            pod: "web-0".into(),
        };
        assert_eq!(
            parse_target("web-0.nginx.default.svc.cluster.local", "cluster.local."),
            Ok(pod.clone())
        );
        assert_eq!(
            parse_target("WEB-0.nginx.default", "cluster.local"),
            Ok(pod)
        );
        let svc = Target::Service {
            namespace: "default".into(),
            service: "nginx".into(),
        };
        assert_eq!(parse_target("nginx", "cluster.local"), Ok(svc.clone()));
        assert_eq!(
            parse_target("nginx.default.svc.cluster.local.", "cluster.local"),
            Ok(svc)
        );
        assert!(
            matches!(parse_target("_web._tcp.nginx.default", "cluster.local"), Ok(Target::Port { port, protocol, .. }) if port == "web" && protocol == "tcp")
        );
        assert!(parse_target("foo.cluster.local", "cluster.local").is_err());
    }

    #[test]
    fn a_not_ready_pod_is_nodata_with_the_publish_not_ready_fix() {
        let t = table(&[mk_pod("web", 0), mk_pod("web", 1).not_ready()], svc());
        let text = explain(&pod_target("web-1"), &[t]);
        assert!(text.starts_with("web-1.nginx.default: NODATA"), "{text}");
        assert!(
            text.contains("is not Ready") && text.contains("publishNotReadyAddresses: true"),
            "{text}"
        );
    }

    #[test]
    fn each_state_has_its_reason() {
        let t = table(
            &[
                mk_pod("web", 0).terminating(),
                mk_pod("web", 1)
                    .phase("Pending")
                    .with_pod_ip_fields(None, None),
            ],
            svc(),
        );
        let tables = [t];
        assert!(explain(&pod_target("web-0"), &tables).contains("terminating"));
        assert!(explain(&pod_target("web-1"), &tables).contains("has no IP yet"));
        assert!(explain(&pod_target("web-2"), &tables).contains("no Pod web-2 exists"));
        let out_of_range = explain(&pod_target("web-5"), &tables);
        assert!(
            out_of_range.contains("outside the declared range [0, 3)"),
            "{out_of_range}"
        );
    }

    #[test]
    fn service_problems_give_the_condition_reason() {
        let missing = table(&[mk_pod("web", 0)], None);
        let text = explain(&pod_target("web-0"), &[missing]);
        assert!(text.contains("ServiceNotFound"), "{text}");
        let cluster_ip = table(
            &[mk_pod("web", 0)],
            Some(mk_governing_service("web").not_headless()),
        );
        let text = explain(
            &Target::Service {
                namespace: "default".into(),
                service: "nginx".into(),
            },
            &[cluster_ip],
        );
        assert!(
            text.contains("ServiceNotHeadless") && text.contains("NXDOMAIN"),
            "{text}"
        );
    }

    #[test]
    fn a_pod_under_the_wrong_service_names_the_governing_one() {
        let t = table(&[mk_pod("web", 0)], svc());
        let target = parse_target("web-0.other.default", "cluster.local").unwrap();
        let text = explain(&target, &[t]);
        assert!(
            text.contains("governed by Service \"nginx\"")
                && text.contains("web-0.nginx.default.svc"),
            "{text}"
        );
    }

    #[test]
    fn a_service_with_no_statefulset_says_so() {
        let t = table(&[mk_pod("web", 0)], svc());
        let text = explain(
            &Target::Service {
                namespace: "default".into(),
                service: "redis".into(),
            },
            &[t],
        );
        assert!(
            text.contains("no StatefulSet is governed by this Service"),
            "{text}"
        );
    }
}
