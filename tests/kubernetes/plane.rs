//! A real control plane for the tests: `scripts/k8s-up.sh` in a temporary directory, stopped
//! with `scripts/k8s-down.sh` when dropped, or, for the plane the tests share, by a reaper
//! process when the test binary exits.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Where the repository is.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the tests may say they were skipped: not under CI, where a control plane that
/// cannot be built or started is a failure.
fn skipping_allowed() -> bool {
    std::env::var("CI").map_or(true, |v| v.is_empty() || v == "false")
}

/// Why the control plane cannot be had on this machine, if it cannot: no Go toolchain and no
/// binaries built before.
fn unavailable() -> Option<String> {
    let built = repo().join("target/k8s");
    let have_binaries = std::fs::read_dir(&built).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().join("bin/kube-apiserver").exists())
    });
    if have_binaries {
        return None;
    }
    match Command::new("go").arg("version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some(
            "no Go toolchain on PATH and no control plane built under target/k8s/: \
             the real Kubernetes tests need Go to build kube-apiserver, \
             kube-controller-manager, kubectl and etcd (scripts/k8s-build.sh)"
                .to_string(),
        ),
    }
}

/// `None` (after saying so loudly, once) when the control plane cannot be had and skipping is
/// allowed; panics when it cannot be had under CI.
pub fn available() -> bool {
    static SAID: OnceLock<Option<String>> = OnceLock::new();
    let why = SAID.get_or_init(|| {
        let why = unavailable();
        if let Some(why) = &why {
            assert!(
                skipping_allowed(),
                "CI is set and the real control plane cannot be had: {why}"
            );
            // Written to the terminal, not through the test harness's capture, so that it
            // shows even though the tests pass.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: the real Kubernetes tests (tests/kubernetes/): {why}\n"
            );
        }
        why
    });
    why.is_none()
}

/// One control plane: etcd, kube-apiserver and kube-controller-manager on loopback.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub server: String,
    pub ca: PathBuf,
    /// The temporary directory, for a plane of one test (removed when dropped).
    _tmp: Option<tempfile::TempDir>,
    reaped: bool,
}

impl ControlPlane {
    /// Starts a plane in a new temporary directory; `node_grace` is how long a Node may go
    /// without a Lease renewal before it is marked Unknown.
    pub fn start(node_grace_seconds: u32) -> ControlPlane {
        let tmp = tempfile::Builder::new()
            .prefix("petdns-k8s-")
            .tempdir()
            .expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut plane = ControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            ca: dir.join("pki/ca.crt"),
            server: String::new(),
            dir,
            _tmp: Some(tmp),
            reaped: false,
        };
        plane.up(node_grace_seconds);
        plane
    }

    /// The plane the tests share: started once per test binary, stopped by a reaper process
    /// when the binary exits (statics are never dropped).
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<ControlPlane> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mut plane = ControlPlane::start(6);
            let tmp = plane._tmp.take().expect("a fresh plane has its directory");
            let dir = tmp.keep();
            plane.reaped = true;
            reap_when_this_process_exits(&dir);
            plane
        })
    }

    /// Runs `scripts/k8s-up.sh` on this plane's directory: starts what is not running.
    pub fn up(&mut self, node_grace_seconds: u32) {
        let out = Command::new("bash")
            .arg(repo().join("scripts/k8s-up.sh"))
            .arg(&self.dir)
            .env("K8S_NODE_GRACE", node_grace_seconds.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/k8s-up.sh");
        assert!(
            out.status.success(),
            "scripts/k8s-up.sh {} failed ({}):\n{}{}",
            self.dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(self.dir.join("env")).expect("k8s-up.sh wrote env");
        self.server = env
            .lines()
            .find_map(|l| l.strip_prefix("K8S_SERVER="))
            .expect("K8S_SERVER in env")
            .to_string();
    }

    /// Stops one component (`kube-apiserver`, `kube-controller-manager`, `etcd`) and waits
    /// until it has exited.
    pub fn stop(&self, component: &str) {
        let pidfile = self.dir.join("run").join(format!("{component}.pid"));
        let pid = std::fs::read_to_string(&pidfile).expect("pid file");
        let st = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "kill -TERM {p}; for i in $(seq 200); do kill -0 {p} 2>/dev/null || exit 0; sleep 0.1; done; kill -KILL {p}",
                p = pid.trim()
            ))
            .status()
            .expect("kill");
        assert!(st.success(), "stopping {component}");
        let _ = std::fs::remove_file(pidfile);
    }

    /// `kubectl` with the cluster-admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_as(&self.kubeconfig, args, None)
    }

    /// `kubectl` with `stdin` piped in; panics unless it succeeds.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> String {
        self.kubectl_as(&self.kubeconfig, args, Some(stdin))
    }

    /// `kubectl` as it ran: status, stdout and stderr.
    pub fn kubectl_output(&self, args: &[&str]) -> Output {
        Command::new(self.dir.join("bin/kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
        let mut cmd = Command::new(self.dir.join("bin/kubectl"));
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(text.as_bytes())
                .expect("write kubectl stdin");
        }
        let out = child.wait_with_output().expect("kubectl output");
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A kubeconfig for `token` (a ServiceAccount's), written into this plane's directory.
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    \
                 certificate-authority: {ca}\nusers:\n- name: {name}\n  user:\n    token: {token}\n\
                 contexts:\n- name: c\n  context: {{cluster: c, user: {name}}}\ncurrent-context: c\n",
                self.server,
                ca = self.ca.display(),
            ),
        )
        .expect("write kubeconfig");
        path
    }

    /// A kube client with the cluster-admin kubeconfig, for `rt`.
    pub fn client(&self, rt: &tokio::runtime::Runtime) -> kube::Client {
        let kubeconfig = self.kubeconfig.clone();
        rt.block_on(async move {
            let kc = kube::config::Kubeconfig::read_from(&kubeconfig).expect("read kubeconfig");
            let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .expect("kubeconfig");
            kube::Client::try_from(cfg).expect("kube client")
        })
    }

    /// The last lines of a component's log, for failure messages.
    pub fn log_tail(&self, component: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join("logs").join(format!("{component}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = Command::new("bash")
                .arg(repo().join("scripts/k8s-down.sh"))
                .arg(&self.dir)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A process of its own that waits for this test binary to exit, then stops the control plane
/// in `dir`, kills the petdns processes listed in `dir/run/petdns.pids`, and removes `dir`.
fn reap_when_this_process_exits(dir: &Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         for p in $(cat '{dir}/run/petdns.pids' 2>/dev/null); do kill -KILL $p 2>/dev/null; done; \
         bash '{down}' '{dir}' 2>/dev/null; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display(),
        down = repo().join("scripts/k8s-down.sh").display(),
    );
    // Started through a shell that exits at once, so the reaper belongs to init, not to this
    // process, and nothing is left to wait for.
    let st = Command::new("bash")
        .arg("-c")
        .arg("setsid bash -c \"$0\" </dev/null >/dev/null 2>&1 &")
        .arg(&script)
        .status()
        .expect("start the reaper");
    assert!(st.success(), "starting the reaper");
}

/// Records a petdns process of the shared plane so that the reaper kills it.
pub fn register_pid(dir: &Path, pid: u32) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("run/petdns.pids"))
        .expect("petdns.pids");
    writeln!(f, "{pid}").expect("write petdns.pids");
}
