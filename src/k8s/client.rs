//! The Kubernetes client both cluster-mode programs use.

use anyhow::Context;

/// A Kubernetes client from `--kubeconfig`, or in-cluster config, `KUBECONFIG`, `~/.kube/config`.
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no in-cluster config and no kubeconfig found")?,
    };
    // No retries inside the client. kube's default retries 429, 503 and 504 up to 15 times,
    // from 5 ms doubling (3 to 8 minutes in all), before the caller sees an error: during an
    // outage that answers 503 the watches would sit in those retries, looking healthy, and
    // catch up minutes late. Every caller retries on its own, sooner: the watches with
    // `WatchBackoff` (at most 1 s), the controller's PeerSet writes every second, the leader
    // lease on its renewal loop; `petdns explain` reports the error.
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}
