//! The controller's view of the cluster: a plain synchronous index that the watches feed with
//! `apply` / `delete` / `reset`, and that answers which StatefulSets a change affects.
//!
//! No I/O here: the watch loop in `run.rs` feeds it, [`ClusterIndex::table`] computes identity
//! tables with the shared [`reconcile`], and a change that cannot matter (a Node whose health
//! did not change, a pod of no StatefulSet) returns no affected set.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Pod, Service};

use crate::identity::{IdentityTable, SrvPriority};
use crate::identity::{node_lost, parent_and_ordinal, reconcile, srv_priority_annotation};

/// (namespace, name)
pub type Key = (String, String);

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone()?,
    ))
}

/// Objects the controller watches.
#[derive(Default)]
pub struct ClusterIndex {
    srv_default: SrvPriority,
    sets: BTreeMap<Key, StatefulSet>,
    services: BTreeMap<Key, Service>,
    pods: BTreeMap<Key, Pod>,
    nodes: BTreeMap<String, Node>,
}

impl ClusterIndex {
    /// `srv_default` applies to Services without a `petdns.io/srv-priority` annotation.
    pub fn new(srv_default: SrvPriority) -> Self {
        ClusterIndex {
            srv_default,
            ..Default::default()
        }
    }

    pub fn set_keys(&self) -> impl Iterator<Item = &Key> {
        self.sets.keys()
    }

    pub fn stateful_set(&self, key: &Key) -> Option<&StatefulSet> {
        self.sets.get(key)
    }

    /// The identity table of one StatefulSet, or `None` when it does not exist.
    pub fn table(&self, key: &Key) -> Option<IdentityTable> {
        let set = self.sets.get(key)?;
        let service_name = set
            .spec
            .as_ref()
            .and_then(|s| s.service_name.clone())
            .unwrap_or_default();
        let service = self.services.get(&(key.0.clone(), service_name));
        // Pod names of the set start with "<set>-": only that stretch of the ordered map.
        let prefix = format!("{}-", key.1);
        let pods: Vec<&Pod> = self
            .pods
            .range((key.0.clone(), prefix.clone())..)
            .take_while(|((ns, name), _)| *ns == key.0 && name.starts_with(&prefix))
            .filter(|((_, name), _)| parent_and_ordinal(name).is_some_and(|(p, _)| p == key.1))
            .map(|(_, p)| p)
            .collect();
        let mut table = reconcile(set, service, &pods, &self.nodes);
        if srv_priority_annotation(service).is_none() {
            table.srv_priority = self.srv_default;
        }
        Some(table)
    }

    fn sets_governed_by(&self, ns: &str, service: &str) -> Vec<Key> {
        self.sets
            .iter()
            .filter(|((set_ns, _), s)| {
                set_ns == ns
                    && s.spec.as_ref().and_then(|s| s.service_name.as_deref()) == Some(service)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn sets_on_node(&self, node: &str) -> Vec<Key> {
        let mut out = BTreeSet::new();
        for ((ns, name), pod) in &self.pods {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
                && let Some((parent, _)) = parent_and_ordinal(name)
            {
                out.insert((ns.clone(), parent.to_string()));
            }
        }
        out.into_iter().collect()
    }

    fn pod_set(key: &Key) -> Option<Key> {
        parent_and_ordinal(&key.1).map(|(parent, _)| (key.0.clone(), parent.to_string()))
    }

    pub fn apply_set(&mut self, set: StatefulSet) -> Vec<Key> {
        let Some(key) = key_of(&set.metadata) else {
            return Vec::new();
        };
        self.sets.insert(key.clone(), set);
        vec![key]
    }

    pub fn delete_set(&mut self, set: &StatefulSet) -> Vec<Key> {
        let Some(key) = key_of(&set.metadata) else {
            return Vec::new();
        };
        self.sets.remove(&key);
        vec![key]
    }

    pub fn apply_service(&mut self, svc: Service) -> Vec<Key> {
        let Some(key) = key_of(&svc.metadata) else {
            return Vec::new();
        };
        self.services.insert(key.clone(), svc);
        self.sets_governed_by(&key.0, &key.1)
    }

    pub fn delete_service(&mut self, svc: &Service) -> Vec<Key> {
        let Some(key) = key_of(&svc.metadata) else {
            return Vec::new();
        };
        self.services.remove(&key);
        self.sets_governed_by(&key.0, &key.1)
    }

    pub fn apply_pod(&mut self, pod: Pod) -> Vec<Key> {
        let Some(key) = key_of(&pod.metadata) else {
            return Vec::new();
        };
        let set = Self::pod_set(&key);
        self.pods.insert(key, pod);
        set.into_iter().collect()
    }

    pub fn delete_pod(&mut self, pod: &Pod) -> Vec<Key> {
        let Some(key) = key_of(&pod.metadata) else {
            return Vec::new();
        };
        self.pods.remove(&key);
        Self::pod_set(&key).into_iter().collect()
    }

    /// A Node matters only when its health (Ready, out-of-service taint) changes.
    pub fn apply_node(&mut self, node: Node) -> Vec<Key> {
        let Some(name) = node.metadata.name.clone() else {
            return Vec::new();
        };
        let lost = node_lost(&node);
        let was_lost = self.nodes.get(&name).map(node_lost);
        self.nodes.insert(name.clone(), node);
        if was_lost == Some(lost) || (was_lost.is_none() && !lost) {
            return Vec::new();
        }
        self.sets_on_node(&name)
    }

    pub fn delete_node(&mut self, node: &Node) -> Vec<Key> {
        let Some(name) = node.metadata.name.clone() else {
            return Vec::new();
        };
        match self.nodes.remove(&name) {
            Some(old) if node_lost(&old) => self.sets_on_node(&name),
            _ => Vec::new(),
        }
    }

    /// Replaces every object of one kind (after a (re)list); every set may be affected.
    pub fn reset_sets(&mut self, sets: Vec<StatefulSet>) -> Vec<Key> {
        let mut affected: BTreeSet<Key> = self.sets.keys().cloned().collect();
        self.sets = sets
            .into_iter()
            .filter_map(|s| Some((key_of(&s.metadata)?, s)))
            .collect();
        affected.extend(self.sets.keys().cloned());
        affected.into_iter().collect()
    }

    pub fn reset_services(&mut self, services: Vec<Service>) -> Vec<Key> {
        self.services = services
            .into_iter()
            .filter_map(|s| Some((key_of(&s.metadata)?, s)))
            .collect();
        self.sets.keys().cloned().collect()
    }

    pub fn reset_pods(&mut self, pods: Vec<Pod>) -> Vec<Key> {
        self.pods = pods
            .into_iter()
            .filter_map(|p| Some((key_of(&p.metadata)?, p)))
            .collect();
        self.sets.keys().cloned().collect()
    }

    pub fn reset_nodes(&mut self, nodes: Vec<Node>) -> Vec<Key> {
        self.nodes = nodes
            .into_iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, n)))
            .collect();
        self.sets.keys().cloned().collect()
    }
}
