//! `reconcile(set, service, pods, nodes) -> IdentityTable`: the StatefulSet identity rules.
//!
//! Pure: no I/O, no clock, no randomness. Rules follow the upstream StatefulSet controller
//! (`stateful_set_utils.go`) and the EndpointSlice controller (`podToEndpoint`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::model::{
    Condition, ConditionStatus, Identity, IdentityState, IdentityTable, Ordinals, PortSpec,
    SrvPriority,
};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// Service annotation that turns on ordinal SRV priorities (`ordinal`).
pub const SRV_PRIORITY_ANNOTATION: &str = "petdns.io/srv-priority";
/// Joins several claim names in the identity TXT record.
pub const CLAIM_SEPARATOR: &str = ",";

/// The most ordinals petdns declares for one StatefulSet. Every declared ordinal becomes an
/// identity whether its pod exists or not, and the API allows `replicas` up to 2^31 - 1: without
/// a bound one such StatefulSet would exhaust the controller's memory. Beyond it, the first
/// `MAX_DECLARED` ordinals are declared and the table says so (`ReplicasWithinBound`).
pub const MAX_DECLARED: i32 = 10_000;

const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// The SRV priority a Service asks for with `petdns.io/srv-priority: ordinal|uniform`;
/// `None` when it does not say (then `--srv-priority` decides, [`SrvPriority::Uniform`] by
/// default).
pub fn srv_priority_annotation(service: Option<&Service>) -> Option<SrvPriority> {
    let value = service?
        .metadata
        .annotations
        .as_ref()?
        .get(SRV_PRIORITY_ANNOTATION)?;
    if value.eq_ignore_ascii_case("ordinal") {
        Some(SrvPriority::Ordinal)
    } else if value.eq_ignore_ascii_case("uniform") {
        Some(SrvPriority::Uniform)
    } else {
        None
    }
}

/// Splits a pod name with upstream's `(.*)-([0-9]+)$` (greedy parent, int32 ordinal).
/// `web-1-0` belongs to set `web-1`; a name that does not match gives `None`.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let dash = name.rfind('-')?;
    let (parent, digits) = (&name[..dash], &name[dash + 1..]);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ordinal: i32 = digits.parse().ok()?;
    Some((parent, ordinal))
}

/// Derives the identity table of one StatefulSet.
///
/// `pods` may hold any pods of the namespace: members are those whose name parses to this set
/// and whose labels the set's selector matches (upstream's adoption rule). `nodes` maps node
/// names to Node objects; a pod whose node is absent counts as on a healthy node.
pub fn reconcile(
    set: &StatefulSet,
    service: Option<&Service>,
    pods: &[&Pod],
    nodes: &BTreeMap<String, Node>,
) -> IdentityTable {
    let namespace = set
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let asked = spec.replicas.unwrap_or(1).max(0);
    let ordinals = Ordinals {
        start: spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0),
        replicas: asked.min(MAX_DECLARED),
    };
    let service_name = spec.service_name.clone().unwrap_or_default();
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone());
    let template_spec = spec.template.spec.as_ref();

    let (conditions, service_ok) =
        service_conditions(&set_name, &service_name, service, &template_labels);
    let publish_not_ready = service
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let srv_priority = srv_priority_annotation(service).unwrap_or_default();
    let ports = service
        .map(|s| resolve_ports(s, template_spec))
        .unwrap_or_default();
    let templates: Vec<String> = spec
        .volume_claim_templates
        .iter()
        .flatten()
        .filter_map(|c| c.metadata.name.clone())
        .collect();

    // Members: parent name matches, same namespace, selector matches. One pod per ordinal
    // (the API server's name uniqueness guarantees it; keep the first if input repeats one).
    let mut members: BTreeMap<i32, &Pod> = BTreeMap::new();
    for pod in pods {
        let Some(name) = pod.metadata.name.as_deref() else {
            continue;
        };
        if pod.metadata.namespace.as_deref().unwrap_or("default") != namespace {
            continue;
        }
        match parent_and_ordinal(name) {
            Some((parent, ordinal))
                if parent == set_name
                    && selector_matches(&spec.selector, pod.metadata.labels.as_ref()) =>
            {
                members.entry(ordinal).or_insert(pod);
            }
            _ => {}
        }
    }

    let mut identities = Vec::with_capacity(ordinals.replicas as usize);
    let mut mismatched = Vec::new();
    let ctx = Ctx {
        set_name: &set_name,
        service_name: &service_name,
        service_ok,
        publish_not_ready,
        templates: &templates,
        nodes,
    };
    for ordinal in ordinals.iter() {
        identities.push(match members.get(&ordinal) {
            Some(pod) => ctx.observe(ordinal, pod, false, &mut mismatched),
            None => ctx.missing(ordinal),
        });
    }
    for (&ordinal, pod) in members.iter().filter(|(o, _)| !ordinals.contains(**o)) {
        identities.push(ctx.observe(ordinal, pod, true, &mut mismatched));
    }

    let mut conditions = conditions;
    if asked > MAX_DECLARED {
        conditions.push(Condition {
            type_: "ReplicasWithinBound".into(),
            status: ConditionStatus::False,
            reason: "TooManyReplicas".into(),
            message: format!(
                "spec.replicas is {asked}; petdns declares at most {MAX_DECLARED} ordinals per \
                 StatefulSet, so only ordinals {} to {} have names",
                ordinals.start,
                ordinals.start as i64 + MAX_DECLARED as i64 - 1
            ),
        });
    }
    conditions.push(if mismatched.is_empty() {
        Condition {
            type_: "SubdomainsMatch".into(),
            status: ConditionStatus::True,
            reason: "SubdomainsMatch".into(),
            message: "every pod's subdomain names the governing Service".into(),
        }
    } else {
        Condition {
            type_: "SubdomainsMatch".into(),
            status: ConditionStatus::False,
            reason: "SubdomainMismatch".into(),
            message: format!(
                "pods {} do not have spec.subdomain {service_name:?} (and hostname = pod name), \
                 so they get no per-pod record; recreate them from the StatefulSet template",
                mismatched.join(", ")
            ),
        }
    });

    IdentityTable {
        namespace,
        stateful_set: set_name,
        service: service_name,
        ordinals,
        pod_management_policy: spec
            .pod_management_policy
            .clone()
            .unwrap_or_else(|| "OrderedReady".into()),
        publish_not_ready_addresses: publish_not_ready,
        srv_priority,
        ports,
        identities,
        conditions,
    }
}

struct Ctx<'a> {
    set_name: &'a str,
    service_name: &'a str,
    service_ok: bool,
    publish_not_ready: bool,
    templates: &'a [String],
    nodes: &'a BTreeMap<String, Node>,
}

impl Ctx<'_> {
    fn claims(&self, ordinal: i32) -> Vec<String> {
        self.templates
            .iter()
            .map(|t| format!("{t}-{}-{ordinal}", self.set_name))
            .collect()
    }

    fn missing(&self, ordinal: i32) -> Identity {
        let pod = format!("{}-{ordinal}", self.set_name);
        Identity {
            ordinal,
            hostname: pod.clone(),
            pod,
            addresses: Vec::new(),
            state: IdentityState::Missing,
            published: false,
            node: None,
            revision: None,
            claims: self.claims(ordinal),
        }
    }

    fn observe(
        &self,
        ordinal: i32,
        pod: &Pod,
        condemned: bool,
        mismatched: &mut Vec<String>,
    ) -> Identity {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let addresses = pod_addresses(pod);
        let node = spec.and_then(|s| s.node_name.clone());
        let terminal = matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Failed") | Some("Succeeded")
        );
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let ready = pod_ready(pod);
        let node_lost = node
            .as_deref()
            .and_then(|n| self.nodes.get(n))
            .is_some_and(node_lost);

        let state = if condemned {
            IdentityState::Condemned
        } else if addresses.is_empty() || terminal {
            IdentityState::Pending
        } else if node_lost {
            IdentityState::NodeLost
        } else if terminating {
            IdentityState::Terminating
        } else if !ready {
            IdentityState::NotReady
        } else {
            IdentityState::Ready
        };

        // The EndpointSlice rule: a hostname is only published under the Service named by the
        // pod's subdomain, and only when the pod has a hostname.
        let hostname = spec.and_then(|s| s.hostname.clone()).unwrap_or_default();
        let subdomain = spec.and_then(|s| s.subdomain.as_deref()).unwrap_or("");
        let names_match =
            !self.service_name.is_empty() && subdomain == self.service_name && hostname == name;
        // Without a governing Service there is no subdomain to match (ServiceNotFound says so).
        if !names_match && !self.service_name.is_empty() {
            mismatched.push(name.clone());
        }
        let published = self.service_ok
            && names_match
            && !addresses.is_empty()
            && !terminal
            && (self.publish_not_ready || (ready && !terminating));

        Identity {
            ordinal,
            hostname: if hostname.is_empty() {
                name.clone()
            } else {
                hostname
            },
            pod: name,
            addresses: if terminal { Vec::new() } else { addresses },
            state,
            published,
            node,
            revision: pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_LABEL).cloned()),
            claims: self.claims(ordinal),
        }
    }
}

fn service_conditions(
    set_name: &str,
    service_name: &str,
    service: Option<&Service>,
    template_labels: &Option<BTreeMap<String, String>>,
) -> (Vec<Condition>, bool) {
    let fail = |reason: &str, message: String| {
        (
            vec![Condition {
                type_: "ServiceResolved".into(),
                status: ConditionStatus::False,
                reason: reason.into(),
                message,
            }],
            false,
        )
    };
    let Some(service) = service else {
        return if service_name.is_empty() {
            fail(
                "ServiceNotFound",
                format!(
                    "StatefulSet {set_name} has no spec.serviceName; set it to a headless \
                     Service so its pods get DNS names"
                ),
            )
        } else {
            fail(
                "ServiceNotFound",
                format!(
                    "governing Service {service_name:?} does not exist in this namespace; \
                     create it with clusterIP: None"
                ),
            )
        };
    };
    let spec = service.spec.clone().unwrap_or_default();
    if spec.cluster_ip.as_deref() != Some("None") {
        return fail(
            "ServiceNotHeadless",
            format!(
                "Service {service_name:?} has clusterIP {:?}; per-pod names need a headless \
                 Service (clusterIP: None), which must be recreated to change",
                spec.cluster_ip.unwrap_or_default()
            ),
        );
    }
    match spec.selector.as_ref().filter(|s| !s.is_empty()) {
        None => fail(
            "SelectorMismatch",
            format!("Service {service_name:?} has no selector, so it selects no pod of {set_name}"),
        ),
        Some(selector) => {
            let labels = template_labels.clone().unwrap_or_default();
            let missing: Vec<String> = selector
                .iter()
                .filter(|(k, v)| labels.get(*k) != Some(v))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if missing.is_empty() {
                (
                    vec![Condition {
                        type_: "ServiceResolved".into(),
                        status: ConditionStatus::True,
                        reason: "ServiceResolved".into(),
                        message: format!("headless Service {service_name:?} selects the pods"),
                    }],
                    true,
                )
            } else {
                fail(
                    "SelectorMismatch",
                    format!(
                        "Service {service_name:?} selects {} but the pod template of {set_name} \
                         does not carry it; align the Service selector with the template labels",
                        missing.join(",")
                    ),
                )
            }
        }
    }
}

/// Service ports with the target port resolved against the pod template's container ports.
/// A named target port is looked up, with the Service port's protocol, in the containers and
/// then the sidecars (init containers with `restartPolicy: Always`), as the EndpointSlice
/// controller's `FindPort` does; one that none declares is dropped, as that controller drops it.
fn resolve_ports(service: &Service, template: Option<&PodSpec>) -> Vec<PortSpec> {
    let mut out = Vec::new();
    for p in service.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
        let protocol = p.protocol.as_deref().unwrap_or("TCP");
        let port = match &p.target_port {
            None => Some(p.port),
            Some(IntOrString::Int(n)) => Some(*n),
            Some(IntOrString::String(name)) => match name.parse::<i32>() {
                Ok(n) => Some(n),
                Err(_) => template.and_then(|t| {
                    // Containers, then native sidecars (init containers that keep running).
                    let sidecars = t
                        .init_containers
                        .iter()
                        .flatten()
                        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
                    t.containers
                        .iter()
                        .chain(sidecars)
                        .flat_map(|c| c.ports.iter().flatten())
                        .find(|cp| {
                            cp.name.as_deref() == Some(name.as_str())
                                && cp.protocol.as_deref().unwrap_or("TCP") == protocol
                        })
                        .map(|cp| cp.container_port)
                }),
            },
        };
        if let Some(port) = port.and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0) {
            out.push(PortSpec {
                name: p.name.clone().filter(|n| !n.is_empty()),
                protocol: protocol.into(),
                port,
            });
        }
    }
    out
}

fn pod_addresses(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let ips = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .chain(status.pod_ip.as_deref());
    for ip in ips {
        if let Ok(ip) = ip.trim().parse::<IpAddr>()
            && seen.insert(ip)
        {
            out.push(ip);
        }
    }
    out
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

pub fn node_lost(node: &Node) -> bool {
    let not_ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status != "True");
    let out_of_service = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT));
    not_ready || out_of_service
}

/// `matchLabels` and `matchExpressions` of a LabelSelector against a label map. An empty
/// selector matches everything, as in Kubernetes.
fn selector_matches(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or(&[]);
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

#[cfg(test)]
mod tests;
