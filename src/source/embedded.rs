//! The embedded default: manifests are the desired and the observed state.
//!
//! A StatefulSet with at least one of its pods in the manifests is *observed*: its identities
//! come from those Pod objects only. A set with none is *materialised* as if the StatefulSet
//! controller and a kubelet had run: a Pod object is synthesised for every declared ordinal
//! (hostname, subdomain, labels, revision from the template), Ready, with an address leased
//! from `--pod-cidr`. Both kinds then go through the same [`reconcile`].

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodIP, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::leases::{LeaseError, LeaseStore, RetainedSet};
use super::manifests::Objects;
use crate::identity::{
    IdentityTable, POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL, SrvPriority,
    parent_and_ordinal, reconcile, srv_priority_annotation,
};

/// The identity tables of every StatefulSet in `objects`, in (namespace, name) order.
pub fn tables(
    objects: &Objects,
    leases: &mut LeaseStore,
    srv_default: SrvPriority,
) -> Result<Vec<IdentityTable>, LeaseError> {
    let mut out = Vec::with_capacity(objects.stateful_sets.len());
    let mut retained = Vec::new();
    // Pods by (namespace, parent set name), once: a scan per set would be quadratic.
    let mut by_set: BTreeMap<(&str, &str), Vec<&Pod>> = BTreeMap::new();
    for ((ns, pod_name), pod) in &objects.pods {
        if let Some((parent, _)) = parent_and_ordinal(pod_name) {
            by_set.entry((ns.as_str(), parent)).or_default().push(pod);
        }
    }
    for ((ns, name), set) in &objects.stateful_sets {
        let candidates: Vec<&Pod> = by_set
            .remove(&(ns.as_str(), name.as_str()))
            .unwrap_or_default();
        let service_name = set
            .spec
            .as_ref()
            .and_then(|s| s.service_name.clone())
            .unwrap_or_default();
        let service = objects.services.get(&(ns.clone(), service_name));
        let table = if candidates.is_empty() {
            let pods = materialise(ns, name, set, leases)?;
            let refs: Vec<&Pod> = pods.iter().collect();
            let spec = set.spec.as_ref();
            let policy = spec.and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
            let ordinals = spec.and_then(|s| s.ordinals.as_ref());
            retained.push(RetainedSet {
                namespace: ns,
                name,
                start: ordinals.and_then(|o| o.start).unwrap_or(0),
                replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
                delete_when_scaled: policy.and_then(|p| p.when_scaled.as_deref()) == Some("Delete"),
                delete_when_deleted: policy.and_then(|p| p.when_deleted.as_deref())
                    == Some("Delete"),
            });
            reconcile(set, service, &refs, &objects.nodes)
        } else {
            reconcile(set, service, &candidates, &objects.nodes)
        };
        let mut table = table;
        if srv_priority_annotation(service).is_none() {
            table.srv_priority = srv_default;
        }
        out.push(table);
    }
    leases.retain(&retained);
    Ok(out)
}

/// One Ready pod per declared ordinal, as the StatefulSet controller and a kubelet would make.
fn materialise(
    ns: &str,
    name: &str,
    set: &StatefulSet,
    leases: &mut LeaseStore,
) -> Result<Vec<Pod>, LeaseError> {
    let Some(spec) = set.spec.as_ref() else {
        return Ok(Vec::new());
    };
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let revision = format!("{name}-{}", template_hash(set));
    let template_meta = spec.template.metadata.clone().unwrap_or_default();
    let template_spec = spec.template.spec.clone().unwrap_or_default();
    let mut pods = Vec::with_capacity(replicas as usize);
    for ordinal in start..start.saturating_add(replicas) {
        let pod_name = format!("{name}-{ordinal}");
        let address = leases.lease(ns, name, ordinal)?;
        let mut labels: BTreeMap<String, String> = template_meta.labels.clone().unwrap_or_default();
        labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
        labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
        labels.insert(REVISION_LABEL.into(), revision.clone());
        pods.push(Pod {
            metadata: ObjectMeta {
                name: Some(pod_name.clone()),
                namespace: Some(ns.into()),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(PodSpec {
                hostname: Some(pod_name),
                subdomain: spec.service_name.clone(),
                ..template_spec.clone()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(address.to_string()),
                pod_ips: Some(vec![PodIP {
                    ip: address.to_string(),
                }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        });
    }
    Ok(pods)
}

/// A stable short hash of the pod template, standing in for the ControllerRevision hash.
fn template_hash(set: &StatefulSet) -> String {
    let bytes = set
        .spec
        .as_ref()
        .and_then(|s| serde_json::to_vec(&s.template).ok())
        .unwrap_or_default();
    // FNV-1a, 64 bit: stable across runs and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:010x}", h & 0xff_ffff_ffff)
}
