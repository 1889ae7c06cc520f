//! The identities of a PeerSlice as `serve --kube` keeps them between changes, in a compact
//! form: what every identity of a set repeats (its pod and host name `<set>-<ordinal>`, its
//! node, its revision, the names of its claim templates) is derived or shared, not stored per
//! identity. An `Identity` is 152 bytes and five to eight allocations (names, addresses,
//! node, revision, claims); a [`SlimIdentity`] 96 bytes, and one allocation only for
//! addresses beyond a first IPv4 one. At 100,000 identities in 1,000 PeerSlices this took the
//! RSS of `serve --kube` from 371 to 308 B per identity (`serve_kube_memory_per_identity`).
//! Only the set being rebuilt is expanded back, exactly as it arrived ([`expand`]), so the
//! rules see what the API server sent.

use std::collections::HashSet;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::identity::{Identity, IdentityState};

/// One identity of a slice of set `set` (the base of its derived names).
#[derive(Debug, Clone)]
pub struct SlimIdentity {
    ordinal: i32,
    state: IdentityState,
    published: bool,
    /// The first address when it is IPv4.
    v4: Option<Ipv4Addr>,
    /// The other addresses, in order.
    more: Box<[IpAddr]>,
    node: Option<Arc<str>>,
    revision: Option<Arc<str>>,
    /// Pod and host name when they are not both `<set>-<ordinal>`.
    names: Option<Box<(String, String)>>,
    claims: Claims,
}

#[derive(Debug, Clone)]
enum Claims {
    /// Claim `i` is `<prefixes[i]>-<pod>`, as the StatefulSet controller names them.
    Derived(Arc<[Box<str>]>),
    /// Anything else, as sent.
    Literal(Box<[String]>),
}

/// Values many identities share, held once. Values no identity holds any more are dropped
/// when the tables have doubled since the last look (old revisions after a rolling update).
#[derive(Default)]
pub struct Interner {
    strs: HashSet<Arc<str>>,
    lists: HashSet<Arc<[Box<str>]>>,
    pruned_at: usize,
}

impl Interner {
    fn str(&mut self, s: &str) -> Arc<str> {
        if let Some(held) = self.strs.get(s) {
            return held.clone();
        }
        let new: Arc<str> = Arc::from(s);
        self.strs.insert(new.clone());
        self.prune();
        new
    }

    fn list(&mut self, l: Vec<Box<str>>) -> Arc<[Box<str>]> {
        if let Some(held) = self.lists.get(l.as_slice()) {
            return held.clone();
        }
        let new: Arc<[Box<str>]> = Arc::from(l);
        self.lists.insert(new.clone());
        self.prune();
        new
    }

    fn prune(&mut self) {
        let len = self.strs.len() + self.lists.len();
        if len < 2 * self.pruned_at.max(64) {
            return;
        }
        retain_held(&mut self.strs);
        retain_held(&mut self.lists);
        self.pruned_at = self.strs.len() + self.lists.len();
    }

    /// How many values are held (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.strs.len() + self.lists.len()
    }
}

/// Keeps the values something besides the set holds.
fn retain_held<T: ?Sized + Eq + Hash>(set: &mut HashSet<Arc<T>>) {
    set.retain(|v| Arc::strong_count(v) > 1);
}

/// `ids` of set `set` in compact form.
pub fn compact(set: &str, ids: &[Identity], interner: &mut Interner) -> Box<[SlimIdentity]> {
    ids.iter().map(|id| slim(set, id, interner)).collect()
}

fn slim(set: &str, id: &Identity, interner: &mut Interner) -> SlimIdentity {
    let derived = derived_name(set, id.ordinal);
    let names = (id.pod != derived || id.hostname != derived)
        .then(|| Box::new((id.pod.clone(), id.hostname.clone())));
    let (v4, rest) = match id.addresses.split_first() {
        Some((IpAddr::V4(a), rest)) => (Some(*a), rest),
        _ => (None, id.addresses.as_slice()),
    };
    let suffix = format!("-{}", id.pod);
    let prefixes: Option<Vec<Box<str>>> = id
        .claims
        .iter()
        .map(|c| {
            c.strip_suffix(&suffix)
                .filter(|p| !p.is_empty())
                .map(Box::from)
        })
        .collect();
    let claims = match prefixes {
        Some(p) => Claims::Derived(interner.list(p)),
        None => Claims::Literal(id.claims.iter().cloned().collect()),
    };
    SlimIdentity {
        ordinal: id.ordinal,
        state: id.state,
        published: id.published,
        v4,
        more: rest.into(),
        node: id.node.as_deref().map(|n| interner.str(n)),
        revision: id.revision.as_deref().map(|r| interner.str(r)),
        names,
        claims,
    }
}

/// The identities `compact(set, ..)` was given, as they were.
pub fn expand(set: &str, slims: &[SlimIdentity]) -> Vec<Identity> {
    slims
        .iter()
        .map(|s| {
            let (pod, hostname) = match &s.names {
                Some(n) => (n.0.clone(), n.1.clone()),
                None => {
                    let name = derived_name(set, s.ordinal);
                    (name.clone(), name)
                }
            };
            let claims = match &s.claims {
                Claims::Derived(prefixes) => {
                    prefixes.iter().map(|p| format!("{p}-{pod}")).collect()
                }
                Claims::Literal(c) => c.to_vec(),
            };
            Identity {
                ordinal: s.ordinal,
                addresses: s
                    .v4
                    .map(IpAddr::V4)
                    .into_iter()
                    .chain(s.more.iter().copied())
                    .collect(),
                state: s.state,
                published: s.published,
                node: s.node.as_deref().map(String::from),
                revision: s.revision.as_deref().map(String::from),
                claims,
                pod,
                hostname,
            }
        })
        .collect()
}

fn derived_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(ordinal: i32) -> Identity {
        let pod = format!("web-{ordinal}");
        Identity {
            ordinal,
            hostname: pod.clone(),
            addresses: vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            state: IdentityState::Ready,
            published: true,
            node: Some("node-a".into()),
            revision: Some("web-7d65996bc7".into()),
            claims: vec![format!("data-{pod}"), format!("logs-{pod}")],
            pod,
        }
    }

    /// Every shape an identity can arrive in comes back exactly as it was.
    #[test]
    fn expand_gives_back_what_compact_was_given() {
        let mut odd = vec![
            identity(0),
            identity(1),
            identity(2),
            identity(3),
            identity(4),
        ];
        odd[1].addresses = vec!["fd00::2".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        odd[1].claims = vec!["data-other".into(), "-web-1".into()];
        odd[2].pod = "web-2".into();
        odd[2].hostname = "custom".into();
        odd[2].node = None;
        odd[2].revision = None;
        odd[2].claims = vec![];
        odd[3].addresses = vec![];
        odd[3].state = IdentityState::Missing;
        odd[3].published = false;
        odd[4].pod = "other-4".into();
        odd[4].hostname = "other-4".into();
        odd[4].claims = vec!["data-other-4".into()];
        let mut interner = Interner::default();
        let slim = compact("web", &odd, &mut interner);
        assert_eq!(expand("web", &slim), odd);
    }

    /// Identities of one set share their node, revision and claim template names.
    #[test]
    fn what_identities_repeat_is_held_once() {
        let ids: Vec<Identity> = (0..100).map(identity).collect();
        let mut interner = Interner::default();
        let slim = compact("web", &ids, &mut interner);
        assert!(slim[0].names.is_none());
        let (Claims::Derived(a), Claims::Derived(b)) = (&slim[0].claims, &slim[99].claims) else {
            panic!("claims named as the controller names them are derived");
        };
        assert!(Arc::ptr_eq(a, b));
        assert!(Arc::ptr_eq(
            slim[0].revision.as_ref().unwrap(),
            slim[99].revision.as_ref().unwrap()
        ));
        assert_eq!(interner.len(), 3, "node, revision, one claim list");
        assert!(std::mem::size_of::<SlimIdentity>() <= 96);
    }

    /// Revisions no identity holds any more do not stay in the interner for ever.
    #[test]
    fn values_no_identity_holds_are_dropped() {
        let mut interner = Interner::default();
        for rev in 0..1000 {
            let mut id = identity(0);
            id.revision = Some(format!("web-{rev}"));
            drop(compact("web", &[id], &mut interner));
        }
        assert!(interner.len() < 200, "{} values held", interner.len());
    }
}
