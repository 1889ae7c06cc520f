//! Test builders for the objects `reconcile` reads, shaped as the StatefulSet controller and a
//! kubelet would make them.
//!
//! Everything is obviously fake: namespace `default`, set `web`, governing Service `nginx`,
//! nodes `node-a`/`node-b`, pod addresses from 192.0.2.0/24 and 2001:db8::/32 (RFC 5737 /
//! RFC 3849), cluster IPs from 198.51.100.0/24. Start from `mk_statefulset("web", 3)`,
//! `mk_headless_service("nginx", &[("app", "web")])`, `mk_pod("web", 0)` and
//! `mk_node("node-a", true)`, then adjust with the chainable modifiers of the `*Ext` traits.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetOrdinals, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, NodeCondition, NodeSpec, NodeStatus, PersistentVolumeClaim,
    Pod, PodCondition, PodIP, PodSpec, PodStatus, PodTemplateSpec, Service, ServicePort,
    ServiceSpec, Taint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::reconcile::{POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL, SRV_PRIORITY_ANNOTATION};

/// Namespace of every fixture unless moved with `in_namespace`.
pub(crate) const NS: &str = "default";
/// The governing Service every `mk_statefulset` names and every `mk_pod` is a subdomain of.
pub(crate) const SERVICE: &str = "nginx";
/// The node every `mk_pod` is scheduled on.
pub(crate) const NODE: &str = "node-a";

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The revision hash label value every `mk_pod` of `set` carries.
pub(crate) fn revision(set: &str) -> String {
    format!("{set}-6d8f5c")
}

/// The default address of ordinal `n`: `192.0.2.(10 + n)` (wrapping inside the /24).
pub(crate) fn ip_for(ordinal: i32) -> String {
    format!("192.0.2.{}", 10 + ordinal.rem_euclid(240))
}

/// A StatefulSet `name` in `default` with `replicas`, governing Service `nginx`, selector and
/// template label `app=<name>`, one container `nginx` with port `web` 80/TCP.
pub(crate) fn mk_statefulset(name: &str, replicas: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(SERVICE.into()),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", name)])),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", name)])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "nginx".into(),
                        ports: Some(vec![container_port("web", 80, None)]),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// A container port; `protocol: None` means unset (TCP).
pub(crate) fn container_port(name: &str, port: i32, protocol: Option<&str>) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: protocol.map(Into::into),
        ..Default::default()
    }
}

/// Modifiers for `mk_statefulset`.
pub(crate) trait StatefulSetExt: Sized {
    fn spec_mut(&mut self) -> &mut StatefulSetSpec;

    /// `spec.ordinals.start`.
    fn with_start(mut self, start: i32) -> Self {
        self.spec_mut().ordinals = Some(StatefulSetOrdinals { start: Some(start) });
        self
    }

    /// `spec.replicas` left unset (the API default is 1).
    fn without_replicas(mut self) -> Self {
        self.spec_mut().replicas = None;
        self
    }

    /// `spec.serviceName`; `""` for a set that names no Service.
    fn with_service_name(mut self, service: &str) -> Self {
        self.spec_mut().service_name = Some(service.into());
        self
    }

    fn with_pod_management_policy(mut self, policy: &str) -> Self {
        self.spec_mut().pod_management_policy = Some(policy.into());
        self
    }

    /// One `volumeClaimTemplates` entry per name.
    fn with_claim_templates(mut self, names: &[&str]) -> Self {
        self.spec_mut().volume_claim_templates = Some(
            names
                .iter()
                .map(|n| PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some(n.to_string()),
                        ..Default::default()
                    },
                    ..Default::default()
                })
                .collect(),
        );
        self
    }

    /// Replaces the pod template's labels (the set's selector is left alone).
    fn with_template_labels(mut self, pairs: &[(&str, &str)]) -> Self {
        self.spec_mut()
            .template
            .metadata
            .get_or_insert_with(Default::default)
            .labels = Some(labels(pairs));
        self
    }

    /// Replaces the set's `selector.matchLabels`.
    fn with_selector(mut self, pairs: &[(&str, &str)]) -> Self {
        self.spec_mut().selector = LabelSelector {
            match_labels: Some(labels(pairs)),
            ..Default::default()
        };
        self
    }

    /// Replaces the template's containers with one container per port list.
    fn with_containers(mut self, containers: Vec<Vec<ContainerPort>>) -> Self {
        let spec = self
            .spec_mut()
            .template
            .spec
            .get_or_insert_with(Default::default);
        spec.containers = containers
            .into_iter()
            .enumerate()
            .map(|(i, ports)| Container {
                name: format!("c{i}"),
                ports: Some(ports),
                ..Default::default()
            })
            .collect();
        self
    }

    /// Adds an init container with `ports`; `sidecar` gives it `restartPolicy: Always` (a
    /// native sidecar that keeps running beside the main containers).
    fn with_init_container(mut self, ports: Vec<ContainerPort>, sidecar: bool) -> Self {
        let spec = self
            .spec_mut()
            .template
            .spec
            .get_or_insert_with(Default::default);
        let init = spec.init_containers.get_or_insert_with(Default::default);
        init.push(Container {
            name: format!("init{}", init.len()),
            ports: Some(ports),
            restart_policy: sidecar.then(|| "Always".into()),
            ..Default::default()
        });
        self
    }

    fn in_namespace(self, ns: &str) -> Self;
}

impl StatefulSetExt for StatefulSet {
    fn spec_mut(&mut self) -> &mut StatefulSetSpec {
        self.spec.get_or_insert_with(Default::default)
    }

    fn in_namespace(mut self, ns: &str) -> Self {
        self.metadata.namespace = Some(ns.into());
        self
    }
}

/// A headless Service (`clusterIP: None`) `name` in `default` selecting `selector`, with one
/// port `web` 80/TCP and no `targetPort` (the shape of the upstream StatefulSet example).
pub(crate) fn mk_headless_service(name: &str, selector: &[(&str, &str)]) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(labels(selector)),
            ports: Some(vec![svc_port(Some("web"), 80, None, Some("TCP"))]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The governing Service that matches `mk_statefulset(set, _)`.
pub(crate) fn mk_governing_service(set: &str) -> Service {
    mk_headless_service(SERVICE, &[("app", set)])
}

/// A Service port; `target: None` leaves `targetPort` unset, `protocol: None` leaves it unset.
pub(crate) fn svc_port(
    name: Option<&str>,
    port: i32,
    target: Option<IntOrString>,
    protocol: Option<&str>,
) -> ServicePort {
    ServicePort {
        name: name.map(Into::into),
        port,
        target_port: target,
        protocol: protocol.map(Into::into),
        ..Default::default()
    }
}

/// A named `targetPort`.
pub(crate) fn named(port: &str) -> Option<IntOrString> {
    Some(IntOrString::String(port.into()))
}

/// A numeric `targetPort`.
pub(crate) fn numbered(port: i32) -> Option<IntOrString> {
    Some(IntOrString::Int(port))
}

/// Modifiers for `mk_headless_service`.
pub(crate) trait ServiceExt: Sized {
    fn spec_mut(&mut self) -> &mut ServiceSpec;

    /// A ClusterIP Service instead of a headless one.
    fn not_headless(mut self) -> Self {
        self.spec_mut().cluster_ip = Some("198.51.100.10".into());
        self
    }

    /// `clusterIP` left unset (the API server allocates one: not headless).
    fn without_cluster_ip(mut self) -> Self {
        self.spec_mut().cluster_ip = None;
        self
    }

    fn without_selector(mut self) -> Self {
        self.spec_mut().selector = None;
        self
    }

    fn publish_not_ready(mut self) -> Self {
        self.spec_mut().publish_not_ready_addresses = Some(true);
        self
    }

    fn with_ports(mut self, ports: Vec<ServicePort>) -> Self {
        self.spec_mut().ports = Some(ports);
        self
    }

    /// The `petdns.io/srv-priority` annotation.
    fn with_srv_priority(self, value: &str) -> Self;
}

impl ServiceExt for Service {
    fn spec_mut(&mut self) -> &mut ServiceSpec {
        self.spec.get_or_insert_with(Default::default)
    }

    fn with_srv_priority(mut self, value: &str) -> Self {
        self.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(SRV_PRIORITY_ANNOTATION.into(), value.into());
        self
    }
}

/// Pod `<set>-<ordinal>` of `mk_statefulset(set, _)` as the StatefulSet controller creates it
/// and a kubelet runs it: labels `app`, pod-name, pod-index and revision, hostname = pod name,
/// subdomain `nginx`, on `node-a`, phase Running, Ready, address `ip_for(ordinal)`.
pub(crate) fn mk_pod(set: &str, ordinal: i32) -> Pod {
    let name = format!("{set}-{ordinal}");
    let ip = ip_for(ordinal);
    Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(NS.into()),
            labels: Some(labels(&[
                ("app", set),
                (POD_NAME_LABEL, &name),
                (POD_INDEX_LABEL, &ordinal.to_string()),
                (REVISION_LABEL, &revision(set)),
            ])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            hostname: Some(name),
            subdomain: Some(SERVICE.into()),
            node_name: Some(NODE.into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.clone()),
            pod_ips: Some(vec![PodIP { ip }]),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// Modifiers for `mk_pod`.
pub(crate) trait PodExt: Sized {
    fn spec_mut(&mut self) -> &mut PodSpec;
    fn status_mut(&mut self) -> &mut PodStatus;
    fn meta_mut(&mut self) -> &mut ObjectMeta;

    /// Renames the pod (name, hostname and pod-name label), keeping its other labels.
    fn named(mut self, name: &str) -> Self {
        self.meta_mut().name = Some(name.into());
        self.meta_mut()
            .labels
            .get_or_insert_with(Default::default)
            .insert(POD_NAME_LABEL.into(), name.into());
        self.spec_mut().hostname = Some(name.into());
        self
    }

    fn in_namespace(mut self, ns: &str) -> Self {
        self.meta_mut().namespace = Some(ns.into());
        self
    }

    /// No `podIP` and no `podIPs` (scheduled, sandbox not up yet).
    fn without_ip(mut self) -> Self {
        let status = self.status_mut();
        status.pod_ip = None;
        status.pod_ips = None;
        self
    }

    /// `podIP` = `ips[0]`, `podIPs` = `ips`.
    fn with_ips(mut self, ips: &[&str]) -> Self {
        let status = self.status_mut();
        status.pod_ip = ips.first().map(|s| s.to_string());
        status.pod_ips = Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect());
        self
    }

    /// Sets `podIP` and `podIPs` independently (`podIPs: None` leaves the field unset).
    fn with_pod_ip_fields(mut self, pod_ip: Option<&str>, pod_ips: Option<&[&str]>) -> Self {
        let status = self.status_mut();
        status.pod_ip = pod_ip.map(Into::into);
        status.pod_ips =
            pod_ips.map(|ips| ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect());
        self
    }

    /// The Ready condition's status: `"True"`, `"False"` or `"Unknown"`.
    fn ready_status(mut self, status: &str) -> Self {
        self.status_mut().conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: status.into(),
            ..Default::default()
        }]);
        self
    }

    fn not_ready(self) -> Self {
        self.ready_status("False")
    }

    /// No conditions at all (a Ready condition that was never written).
    fn without_conditions(mut self) -> Self {
        self.status_mut().conditions = None;
        self
    }

    fn on_node(mut self, node: &str) -> Self {
        self.spec_mut().node_name = Some(node.into());
        self
    }

    /// `metadata.deletionTimestamp` set (fixed, the epoch: reconcile reads no clock).
    fn terminating(mut self) -> Self {
        self.meta_mut().deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        self
    }

    fn phase(mut self, phase: &str) -> Self {
        self.status_mut().phase = Some(phase.into());
        self
    }

    fn subdomain(mut self, subdomain: Option<&str>) -> Self {
        self.spec_mut().subdomain = subdomain.map(Into::into);
        self
    }

    fn hostname(mut self, hostname: Option<&str>) -> Self {
        self.spec_mut().hostname = hostname.map(Into::into);
        self
    }

    /// Sets (or with `None` removes) one label.
    fn label(mut self, key: &str, value: Option<&str>) -> Self {
        let labels = self.meta_mut().labels.get_or_insert_with(Default::default);
        match value {
            Some(v) => labels.insert(key.into(), v.into()),
            None => labels.remove(key),
        };
        self
    }
}

impl PodExt for Pod {
    fn spec_mut(&mut self) -> &mut PodSpec {
        self.spec.get_or_insert_with(Default::default)
    }

    fn status_mut(&mut self) -> &mut PodStatus {
        self.status.get_or_insert_with(Default::default)
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A Node `name` whose Ready condition is `True` or `False`.
pub(crate) fn mk_node(name: &str, ready: bool) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// Modifiers for `mk_node`.
pub(crate) trait NodeExt: Sized {
    /// Ready condition `Unknown` (the node lifecycle controller lost the kubelet).
    fn ready_unknown(self) -> Self;
    /// The `node.kubernetes.io/out-of-service` taint (NoExecute), as an operator sets it.
    fn out_of_service(self) -> Self;
}

impl NodeExt for Node {
    fn ready_unknown(mut self) -> Self {
        for c in self
            .status
            .iter_mut()
            .flat_map(|s| s.conditions.iter_mut().flatten())
        {
            if c.type_ == "Ready" {
                c.status = "Unknown".into();
            }
        }
        self
    }

    fn out_of_service(mut self) -> Self {
        self.spec
            .get_or_insert_with(Default::default)
            .taints
            .get_or_insert_with(Default::default)
            .push(Taint {
                key: "node.kubernetes.io/out-of-service".into(),
                value: Some("nodeshutdown".into()),
                effect: "NoExecute".into(),
                time_added: None,
            });
        self
    }
}

/// The node map `reconcile` takes.
pub(crate) fn node_map(nodes: Vec<Node>) -> BTreeMap<String, Node> {
    nodes
        .into_iter()
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), n))
        .collect()
}
