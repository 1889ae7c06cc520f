//! The API calls petdns makes, as RBAC: which role grants each and which ServiceAccount holds
//! that role. tests/deploy.rs checks deploy/rbac.yaml grants exactly these; the real-cluster
//! tests (tests/kubernetes/) ask the real authorizer, with `kubectl auth can-i`, that each is
//! allowed and that nothing else is.

#![allow(dead_code)]

/// A permission the code needs: which role carries it, the RBAC it takes, and the call it serves.
pub struct Need {
    pub role: &'static str,
    pub group: &'static str,
    pub resources: &'static [&'static str],
    /// Empty: any name.
    pub names: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub call: &'static str,
}

/// `get` on a watched resource reads nothing `list` does not already return; it is granted with
/// list and watch as the usual read set.
pub const READ: &[&str] = &["get", "list", "watch"];

pub const NEEDS: &[Need] = &[
    Need {
        role: "ClusterRole/petdns-controller",
        group: "apps",
        resources: &["statefulsets"],
        names: &[],
        verbs: READ,
        call: "controller/run.rs: watcher(Api::<StatefulSet>::all)",
    },
    Need {
        role: "ClusterRole/petdns-controller",
        group: "",
        resources: &["services", "pods", "nodes"],
        names: &[],
        verbs: READ,
        call: "controller/run.rs: watcher on Services, pods (label statefulset.kubernetes.io/pod-name), Nodes",
    },
    Need {
        role: "ClusterRole/petdns-controller",
        group: "petdns.io",
        resources: &["peersets", "peerslices"],
        names: &[],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        call: "controller/run.rs: watchers on PeerSets and PeerSlices; api.patch(Patch::Apply) creates or updates; api.delete when the StatefulSet is gone or a slice's block is empty",
    },
    Need {
        role: "ClusterRole/petdns-controller",
        group: "petdns.io",
        resources: &["peersets/status"],
        names: &[],
        verbs: &["get", "patch"],
        call: "controller/run.rs: api.patch_status(Patch::Apply)",
    },
    Need {
        role: "ClusterRole/petdns-controller",
        group: "events.k8s.io",
        resources: &["events"],
        names: &[],
        verbs: &["create", "patch"],
        call: "controller/run.rs: Recorder::publish (create; patch for a repeat's series)",
    },
    Need {
        role: "Role/petdns-controller-lease",
        group: "coordination.k8s.io",
        resources: &["leases"],
        names: &[],
        verbs: &["create"],
        call: "kube-lease-manager: LeaseState::create when the Lease does not exist",
    },
    Need {
        role: "Role/petdns-controller-lease",
        group: "coordination.k8s.io",
        resources: &["leases"],
        names: &["petdns-controller"],
        verbs: &["get", "patch"],
        call: "kube-lease-manager: get, then patch to acquire, renew and release",
    },
    Need {
        role: "ClusterRole/petdns-dns",
        group: "petdns.io",
        resources: &["peersets", "peerslices"],
        names: &[],
        verbs: READ,
        call: "source/kube.rs: watchers on PeerSets and PeerSlices (all or --namespace)",
    },
];

/// (binding, role, service account) in the petdns namespace.
pub const BINDINGS: &[(&str, &str, &str)] = &[
    (
        "ClusterRoleBinding/petdns-controller",
        "ClusterRole/petdns-controller",
        "petdns-controller",
    ),
    (
        "RoleBinding/petdns-controller-lease",
        "Role/petdns-controller-lease",
        "petdns-controller",
    ),
    (
        "ClusterRoleBinding/petdns-dns",
        "ClusterRole/petdns-dns",
        "petdns-dns",
    ),
];
