//! petdns installed on a plane as users install it: `kubectl apply -k deploy/` as shipped
//! (CRDs, namespace, RBAC, the controller Deployment, the DNS DaemonSet), then the processes
//! run here (there is no kubelet to run the pods) with tokens of the ServiceAccounts deploy/
//! creates, so the RBAC under test is the one users get.

use std::path::PathBuf;

use crate::plane::{ControlPlane, register_pid, repo};
use crate::support::{Server, poll};

/// The objects of deploy/, applied and established.
pub fn apply_deploy(plane: &ControlPlane) {
    let deploy = repo().join("deploy");
    let out = plane.kubectl_output(&["apply", "-k", deploy.to_str().expect("utf-8 path")]);
    let said = String::from_utf8_lossy(&out.stderr);
    // The API server warns about what it accepts but does not understand (a schema format it
    // does not know, a deprecated field): deploy/ as shipped draws no warning.
    assert!(
        out.status.success() && !said.contains("Warning"),
        "kubectl apply -k deploy/: {}{said}",
        String::from_utf8_lossy(&out.stdout)
    );
    plane.kubectl(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout",
        "60s",
        "crd/peersets.petdns.io",
    ]);
}

/// A kubeconfig holding a token of ServiceAccount `petdns/<account>`.
pub fn account_kubeconfig(plane: &ControlPlane, account: &str) -> PathBuf {
    let token = plane.kubectl(&[
        "create",
        "token",
        account,
        "-n",
        "petdns",
        "--duration",
        "6h",
    ]);
    plane.token_kubeconfig(account, token.trim())
}

/// Two controller replicas and one DNS server, as deploy/ runs them.
pub struct Petdns {
    pub controllers: Vec<Option<Server>>,
    pub dns: Server,
}

impl Petdns {
    /// Applies deploy/ and starts `petdns controller` twice and `petdns serve --kube` once.
    /// `shared`: the processes are also killed by the shared plane's reaper.
    pub fn install(plane: &ControlPlane, shared: bool) -> Petdns {
        let p = Petdns::install_with(plane, env!("CARGO_BIN_EXE_petdns"), 2);
        if shared {
            for pid in p.pids() {
                register_pid(&plane.dir, pid);
            }
        }
        p
    }

    /// [`Petdns::install`] with another petdns binary (a release build, for benchmarks) and
    /// `replicas` controller replicas.
    pub fn install_with(plane: &ControlPlane, bin: &str, replicas: usize) -> Petdns {
        apply_deploy(plane);
        let controller_kubeconfig = account_kubeconfig(plane, "petdns-controller");
        let dns_kubeconfig = account_kubeconfig(plane, "petdns-dns");
        let controllers = ["controller-a", "controller-b"]
            .iter()
            .take(replicas)
            .map(|id| Some(controller(bin, &controller_kubeconfig, id)))
            .collect::<Vec<_>>();
        let dns = serve(bin, &dns_kubeconfig);
        Petdns { controllers, dns }
    }

    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.controllers.iter().flatten().map(Server::pid).collect();
        pids.push(self.dns.pid());
        pids
    }

    /// The index of the controller replica holding the leader Lease, once one does.
    pub fn leader(&self, plane: &ControlPlane) -> usize {
        let holder = poll(std::time::Duration::from_secs(30), || {
            let out = plane.kubectl_output(&[
                "get",
                "lease",
                "petdns-controller",
                "-n",
                "petdns",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ]);
            let h = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !h.is_empty()).then_some(h)
        })
        .expect("a controller replica takes the Lease");
        match holder.as_str() {
            "controller-a" => 0,
            "controller-b" => 1,
            other => panic!("unexpected Lease holder {other}"),
        }
    }
}

/// `petdns controller` as deploy/controller.yaml runs it, with a short Lease.
pub fn controller(bin: &str, kubeconfig: &std::path::Path, identity: &str) -> Server {
    Server::spawn_with(
        bin,
        &[
            "controller",
            "--kubeconfig",
            kubeconfig.to_str().expect("utf-8 path"),
            "--admin",
            "127.0.0.1:0",
            "--lease-namespace",
            "petdns",
            "--identity",
            identity,
            "--lease-seconds",
            "3",
        ],
        true,
    )
}

/// `petdns serve --kube` as deploy/dns.yaml runs it, on loopback port 0.
pub fn serve(bin: &str, kubeconfig: &std::path::Path) -> Server {
    Server::spawn_with(
        bin,
        &[
            "serve",
            "--kube",
            "--kubeconfig",
            kubeconfig.to_str().expect("utf-8 path"),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
        true,
    )
}
