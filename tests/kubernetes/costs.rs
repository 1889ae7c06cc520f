//! The benchmark's 10,000-pod cluster on the real control plane, for `bench/run.py --coredns`
//! (not in the default run): the same namespaces, Services, StatefulSets and pod addresses as
//! `bench/gen_zone.py --preset large` writes for Knot and `bench/gen_manifests.py` for petdns's
//! manifests, made by the real StatefulSet controller, then served by `petdns serve --kube`
//! (through `petdns controller`) and by CoreDNS (its `kubernetes` plugin, without a cache and
//! with kubeadm's `cache 30`), each reading the same API server.
//!
//! It measures, for each server, the time from a pod's readiness change (its status written) to
//! the changed answer, and the resident memory of each server on this cluster and on an empty
//! one; it writes the servers' ports and pids to `$PETDNS_COSTS_DIR/servers.json` and holds them
//! running until `$PETDNS_COSTS_DIR/stop` exists, so that `bench/run.py` can load them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::coredns::CoreDns;
use crate::kubelet::{Kubelet, Readiness};
use crate::petdns::Petdns;
use crate::plane::{ControlPlane, repo};
use crate::support::{query, udp_exchange};
use crate::{SLOW, wait};

/// The A records `server` answers for `name`; `None` when it does not answer.
fn addresses(server: SocketAddr, name: &str) -> Option<Vec<IpAddr>> {
    let q = query(7, name, RecordType::A, Some(1232)).to_vec().ok()?;
    let reply = udp_exchange(server, &q, Duration::from_millis(500))?;
    let m = Message::from_vec(&reply).ok()?;
    Some(
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                hickory_proto::rr::RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect(),
    )
}

fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// The cluster of a gen_zone.py directory (`model.json`): its objects but the Pods, as the API
/// server should get them (dual-stack Services, so that EndpointSlices carry both families as
/// the Pods do), and every pod's addresses.
fn model(zonedir: &Path) -> (String, HashMap<String, Vec<IpAddr>>, usize) {
    let text = std::fs::read_to_string(zonedir.join("cluster.yaml"))
        .expect("bench/out/large/cluster.yaml");
    let mut objects = Vec::new();
    let mut addresses = HashMap::new();
    for doc in text.split("\n---\n").map(|d| d.trim_start_matches("---\n")) {
        if doc.trim().is_empty() {
            continue;
        }
        let mut v: Value = serde_json::from_str(doc.trim()).expect("gen_manifests.py writes JSON");
        match v["kind"].as_str() {
            Some("Pod") => {
                let key = format!(
                    "{}/{}",
                    v["metadata"]["namespace"].as_str().unwrap_or(""),
                    v["metadata"]["name"].as_str().unwrap_or("")
                );
                let ips = v["status"]["podIPs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["ip"].as_str()?.parse().ok())
                    .collect();
                addresses.insert(key, ips);
            }
            Some("Service") => {
                v["spec"]["ipFamilyPolicy"] = json!("PreferDualStack");
                objects.push(v);
            }
            _ => objects.push(v),
        }
    }
    let pods = addresses.len();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string();
    (list, addresses, pods)
}

/// Times one readiness change on every server: from the pod's status written (NotReady, then
/// Ready again) until each answers without, then with, the pod's address.
fn propagation(
    kubelet: &Kubelet,
    servers: &[(&str, SocketAddr)],
    ns: &str,
    pod: &str,
    name: &str,
    ip: IpAddr,
) -> Value {
    let mut out = serde_json::Map::new();
    for (ready, label) in [(false, "not_ready_ms"), (true, "ready_ms")] {
        let t0 = Instant::now();
        kubelet.set(
            ns,
            pod,
            if ready {
                Readiness::Ready
            } else {
                Readiness::NotReady
            },
        );
        let written = t0.elapsed();
        let mut times = serde_json::Map::new();
        let mut pending: Vec<&(&str, SocketAddr)> = servers.iter().collect();
        let deadline = Instant::now() + Duration::from_secs(90);
        while !pending.is_empty() && Instant::now() < deadline {
            pending.retain(|(server, addr)| {
                let has = addresses(*addr, name).is_some_and(|a| a.contains(&ip));
                if has == ready {
                    times.insert(
                        server.to_string(),
                        json!(t0.elapsed().as_secs_f64() * 1000.0),
                    );
                    false
                } else {
                    true
                }
            });
            std::thread::sleep(Duration::from_millis(2));
        }
        for (server, _) in pending {
            times.insert(server.to_string(), Value::Null);
        }
        times.insert(
            "status_written".into(),
            json!(written.as_secs_f64() * 1000.0),
        );
        out.insert(label.into(), Value::Object(times));
    }
    Value::Object(out)
}

#[test]
#[ignore = "a benchmark fixture for bench/run.py --coredns: 10,000 pods"]
fn side_by_side_cluster() {
    if !crate::plane::available() {
        return;
    }
    let dir = PathBuf::from(
        std::env::var("PETDNS_COSTS_DIR")
            .unwrap_or_else(|_| repo().join("bench/out/costs").display().to_string()),
    );
    std::fs::create_dir_all(&dir).expect("costs dir");
    let _ = std::fs::remove_file(dir.join("stop"));
    let bin = std::env::var("PETDNS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_petdns").into());
    let zonedir = repo().join("bench/out/large");
    let (objects, addrs, pods) = model(&zonedir);

    // Memory on an empty cluster first: the baseline of each server.
    let empty = ControlPlane::start(600);
    let base_petdns = Petdns::install_with(&empty, &bin, 1);
    let base_coredns = CoreDns::start(&empty, "pods insecure", "");
    std::thread::sleep(Duration::from_secs(2));
    let idle_empty = json!({
        "petdns_kube": rss(base_petdns.dns.pid()),
        "coredns": rss(base_coredns.pid()),
    });
    drop(base_coredns);
    drop(base_petdns);
    drop(empty);

    let plane = ControlPlane::start(600);
    let nodes: Vec<String> = (0..10).map(|i| format!("node-{i}")).collect();
    let node_refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let kubelet = Kubelet::start(&plane, &node_refs);
    kubelet.assign(addrs.clone());
    let started = Instant::now();
    plane.kubectl_stdin(&["apply", "-f", "-"], &objects);
    wait(SLOW * 40, || {
        let ready: usize = plane
            .kubectl(&[
                "get",
                "sts",
                "-A",
                "-o",
                "jsonpath={.items[*].status.readyReplicas}",
            ])
            .split_whitespace()
            .filter_map(|n| n.parse::<usize>().ok())
            .sum();
        (ready == pods).then_some(())
    })
    .unwrap_or_else(|| panic!("the {pods} pods never were all Ready"));
    let came_up = started.elapsed();

    let petdns = Petdns::install_with(&plane, &bin, 1);
    let coredns = CoreDns::start(&plane, "pods insecure", "");
    let cached = CoreDns::start(&plane, "pods insecure", "cache 30");
    let servers = [
        ("petdns_kube", petdns.dns.dns),
        ("coredns", coredns.dns),
        ("coredns_cache30", cached.dns),
    ];
    let last = "svc-9-9.svc-9.ns-99.svc.cluster.local.";
    for (server, addr) in &servers {
        wait(SLOW * 4, || {
            addresses(*addr, last).filter(|a| !a.is_empty()).map(|_| ())
        })
        .unwrap_or_else(|| panic!("{server} never answered {last}"));
    }
    std::thread::sleep(Duration::from_secs(5));
    let idle = json!({
        "petdns_kube": rss(petdns.dns.pid()),
        "coredns": rss(coredns.pid()),
        "coredns_cache30": rss(cached.pid()),
    });

    let mut changes = Vec::new();
    for k in 0..5 {
        let (n, s, p) = (17 * k + 3, (3 * k + 1) % 10, (7 * k + 2) % 10);
        let (ns, pod) = (format!("ns-{n}"), format!("svc-{s}-{p}"));
        let name = format!("{pod}.svc-{s}.{ns}.svc.cluster.local.");
        // The cache is warm, as for a client that asked before the change.
        for (_, addr) in &servers {
            let _ = addresses(*addr, &name);
        }
        let ip = addrs[&format!("{ns}/{pod}")][0];
        changes.push(propagation(&kubelet, &servers, &ns, &pod, &name, ip));
    }
    let result = json!({
        "pods": pods,
        "came_up_seconds": came_up.as_secs_f64(),
        "rss_bytes_idle": idle,
        "rss_bytes_idle_empty_cluster": idle_empty,
        "changes": changes,
        "servers": {
            "petdns_kube": {"port": petdns.dns.dns.port(), "pid": petdns.dns.pid()},
            "coredns": {"port": coredns.dns.port(), "pid": coredns.pid()},
            "coredns_cache30": {"port": cached.dns.port(), "pid": cached.pid()},
        },
        "kubeconfig": plane.kubeconfig,
    });
    std::fs::write(
        dir.join("servers.json"),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .expect("write");
    eprintln!("{result}");
    // Held for bench/run.py until it is done with the servers.
    wait(Duration::from_secs(4 * 3600), || {
        dir.join("stop").exists().then_some(())
    });
}
