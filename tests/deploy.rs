//! The deployment manifests in `deploy/`, checked without a cluster or network:
//! - the CRD is exactly what `petdns crd` prints (a generated file must not drift);
//! - each RBAC role grants exactly the API calls the code makes, no more and no less;
//! - every pod passes Pod Security "restricted";
//! - every file kustomization.yaml lists exists, and every manifest is listed;
//! - the container args are accepted by the real binary, and the ports agree with them.
//!
//! Schema validation against the Kubernetes API is `scripts/validate-deploy.sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use serde_json::{Value, json};

#[path = "support/rbac.rs"]
mod rbac;
use rbac::{BINDINGS, NEEDS};

const NAMESPACE: &str = "petdns";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(file: &str) -> String {
    let path = deploy_dir().join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every YAML document of a file in `deploy/`.
fn documents(file: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&read(file))
        .unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn kind_name(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The one object of this kind and name in a file.
fn object(file: &str, kind: &str, name: &str) -> Value {
    let want = format!("{kind}/{name}");
    let mut found: Vec<Value> = documents(file)
        .into_iter()
        .filter(|d| kind_name(d) == want)
        .collect();
    assert_eq!(found.len(), 1, "deploy/{file} must hold exactly one {want}");
    found.remove(0)
}

/// The strings of a YAML sequence (empty when absent).
fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn petdns() -> Command {
    Command::new(env!("CARGO_BIN_EXE_petdns"))
}

// ---------------------------------------------------------------------------------------------
// (a) The CRD is generated
// ---------------------------------------------------------------------------------------------

#[test]
fn crd_yaml_is_the_output_of_petdns_crd() {
    let out = petdns().arg("crd").output().expect("running petdns crd");
    assert!(
        out.status.success(),
        "petdns crd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).expect("petdns crd prints UTF-8");
    let committed = read("crd.yaml");
    if generated != committed {
        let line = generated
            .lines()
            .zip(committed.lines())
            .position(|(g, c)| g != c)
            .map_or_else(
                || generated.lines().count().min(committed.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "deploy/crd.yaml differs from `petdns crd` (first at line {line}); the PeerSet types \
             changed, so regenerate it with:\n\n    cargo run -q -- crd > deploy/crd.yaml\n"
        );
    }
}

/// Every `format` in the CRD schemas is one the API server knows
/// (k8s.io/apiextensions-apiserver, `SupportedFormats`): it warns about any other on every
/// write of the CRD, as the real API server did about `uint16` and `ip` (tests/kubernetes/).
#[test]
fn crd_schemas_use_only_formats_kubernetes_knows() {
    const KNOWN: &[&str] = &[
        "bsonobjectid",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "uuid5",
        "isbn",
        "isbn10",
        "isbn13",
        "creditcard",
        "ssn",
        "hexcolor",
        "rgbcolor",
        "byte",
        "password",
        "date",
        "duration",
        "datetime",
        "date-time",
        "int32",
        "int64",
        "float",
        "double",
    ];
    fn walk(v: &Value, path: &str, bad: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(f)) = m.get("format")
                    && !KNOWN.contains(&f.as_str())
                {
                    bad.push(format!("{path}: format {f:?}"));
                }
                for (k, v) in m {
                    walk(v, &format!("{path}.{k}"), bad);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, path, bad)),
            _ => {}
        }
    }
    let mut bad = Vec::new();
    for crd in documents("crd.yaml") {
        walk(&crd, &kind_name(&crd), &mut bad);
    }
    assert!(
        bad.is_empty(),
        "formats the API server does not know:\n  {}",
        bad.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// (b) RBAC: least privilege
// ---------------------------------------------------------------------------------------------

/// One atomic grant: (role, API group, resource, resource name or "" for any, verb).
type Grant = (String, String, String, String, String);

fn needed_grants() -> BTreeMap<Grant, &'static str> {
    let mut out = BTreeMap::new();
    for n in NEEDS {
        let names: Vec<&str> = if n.names.is_empty() {
            vec![""]
        } else {
            n.names.to_vec()
        };
        for r in n.resources {
            for name in &names {
                for v in n.verbs {
                    let g = (
                        n.role.to_string(),
                        n.group.to_string(),
                        r.to_string(),
                        name.to_string(),
                        v.to_string(),
                    );
                    out.insert(g, n.call);
                }
            }
        }
    }
    out
}

/// The grants of the roles in rbac.yaml, and anything that cannot be expressed as one.
fn granted(docs: &[Value]) -> (BTreeSet<Grant>, Vec<String>) {
    let mut grants = BTreeSet::new();
    let mut odd = Vec::new();
    for d in docs {
        let kind = d["kind"].as_str().unwrap_or_default();
        if kind != "Role" && kind != "ClusterRole" {
            continue;
        }
        let role = kind_name(d);
        if !d["aggregationRule"].is_null() {
            odd.push(format!("{role} has an aggregationRule"));
        }
        for rule in d["rules"].as_array().into_iter().flatten() {
            if !rule["nonResourceURLs"].is_null() {
                odd.push(format!(
                    "{role} grants nonResourceURLs {}",
                    rule["nonResourceURLs"]
                ));
            }
            let names = strings(&rule["resourceNames"]);
            let names = if names.is_empty() { vec![""] } else { names };
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for name in &names {
                        for verb in strings(&rule["verbs"]) {
                            grants.insert((
                                role.clone(),
                                group.to_string(),
                                resource.to_string(),
                                name.to_string(),
                                verb.to_string(),
                            ));
                        }
                    }
                }
            }
        }
    }
    (grants, odd)
}

fn show(g: &Grant) -> String {
    let (role, group, resource, name, verb) = g;
    let group = if group.is_empty() { "core" } else { group };
    let name = if name.is_empty() {
        String::new()
    } else {
        format!(" (name {name})")
    };
    format!("{role}: {verb} {group}/{resource}{name}")
}

#[test]
fn rbac_grants_exactly_the_calls_the_code_makes() {
    let docs = documents("rbac.yaml");
    let needed = needed_grants();
    let (granted, mut problems) = granted(&docs);
    for g in granted.iter().filter(|g| !needed.contains_key(*g)) {
        problems.push(format!("grants more than the code needs: {}", show(g)));
    }
    for (g, call) in needed.iter().filter(|(g, _)| !granted.contains(*g)) {
        problems.push(format!("missing {}, needed by {call}", show(g)));
    }
    assert!(
        problems.is_empty(),
        "deploy/rbac.yaml does not match the API calls in tests/support/rbac.rs NEEDS:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn rbac_binds_each_role_to_its_service_account_only() {
    let docs = documents("rbac.yaml");
    let mut bindings = BTreeMap::new();
    let mut accounts = BTreeSet::new();
    for d in &docs {
        match d["kind"].as_str().unwrap_or_default() {
            "ServiceAccount" => {
                assert_eq!(d["metadata"]["namespace"], NAMESPACE, "{}", kind_name(d));
                accounts.insert(
                    d["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
            "RoleBinding" | "ClusterRoleBinding" => {
                let role = format!(
                    "{}/{}",
                    d["roleRef"]["kind"].as_str().unwrap_or_default(),
                    d["roleRef"]["name"].as_str().unwrap_or_default()
                );
                bindings.insert(kind_name(d), (role, d["subjects"].clone()));
            }
            "Role" => assert_eq!(d["metadata"]["namespace"], NAMESPACE, "{}", kind_name(d)),
            _ => {}
        }
    }
    let expected: BTreeMap<String, (String, Value)> = BINDINGS
        .iter()
        .map(|(b, r, sa)| {
            let subjects = json!([{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]);
            (b.to_string(), (r.to_string(), subjects))
        })
        .collect();
    assert_eq!(bindings, expected, "bindings in deploy/rbac.yaml");
    let wanted: BTreeSet<String> = BINDINGS.iter().map(|(_, _, sa)| sa.to_string()).collect();
    assert_eq!(accounts, wanted, "ServiceAccounts in deploy/rbac.yaml");

    for (file, kind, name, sa) in [
        (
            "controller.yaml",
            "Deployment",
            "petdns-controller",
            "petdns-controller",
        ),
        ("dns.yaml", "DaemonSet", "petdns-dns", "petdns-dns"),
    ] {
        let w = object(file, kind, name);
        assert_eq!(
            w["spec"]["template"]["spec"]["serviceAccountName"], sa,
            "{kind}/{name} must run as {sa}"
        );
    }
}

#[test]
fn lease_role_names_the_lease_the_controller_uses() {
    let (args, _) = container_args("controller.yaml", "Deployment", "petdns-controller");
    let cli = parse(&args);
    let petdns::cli::Command::Controller(c) = cli.command else {
        panic!("the Deployment does not run `petdns controller`");
    };
    let env = &object("controller.yaml", "Deployment", "petdns-controller")["spec"]["template"]["spec"]
        ["containers"][0]["env"];
    let from_field = |var: &str| {
        env.as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == var)
            .map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone())
    };
    assert_eq!(
        from_field("POD_NAMESPACE"),
        Some(json!("metadata.namespace")),
        "the Lease lives in the pod's namespace (POD_NAMESPACE, the Role's namespace)"
    );
    assert_eq!(
        from_field("POD_NAME"),
        Some(json!("metadata.name")),
        "each replica's Lease identity is its pod name"
    );
    let role = object("rbac.yaml", "Role", "petdns-controller-lease");
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);
    let named: Vec<&str> = role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| strings(&r["resourceNames"]))
        .collect();
    assert_eq!(
        named,
        [c.lease_name.as_str()],
        "the Role's resourceNames must be the controller's --lease-name"
    );
}

// ---------------------------------------------------------------------------------------------
// (c) Pod Security "restricted"
// ---------------------------------------------------------------------------------------------

/// Volume types Pod Security "restricted" allows.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// What keeps a pod spec from passing Pod Security "restricted" (empty when it passes).
fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[host] == true {
            out.push(format!("pod sets {host}"));
        }
    }
    for v in pod["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or("?");
        let types: Vec<&String> = v
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .filter(|k| *k != "name")
            .collect();
        for t in types {
            if !RESTRICTED_VOLUMES.contains(&t.as_str()) {
                out.push(format!("volume {name} is a {t} volume"));
            }
        }
    }
    let psc = &pod["securityContext"];
    if psc["runAsNonRoot"] == false {
        out.push("pod sets runAsNonRoot: false".into());
    }
    if psc["runAsUser"] == 0 {
        out.push("pod sets runAsUser: 0".into());
    }
    if !psc["sysctls"].is_null() {
        out.push("pod sets sysctls".into());
    }
    let seccomp_ok = |sc: &Value| {
        matches!(
            sc["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault" | "Localhost")
        )
    };
    if psc["seccompProfile"]["type"] == "Unconfined" {
        out.push("pod seccompProfile is Unconfined".into());
    }
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|k| pod[k].as_array().into_iter().flatten());
    for c in containers {
        let name = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        let mut fail = |why: &str| out.push(format!("container {name}: {why}"));
        if !(sc["runAsNonRoot"] == true || psc["runAsNonRoot"] == true)
            || sc["runAsNonRoot"] == false
        {
            fail("runAsNonRoot is not true");
        }
        if sc["runAsUser"] == 0 {
            fail("runAsUser is 0");
        }
        if sc["allowPrivilegeEscalation"] != false {
            fail("allowPrivilegeEscalation is not false");
        }
        if sc["privileged"] == true {
            fail("privileged");
        }
        if !strings(&sc["capabilities"]["drop"]).contains(&"ALL") {
            fail("capabilities do not drop ALL");
        }
        for cap in strings(&sc["capabilities"]["add"]) {
            if cap != "NET_BIND_SERVICE" {
                fail(&format!("adds capability {cap}"));
            }
        }
        if !(seccomp_ok(sc) || seccomp_ok(psc)) || sc["seccompProfile"]["type"] == "Unconfined" {
            fail("no seccompProfile RuntimeDefault");
        }
        if !sc["procMount"].is_null() && sc["procMount"] != "Default" {
            fail("procMount is not Default");
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            if !p["hostPort"].is_null() && p["hostPort"] != 0 {
                fail("uses a hostPort");
            }
        }
    }
    out
}

/// The pod specs of every workload in controller.yaml and dns.yaml.
fn workloads() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for file in ["controller.yaml", "dns.yaml"] {
        for d in documents(file) {
            let pod = &d["spec"]["template"]["spec"];
            if pod.is_object() {
                out.push((format!("deploy/{file}: {}", kind_name(&d)), pod.clone()));
            }
        }
    }
    assert_eq!(
        out.len(),
        2,
        "expected the controller Deployment and the DNS DaemonSet"
    );
    out
}

#[test]
fn every_pod_passes_pod_security_restricted() {
    let mut problems = Vec::new();
    for (what, pod) in workloads() {
        for v in restricted_violations(&pod) {
            problems.push(format!("{what}: {v}"));
        }
        // Beyond "restricted": the image's nonroot user and an immutable root filesystem.
        for c in pod["containers"].as_array().into_iter().flatten() {
            let sc = &c["securityContext"];
            if sc["readOnlyRootFilesystem"] != true {
                problems.push(format!("{what}: readOnlyRootFilesystem is not true"));
            }
            if sc["runAsUser"] != 65532 && pod["securityContext"]["runAsUser"] != 65532 {
                problems.push(format!(
                    "{what}: runAsUser is not 65532 (distroless nonroot)"
                ));
            }
            if !strings(&sc["capabilities"]["add"]).is_empty() {
                problems.push(format!(
                    "{what}: adds capabilities (petdns listens on 5353)"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let ns = object("namespace.yaml", "Namespace", NAMESPACE);
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            ns["metadata"]["labels"][format!("pod-security.kubernetes.io/{mode}")],
            "restricted",
            "namespace label pod-security.kubernetes.io/{mode}"
        );
    }
}

/// The checker itself finds each kind of violation (so a pass above means something).
#[test]
fn pod_security_check_rejects_a_privileged_pod() {
    let pod = json!({
        "hostNetwork": true,
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        "containers": [{
            "name": "bad",
            "ports": [{"containerPort": 53, "hostPort": 53}],
            "securityContext": {
                "privileged": true,
                "capabilities": {"add": ["NET_ADMIN", "NET_BIND_SERVICE"]},
                "seccompProfile": {"type": "Unconfined"},
            },
        }],
    });
    let v = restricted_violations(&pod);
    for want in [
        "pod sets hostNetwork",
        "volume root is a hostPath volume",
        "container bad: runAsNonRoot is not true",
        "container bad: allowPrivilegeEscalation is not false",
        "container bad: privileged",
        "container bad: capabilities do not drop ALL",
        "container bad: adds capability NET_ADMIN",
        "container bad: no seccompProfile RuntimeDefault",
        "container bad: uses a hostPort",
    ] {
        assert!(v.iter().any(|x| x == want), "missing {want:?} in {v:#?}");
    }
    assert!(
        !v.iter().any(|x| x.contains("NET_BIND_SERVICE")),
        "NET_BIND_SERVICE is allowed: {v:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// (d) The kustomization
// ---------------------------------------------------------------------------------------------

#[test]
fn kustomization_lists_every_manifest_and_each_exists() {
    let k: Value = serde_saphyr::from_str(&read("kustomization.yaml")).expect("kustomization.yaml");
    assert_eq!(k["namespace"], NAMESPACE);
    let listed: BTreeSet<&str> = strings(&k["resources"]).into_iter().collect();
    for r in &listed {
        assert!(
            deploy_dir().join(r).is_file(),
            "deploy/kustomization.yaml lists {r}, which does not exist"
        );
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(deploy_dir())
        .expect("deploy/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    for f in &on_disk {
        assert!(
            listed.contains(f.as_str()),
            "deploy/{f} is not listed in deploy/kustomization.yaml: `kubectl apply -k` skips it"
        );
    }

    // The `images` entry must name the image the containers use, or pinning a tag does nothing.
    let images: BTreeSet<&str> = k["images"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str())
        .collect();
    for (what, pod) in workloads() {
        for c in pod["containers"].as_array().into_iter().flatten() {
            let image = c["image"].as_str().unwrap_or_default();
            assert!(
                images.contains(image),
                "{what}: image {image:?} has no `images` entry in kustomization.yaml"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (e) Container args and ports
// ---------------------------------------------------------------------------------------------

/// Stand-in values for the downward-API variables the args reference (RFC 5737 address).
fn fake_env(var: &str) -> Option<&'static str> {
    match var {
        "POD_IP" => Some("192.0.2.10"),
        "POD_NAME" => Some("petdns-controller-5d9c7-abcde"),
        "POD_NAMESPACE" => Some(NAMESPACE),
        _ => None,
    }
}

/// The first container's args with `$(VAR)` expanded as the kubelet would, and the container.
fn container_args(file: &str, kind: &str, name: &str) -> (Vec<String>, Value) {
    let w = object(file, kind, name);
    let c = w["spec"]["template"]["spec"]["containers"][0].clone();
    assert!(
        c["command"].is_null(),
        "{kind}/{name}: use args, the image's ENTRYPOINT is petdns"
    );
    let defined: BTreeSet<&str> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .collect();
    let args = strings(&c["args"])
        .into_iter()
        .map(|a| {
            let mut out = a.to_string();
            while let Some(start) = out.find("$(") {
                let end = out[start..].find(')').expect("unterminated $(") + start;
                let var = out[start + 2..end].to_string();
                assert!(
                    defined.contains(var.as_str()),
                    "{kind}/{name}: $({var}) is not in the container's env; the kubelet would pass it literally"
                );
                let value = fake_env(&var).unwrap_or_else(|| panic!("no stand-in for $({var})"));
                out.replace_range(start..=end, value);
            }
            out
        })
        .collect();
    (args, c)
}

fn parse(args: &[String]) -> petdns::cli::Cli {
    petdns::cli::Cli::try_parse_from(
        std::iter::once("petdns".to_string()).chain(args.iter().cloned()),
    )
    .unwrap_or_else(|e| panic!("petdns {}: {e}", args.join(" ")))
}

/// The real binary accepts the args: clap checks each flag and value before `--help`.
fn binary_accepts(args: &[String]) {
    let out = petdns()
        .args(args)
        .arg("--help")
        .output()
        .expect("running petdns");
    assert!(
        out.status.success(),
        "petdns {} rejected its args: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn container_port(c: &Value, port: u16, protocol: &str) -> Option<String> {
    c["ports"].as_array().into_iter().flatten().find_map(|p| {
        (p["containerPort"] == port && p["protocol"].as_str().unwrap_or("TCP") == protocol)
            .then(|| p["name"].as_str().unwrap_or_default().to_string())
    })
}

fn assert_probes_on(what: &str, c: &Value, admin_port: u16) {
    let name = container_port(c, admin_port, "TCP")
        .unwrap_or_else(|| panic!("{what}: no containerPort {admin_port} for --admin"));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{what}: {probe} path");
        assert!(
            get["port"] == name.as_str() || get["port"] == admin_port,
            "{what}: {probe} must reach the admin port {admin_port}, not {}",
            get["port"]
        );
    }
}

#[test]
fn daemonset_args_are_accepted_by_petdns_serve() {
    let (args, c) = container_args("dns.yaml", "DaemonSet", "petdns-dns");
    binary_accepts(&args);
    let cli = parse(&args);
    let petdns::cli::Command::Serve(serve) = cli.command else {
        panic!("the DaemonSet does not run `petdns serve`");
    };
    assert!(serve.source.kube, "the DaemonSet serves PeerSets (--kube)");
    petdns::config::ServeConfig::from_args(&serve)
        .unwrap_or_else(|e| panic!("petdns {}: {e}", args.join(" ")));
    assert_eq!(
        serve.advertise,
        ["192.0.2.10".parse::<std::net::IpAddr>().unwrap()]
    );

    for addr in [serve.listen, serve.admin] {
        assert!(
            addr.ip().is_unspecified(),
            "{addr}: must listen on all addresses to be reached through the pod IP"
        );
    }
    let dns = serve.listen.port();
    assert!(dns >= 1024, "--listen {dns} would need NET_BIND_SERVICE");
    for proto in ["UDP", "TCP"] {
        assert!(
            container_port(&c, dns, proto).is_some(),
            "DaemonSet: no containerPort {dns}/{proto} for --listen"
        );
    }
    assert_probes_on("DaemonSet", &c, serve.admin.port());

    // The Service sends 53 to --listen and the metrics port to --admin.
    let svc = object("service.yaml", "Service", "petdns-dns");
    let ports = svc["spec"]["ports"].as_array().expect("Service ports");
    for proto in ["UDP", "TCP"] {
        assert!(
            ports
                .iter()
                .any(|p| p["port"] == 53 && p["protocol"] == proto && p["targetPort"] == dns),
            "Service petdns-dns: no 53/{proto} -> {dns}"
        );
    }
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "metrics" && p["targetPort"] == serve.admin.port()),
        "Service petdns-dns: no metrics port -> {}",
        serve.admin.port()
    );
    assert_eq!(
        svc["spec"]["selector"],
        object("dns.yaml", "DaemonSet", "petdns-dns")["spec"]["selector"]["matchLabels"],
        "the Service selects the DaemonSet's pods"
    );
}

#[test]
fn deployment_args_are_accepted_by_petdns_controller() {
    let (args, c) = container_args("controller.yaml", "Deployment", "petdns-controller");
    binary_accepts(&args);
    let cli = parse(&args);
    let petdns::cli::Command::Controller(ctl) = cli.command else {
        panic!("the Deployment does not run `petdns controller`");
    };
    petdns::config::ControllerConfig::from_args(&ctl)
        .unwrap_or_else(|e| panic!("petdns {}: {e}", args.join(" ")));
    assert!(
        ctl.admin.ip().is_unspecified(),
        "--admin must listen on all addresses for the kubelet's probes, not {}",
        ctl.admin
    );
    assert_probes_on("Deployment", &c, ctl.admin.port());
}
