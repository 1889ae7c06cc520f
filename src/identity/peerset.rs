//! The wire form of an identity table in cluster mode (`petdns.io/v1alpha2`): one `PeerSet`
//! per StatefulSet (what the set declares, its counts and conditions) and `PeerSlice`s, each
//! holding the identities of one fixed ordinal block. The controller writes them, the DNS
//! servers read them back into tables.
//!
//! Block `k` of a set holds the identities with ordinals in `[start + k*S, start + (k+1)*S)`,
//! `S` the set's `sliceSize`, so one pod's change rewrites the one slice of its ordinal, not
//! the set's whole identity list: the EndpointSlice design, for the same reason (every DNS
//! server watches these objects, and an object rewritten whole on each change is sent whole
//! to every node). A block with no identity has no slice. A condemned pod below `start` (the
//! start was raised while it still runs) is in a negative block, named `<set>.n<-k>`.

use std::collections::{BTreeMap, BTreeSet};

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{Condition, Identity, IdentityTable, Ordinals, PortSpec, SrvPriority};
use super::reconcile::MAX_DECLARED;

/// The label every PeerSlice carries: the name of its PeerSet.
pub const PEER_SET_LABEL: &str = "petdns.io/peer-set";
/// Identities per slice unless `--slice-size` says otherwise (as EndpointSlices: 100).
pub const DEFAULT_SLICE_SIZE: i32 = 100;
/// The largest slice size: 1,000 identities are about 340 KB of JSON at the longest names
/// measured, well inside the 1.5 MiB etcd takes per object.
pub const MAX_SLICE_SIZE: i32 = 1_000;

/// What the StatefulSet and its governing Service declare.
#[derive(CustomResource, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "petdns.io",
    version = "v1alpha2",
    kind = "PeerSet",
    plural = "peersets",
    shortname = "pset",
    namespaced,
    status = "PeerSetStatus",
    printcolumn = r#"{"name":"SERVICE","type":"string","jsonPath":".spec.service"}"#,
    printcolumn = r#"{"name":"READY","type":"string","description":"published/declared identities","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"SLICES","type":"integer","description":"PeerSlices holding the identities","jsonPath":".status.slices"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PeerSetSpec {
    pub stateful_set: String,
    pub service: String,
    pub ordinals: Ordinals,
    pub pod_management_policy: String,
    pub publish_not_ready_addresses: bool,
    #[serde(default)]
    pub srv_priority: SrvPriority,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// `S`: identities per PeerSlice (block `k` holds `[start + k*S, start + (k+1)*S)`).
    #[schemars(range(min = 1, max = 1000))]
    pub slice_size: i32,
}

/// What the pods are doing, counted; the identities themselves are in the PeerSlices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerSetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `published/declared`, for `kubectl get peersets`.
    #[serde(default)]
    pub ready: String,
    /// How many PeerSlices the set has now.
    #[serde(default)]
    pub slices: i32,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The identities of ordinal block `block` of PeerSet `peerSet`, named `<peerSet>.<block>`.
#[derive(CustomResource, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "petdns.io",
    version = "v1alpha2",
    kind = "PeerSlice",
    plural = "peerslices",
    shortname = "pslice",
    namespaced,
    printcolumn = r#"{"name":"PEERSET","type":"string","jsonPath":".spec.peerSet"}"#,
    printcolumn = r#"{"name":"BLOCK","type":"integer","description":"k: the ordinals [start + k*S, start + (k+1)*S)","jsonPath":".spec.block"}"#,
    printcolumn = r#"{"name":"READY","type":"string","description":"published/identities in the block","jsonPath":".spec.ready"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PeerSliceSpec {
    pub peer_set: String,
    /// `k`, as in the name.
    pub block: i32,
    /// `published/identities` of this block, for `kubectl get peerslices`.
    #[serde(default)]
    pub ready: String,
    #[serde(default)]
    pub identities: Vec<Identity>,
}

/// Why a PeerSet or PeerSlice cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerSetError {
    #[error("object has no name or namespace")]
    NoName,
    #[error("PeerSet {0} has no status yet")]
    NoStatus(String),
    #[error("PeerSet {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("PeerSlice {name}: {reason}")]
    InvalidSlice { name: String, reason: String },
}

/// The block of `ordinal` in a set starting at `start` with slices of `size`.
pub fn block_of(ordinal: i32, start: i32, size: i32) -> i32 {
    ((i64::from(ordinal) - i64::from(start)).div_euclid(i64::from(size.max(1)))) as i32
}

/// The name of block `block`'s slice of PeerSet `set`.
pub fn slice_name(set: &str, block: i32) -> String {
    if block < 0 {
        format!("{set}.n{}", -i64::from(block))
    } else {
        format!("{set}.{block}")
    }
}

/// The PeerSet and block a slice name says, `None` when it is not `<set>.<k>` or `<set>.n<k>`.
pub fn parse_slice_name(name: &str) -> Option<(&str, i32)> {
    let (set, k) = name.rsplit_once('.')?;
    let (negative, digits) = match k.strip_prefix('n') {
        Some(d) => (true, d),
        None => (false, k),
    };
    if set.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i32 = digits.parse().ok()?;
    Some((set, if negative { -n } else { n }))
}

/// What the controller writes for one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerObjects {
    pub spec: PeerSetSpec,
    pub status: PeerSetStatus,
    /// By slice name.
    pub slices: BTreeMap<String, PeerSliceSpec>,
}

impl PeerSet {
    /// The PeerSet and its slices for a table; `observed_generation` is the StatefulSet's
    /// generation, `slice_size` the identities per slice (clamped to `[1, MAX_SLICE_SIZE]`).
    pub fn from_table(
        table: &IdentityTable,
        observed_generation: Option<i64>,
        slice_size: i32,
    ) -> PeerObjects {
        let size = slice_size.clamp(1, MAX_SLICE_SIZE);
        let spec = PeerSetSpec {
            stateful_set: table.stateful_set.clone(),
            service: table.service.clone(),
            ordinals: table.ordinals,
            pod_management_policy: table.pod_management_policy.clone(),
            publish_not_ready_addresses: table.publish_not_ready_addresses,
            srv_priority: table.srv_priority,
            ports: table.ports.clone(),
            slice_size: size,
        };
        let mut blocks: BTreeMap<i32, Vec<Identity>> = BTreeMap::new();
        for i in &table.identities {
            blocks
                .entry(block_of(i.ordinal, table.ordinals.start, size))
                .or_default()
                .push(i.clone());
        }
        let slices: BTreeMap<String, PeerSliceSpec> = blocks
            .into_iter()
            .map(|(block, mut identities)| {
                identities.sort_by_key(|i| i.ordinal);
                let published = identities.iter().filter(|i| i.published).count();
                let name = slice_name(&table.stateful_set, block);
                let spec = PeerSliceSpec {
                    peer_set: table.stateful_set.clone(),
                    block,
                    ready: format!("{published}/{}", identities.len()),
                    identities,
                };
                (name, spec)
            })
            .collect();
        let status = PeerSetStatus {
            observed_generation,
            ready: format!("{}/{}", table.published(), table.declared()),
            slices: slices.len() as i32,
            conditions: table.conditions.clone(),
        };
        PeerObjects {
            spec,
            status,
            slices,
        }
    }

    /// Checks what a DNS server needs of the PeerSet itself; `Err(NoStatus)` while the
    /// controller has not reconciled it yet.
    pub fn check(&self) -> Result<(), PeerSetError> {
        let name = self.metadata.name.clone().ok_or(PeerSetError::NoName)?;
        if self.metadata.namespace.is_none() {
            return Err(PeerSetError::NoName);
        }
        if self.status.is_none() {
            return Err(PeerSetError::NoStatus(name));
        }
        let invalid = |reason: String| PeerSetError::Invalid {
            name: name.clone(),
            reason,
        };
        let spec = &self.spec;
        if spec.ordinals.replicas < 0 || spec.ordinals.start < 0 {
            return Err(invalid(format!("negative ordinals {:?}", spec.ordinals)));
        }
        // The controller declares at most MAX_DECLARED ordinals; the CRD allows any int32, and
        // `to_table` makes an identity of every declared ordinal.
        if spec.ordinals.replicas > MAX_DECLARED {
            return Err(invalid(format!(
                "replicas {} is above {MAX_DECLARED}",
                spec.ordinals.replicas
            )));
        }
        if !(1..=MAX_SLICE_SIZE).contains(&spec.slice_size) {
            return Err(invalid(format!(
                "sliceSize {} is outside [1, {MAX_SLICE_SIZE}]",
                spec.slice_size
            )));
        }
        if spec.ports.iter().any(|p| p.port == 0) {
            return Err(invalid("a port is 0".into()));
        }
        Ok(())
    }

    /// The table a DNS server serves from this PeerSet and the identities of its slices, as
    /// [`PeerSlice::identities`] checked them. A declared ordinal no slice holds yet (its
    /// slice is on its way) is `Missing`, so a declared name never answers NXDOMAIN.
    pub fn to_table<'a>(
        &self,
        slices: impl IntoIterator<Item = &'a [Identity]>,
    ) -> Result<IdentityTable, PeerSetError> {
        self.check()?;
        let (Some(namespace), Some(status)) = (&self.metadata.namespace, &self.status) else {
            return Err(PeerSetError::NoName);
        };
        let spec = &self.spec;
        let mut identities: Vec<Identity> = slices.into_iter().flatten().cloned().collect();
        identities.sort_by_key(|i| i.ordinal);
        identities.dedup_by_key(|i| i.ordinal);
        let held: BTreeSet<i32> = identities.iter().map(|i| i.ordinal).collect();
        let missing: Vec<Identity> = spec
            .ordinals
            .iter()
            .filter(|o| !held.contains(o))
            .map(|o| Identity::missing(&spec.stateful_set, o))
            .collect();
        if !missing.is_empty() {
            identities.extend(missing);
            identities.sort_by_key(|i| i.ordinal);
        }
        Ok(IdentityTable {
            namespace: namespace.clone(),
            stateful_set: spec.stateful_set.clone(),
            service: spec.service.clone(),
            ordinals: spec.ordinals,
            pod_management_policy: spec.pod_management_policy.clone(),
            publish_not_ready_addresses: spec.publish_not_ready_addresses,
            srv_priority: spec.srv_priority,
            ports: spec.ports.clone(),
            identities,
            conditions: status.conditions.clone(),
        })
    }
}

impl PeerSlice {
    /// The identities of this slice, checked against its PeerSet's spec: the slice is named
    /// `<peerSet>.<block>` and says the same, and its identities pass [`check_block`]. A slice
    /// that fails any of this is rejected whole, never half-served.
    pub fn identities(&self, set: &PeerSetSpec) -> Result<&[Identity], PeerSetError> {
        let name = self.metadata.name.as_deref().ok_or(PeerSetError::NoName)?;
        let invalid = |reason: String| PeerSetError::InvalidSlice {
            name: name.to_string(),
            reason,
        };
        let Some((peer_set, block)) = parse_slice_name(name) else {
            return Err(invalid("the name is not <peerSet>.<block>".into()));
        };
        if peer_set != self.spec.peer_set || block != self.spec.block {
            return Err(invalid(format!(
                "named for PeerSet {peer_set} block {block}, but says PeerSet {} block {}",
                self.spec.peer_set, self.spec.block
            )));
        }
        check_block(name, block, &self.spec.identities, set)?;
        Ok(&self.spec.identities)
    }
}

/// Checks the identities of slice `name`, block `block`, against its PeerSet's spec: every
/// identity is a pod `<statefulSet>-<ordinal>` of that block, once, and none is published
/// without an address.
pub fn check_block(
    name: &str,
    block: i32,
    identities: &[Identity],
    set: &PeerSetSpec,
) -> Result<(), PeerSetError> {
    let invalid = |reason: String| PeerSetError::InvalidSlice {
        name: name.to_string(),
        reason,
    };
    let mut seen = BTreeSet::new();
    for i in identities {
        let expected = format!("{}-{}", set.stateful_set, i.ordinal);
        if i.pod != expected {
            return Err(invalid(format!(
                "identity {} is not named {expected}",
                i.pod
            )));
        }
        let k = block_of(i.ordinal, set.ordinals.start, set.slice_size);
        if k != block {
            return Err(invalid(format!(
                "identity {} belongs to block {k}, not {block}",
                i.pod
            )));
        }
        if !seen.insert(i.ordinal) {
            return Err(invalid(format!("identity {} is there twice", i.pod)));
        }
        if i.published && i.addresses.is_empty() {
            return Err(invalid(format!(
                "identity {} is published without an address",
                i.pod
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::fixtures::*;
    use crate::identity::{IdentityState, reconcile};

    /// `web` with `replicas` from `start`; every third pod not Ready.
    fn table_of(replicas: i32, start: i32) -> IdentityTable {
        let set = mk_statefulset("web", replicas).with_start(start);
        let svc = mk_governing_service("web");
        let pods: Vec<_> = (start..start + replicas)
            .map(|o| {
                let pod = mk_pod("web", o);
                if o % 3 == 2 { pod.not_ready() } else { pod }
            })
            .collect();
        let refs: Vec<&_> = pods.iter().collect();
        reconcile(&set, Some(&svc), &refs, &Default::default())
    }

    fn peerset(objects: &PeerObjects) -> PeerSet {
        let mut ps = PeerSet::new("web", objects.spec.clone());
        ps.metadata.namespace = Some("default".into());
        ps.status = Some(objects.status.clone());
        ps
    }

    fn slice(name: &str, spec: &PeerSliceSpec) -> PeerSlice {
        let mut s = PeerSlice::new(name, spec.clone());
        s.metadata.namespace = Some("default".into());
        s
    }

    #[test]
    fn blocks_follow_start_and_size_and_name_round_trips() {
        assert_eq!(block_of(0, 0, 100), 0);
        assert_eq!(block_of(99, 0, 100), 0);
        assert_eq!(block_of(100, 0, 100), 1);
        assert_eq!(block_of(5, 5, 100), 0);
        assert_eq!(block_of(104, 5, 100), 0);
        assert_eq!(block_of(105, 5, 100), 1);
        assert_eq!(block_of(4, 5, 100), -1);
        for (set, block, name) in [
            ("web", 0, "web.0"),
            ("web-1", 12, "web-1.12"),
            ("web", -1, "web.n1"),
        ] {
            assert_eq!(slice_name(set, block), name);
            assert_eq!(parse_slice_name(name), Some((set, block)));
        }
        for bad in ["web", "web.", ".3", "web.x", "web.n", "web.-1", "web.1a"] {
            assert_eq!(parse_slice_name(bad), None, "{bad}");
        }
    }

    /// 250 identities from ordinal 7 in slices of 100: blocks 0, 1, 2 (the last of 50), each
    /// slice holding its block's ordinals in order, and the counts in both objects.
    #[test]
    fn a_table_is_cut_into_blocks_of_its_ordinals() {
        let table = table_of(250, 7);
        let objects = PeerSet::from_table(&table, Some(4), 100);
        assert_eq!(
            objects.slices.keys().collect::<Vec<_>>(),
            ["web.0", "web.1", "web.2"]
        );
        let ordinals = |n: &str| -> Vec<i32> {
            objects.slices[n]
                .identities
                .iter()
                .map(|i| i.ordinal)
                .collect()
        };
        assert_eq!(ordinals("web.0"), (7..107).collect::<Vec<_>>());
        assert_eq!(ordinals("web.1"), (107..207).collect::<Vec<_>>());
        assert_eq!(ordinals("web.2"), (207..257).collect::<Vec<_>>());
        let published = |n: &str| {
            objects.slices[n]
                .identities
                .iter()
                .filter(|i| i.published)
                .count()
        };
        assert_eq!(
            objects.slices["web.2"].ready,
            format!("{}/50", published("web.2"))
        );
        assert_eq!(objects.slices["web.1"].block, 1);
        assert_eq!(objects.status.slices, 3);
        assert_eq!(objects.status.ready, format!("{}/250", table.published()));
        assert_eq!(objects.status.observed_generation, Some(4));
        assert_eq!(objects.spec.slice_size, 100);
    }

    /// One pod's change changes exactly the slice of its block; the others are equal, so the
    /// controller writes one slice.
    #[test]
    fn one_pods_change_changes_one_slice() {
        let before = table_of(300, 0);
        let mut after = before.clone();
        let i = after
            .identities
            .iter_mut()
            .find(|i| i.ordinal == 150)
            .unwrap();
        i.state = IdentityState::NotReady;
        i.published = false;
        let (a, b) = (
            PeerSet::from_table(&before, None, 100),
            PeerSet::from_table(&after, None, 100),
        );
        let changed: Vec<&String> = a
            .slices
            .keys()
            .filter(|k| a.slices[*k] != b.slices[*k])
            .collect();
        assert_eq!(changed, ["web.1"]);
    }

    #[test]
    fn a_set_cut_into_slices_reads_back_as_the_same_table() {
        let table = table_of(250, 7);
        let objects = PeerSet::from_table(&table, None, 100);
        let ps = peerset(&objects);
        let slices: Vec<PeerSlice> = objects.slices.iter().map(|(n, s)| slice(n, s)).collect();
        let parts: Vec<&[Identity]> = slices
            .iter()
            .map(|s| s.identities(&ps.spec).unwrap())
            .collect();
        assert_eq!(ps.to_table(parts).unwrap(), table);
    }

    /// A declared ordinal whose slice has not arrived yet is Missing, not absent (absent would
    /// answer NXDOMAIN for a declared name).
    #[test]
    fn declared_ordinals_without_a_slice_yet_are_missing() {
        let table = table_of(150, 0);
        let objects = PeerSet::from_table(&table, None, 100);
        let ps = peerset(&objects);
        let first = slice("web.0", &objects.slices["web.0"]);
        let t = ps.to_table([first.identities(&ps.spec).unwrap()]).unwrap();
        assert_eq!(t.identities.len(), 150);
        assert!(
            t.identities[100..]
                .iter()
                .all(|i| i.state == IdentityState::Missing && !i.published)
        );
        assert_eq!(t.identities[100].pod, "web-100");
    }

    #[test]
    fn a_slice_with_garbage_is_rejected_whole() {
        let table = table_of(150, 0);
        let objects = PeerSet::from_table(&table, None, 100);
        let spec = &peerset(&objects).spec;
        let good = objects.slices["web.1"].clone();
        let reject = |name: &str, s: PeerSliceSpec, why: &str| {
            let err = slice(name, &s).identities(spec).unwrap_err();
            assert!(err.to_string().contains(why), "{why}: {err}");
        };
        reject("web.2", good.clone(), "named for PeerSet web block 2");
        reject("web1", good.clone(), "not <peerSet>.<block>");
        let mut other_set = good.clone();
        other_set.identities[0].pod = "db-100".into();
        reject("web.1", other_set, "is not named web-100");
        let mut outside = good.clone();
        outside.identities[0].ordinal = 5;
        outside.identities[0].pod = "web-5".into();
        reject("web.1", outside, "belongs to block 0");
        let mut twice = good.clone();
        twice.identities.push(twice.identities[0].clone());
        reject("web.1", twice, "there twice");
        let mut no_address = good.clone();
        no_address.identities[0].published = true;
        no_address.identities[0].addresses.clear();
        reject("web.1", no_address, "published without an address");
        assert!(slice("web.1", &good).identities(spec).is_ok());
    }

    #[test]
    fn a_peerset_without_status_or_with_a_bad_size_is_not_served() {
        let objects = PeerSet::from_table(&table_of(3, 0), None, 100);
        let mut ps = peerset(&objects);
        ps.status = None;
        assert_eq!(ps.check(), Err(PeerSetError::NoStatus("web".into())));
        let mut ps = peerset(&objects);
        ps.spec.slice_size = 0;
        assert!(matches!(ps.check(), Err(PeerSetError::Invalid { .. })));
        ps.spec.slice_size = MAX_SLICE_SIZE + 1;
        assert!(matches!(ps.check(), Err(PeerSetError::Invalid { .. })));
    }

    /// A PeerSet declaring 2^31 - 1 ordinals (the CRD takes any int32; the controller never
    /// writes more than `MAX_DECLARED`) passed the check, and `to_table` made a `Missing`
    /// identity of each: the DNS server ran out of memory instead of rejecting the object.
    /// Found while writing the `peerset` fuzz target, which fails on it (out-of-memory) with
    /// fuzz/corpus/peerset/regression-huge-replicas.jsonl.
    #[test]
    fn regression_huge_replicas_in_a_peerset_exhausted_memory_instead_of_being_rejected() {
        let objects = PeerSet::from_table(&table_of(3, 0), None, 100);
        let mut ps = peerset(&objects);
        ps.spec.ordinals.replicas = i32::MAX;
        let err = ps.check().unwrap_err();
        assert!(err.to_string().contains("above 10000"), "{err}");
        assert_eq!(ps.to_table([]).unwrap_err(), err);
        ps.spec.ordinals.replicas = MAX_DECLARED + 1;
        assert!(ps.check().is_err());
        ps.spec.ordinals.replicas = MAX_DECLARED;
        let t = ps.to_table([]).unwrap();
        assert_eq!(t.identities.len(), MAX_DECLARED as usize);
    }

    /// A slice at the largest size, with long names and two addresses per identity, is far
    /// below the 1.5 MiB etcd takes per object (docs/deploy.md quotes the bytes per identity).
    #[test]
    fn the_largest_slice_fits_in_etcd() {
        let identity =
            |set: &str, o: i32, addresses: &[&str], node: &str, claims: &[&str]| Identity {
                ordinal: o,
                pod: format!("{set}-{o}"),
                hostname: format!("{set}-{o}"),
                addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
                state: IdentityState::Ready,
                published: true,
                node: Some(node.into()),
                revision: Some(format!("{set}-5d8f7c9b6d")),
                claims: claims.iter().map(|c| format!("{c}-{set}-{o}")).collect(),
            };
        let slice_of = |set: &str, addresses: &[&str], node: &str, claims: &[&str]| PeerSliceSpec {
            peer_set: set.into(),
            block: 9,
            ready: "1000/1000".into(),
            identities: (9000..9000 + MAX_SLICE_SIZE)
                .map(|o| identity(set, o, addresses, node, claims))
                .collect(),
        };
        let bytes = |s: &PeerSliceSpec| serde_json::to_vec(s).unwrap().len();
        let short = bytes(&slice_of("web", &["10.244.1.17"], "node-1", &["data"]));
        let long = bytes(&slice_of(
            "cassandra-ring-east",
            &["10.244.123.45", "fd00:10:244:7b::2d"],
            "ip-10-0-123-45.eu-west-1.compute.internal",
            &["data", "commitlog"],
        ));
        let per = |b: usize| b / MAX_SLICE_SIZE as usize;
        assert!(
            (170..=200).contains(&per(short)) && (320..=360).contains(&per(long)),
            "bytes per identity: short names {}, long names {}",
            per(short),
            per(long)
        );
        assert!(long < 400_000, "the largest slice is {long} bytes");
    }
}
