//! What the API server holds of the objects the controller writes, kept from their watch and
//! from the responses to its own writes, so that the controller compares what it wants with
//! what is there and writes only differences.
//!
//! A write's response is newer than the watch events still in flight for that object: a real
//! API server answers the write before the watch delivers the event of the state it replaced
//! (seen on kube-apiserver 1.37: the spec write's event arrived after the status write's
//! response). Taking such an event as the current state made the controller write the same
//! status again and announce the same condition twice. So after a write, events for that
//! object are taken as older until the one carrying the written resourceVersion arrives.
//! Versions are only compared for equality, never for order (API conventions: they are
//! opaque); events of one watch arrive in the order they happened.

use std::collections::BTreeMap;

use kube::Resource;

use super::cluster::Key;

/// Objects by (namespace, name).
pub struct Cache<K> {
    objects: BTreeMap<Key, K>,
    /// The resourceVersion of the latest event the watch delivered, per object.
    delivered: BTreeMap<Key, String>,
    /// The resourceVersion of our latest write, until the watch delivers it.
    awaiting: BTreeMap<Key, String>,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            objects: BTreeMap::new(),
            delivered: BTreeMap::new(),
            awaiting: BTreeMap::new(),
        }
    }
}

fn key_and_version<K: Resource>(o: &K) -> Option<(Key, String)> {
    let m = o.meta();
    Some((
        (m.namespace.clone()?, m.name.clone()?),
        m.resource_version.clone().unwrap_or_default(),
    ))
}

impl<K: Resource> Cache<K> {
    pub fn get(&self, key: &Key) -> Option<&K> {
        self.objects.get(key)
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.objects.contains_key(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.objects.keys()
    }

    /// A relist: these are now all the objects. Returns their keys.
    pub fn reset(&mut self, all: Vec<K>) -> Vec<Key> {
        self.objects.clear();
        self.delivered.clear();
        self.awaiting.clear();
        for o in all {
            if let Some((key, version)) = key_and_version(&o) {
                self.delivered.insert(key.clone(), version);
                self.objects.insert(key, o);
            }
        }
        self.objects.keys().cloned().collect()
    }

    /// An object from the watch. Returns its key, or `None` when it is older than our own
    /// latest write of it (and so ignored).
    pub fn applied(&mut self, o: K) -> Option<Key> {
        let (key, version) = key_and_version(&o)?;
        self.delivered.insert(key.clone(), version.clone());
        if let Some(awaited) = self.awaiting.get(&key) {
            if *awaited != version {
                return None;
            }
            self.awaiting.remove(&key);
        }
        self.objects.insert(key.clone(), o);
        Some(key)
    }

    /// An object deleted, as the watch says.
    pub fn deleted(&mut self, o: &K) -> Option<Key> {
        let (key, _) = key_and_version(o)?;
        self.objects.remove(&key);
        self.delivered.remove(&key);
        self.awaiting.remove(&key);
        Some(key)
    }

    /// The API server's response to our write of `key`.
    pub fn wrote(&mut self, key: &Key, o: K) {
        let version = o.meta().resource_version.clone().unwrap_or_default();
        // An unchanged object keeps its version and makes no event: nothing to wait for if the
        // watch already delivered that version.
        if self.delivered.get(key) != Some(&version) {
            self.awaiting.insert(key.clone(), version);
        } else {
            self.awaiting.remove(key);
        }
        self.objects.insert(key.clone(), o);
    }

    /// We deleted `key` (the watch will say so too).
    pub fn forget(&mut self, key: &Key) {
        self.objects.remove(key);
        self.awaiting.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn object(name: &str, version: &str, data: &str) -> ConfigMap {
        let mut o = ConfigMap::default();
        o.metadata.namespace = Some("ns".into());
        o.metadata.name = Some(name.into());
        o.metadata.resource_version = Some(version.into());
        o.data = Some([("v".to_string(), data.to_string())].into());
        o
    }

    fn data(c: &Cache<ConfigMap>, name: &str) -> Option<String> {
        c.get(&("ns".into(), name.into()))
            .and_then(|o| o.data.as_ref()?.get("v").cloned())
    }

    /// Regression: on kube-apiserver the event of the spec write arrived after the response to
    /// the status write, and replaced the newer state in the cache.
    #[test]
    fn regression_an_event_older_than_our_write_does_not_replace_it() {
        let mut c = Cache::default();
        let key = ("ns".to_string(), "web".to_string());
        c.reset(vec![]);
        c.wrote(&key, object("web", "10", "spec"));
        c.wrote(&key, object("web", "11", "spec+status"));
        assert_eq!(
            c.applied(object("web", "10", "spec")),
            None,
            "older: ignored"
        );
        assert_eq!(data(&c, "web").as_deref(), Some("spec+status"));
        assert_eq!(
            c.applied(object("web", "11", "spec+status")),
            Some(key.clone())
        );
        // Caught up: later events from anyone are taken.
        assert_eq!(c.applied(object("web", "12", "edited")), Some(key));
        assert_eq!(data(&c, "web").as_deref(), Some("edited"));
    }

    /// A write that changed nothing keeps the version the watch already delivered, and makes
    /// no event: the cache does not wait for one (it would ignore every later event).
    #[test]
    fn a_write_that_changed_nothing_awaits_no_event() {
        let mut c = Cache::default();
        let key = ("ns".to_string(), "web".to_string());
        c.reset(vec![object("web", "7", "a")]);
        c.wrote(&key, object("web", "7", "a"));
        assert_eq!(c.applied(object("web", "8", "b")), Some(key));
        assert_eq!(data(&c, "web").as_deref(), Some("b"));
    }

    #[test]
    fn a_relist_and_a_delete_end_the_wait() {
        let mut c = Cache::default();
        let key = ("ns".to_string(), "web".to_string());
        c.wrote(&key, object("web", "5", "mine"));
        c.reset(vec![object("web", "4", "listed")]);
        assert_eq!(data(&c, "web").as_deref(), Some("listed"));
        c.wrote(&key, object("web", "6", "mine"));
        assert_eq!(c.deleted(&object("web", "9", "")), Some(key.clone()));
        assert!(!c.contains(&key));
        assert_eq!(c.applied(object("web", "10", "new")), Some(key));
    }
}
