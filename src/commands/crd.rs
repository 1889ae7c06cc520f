//! `petdns crd`: the CustomResourceDefinitions both cluster-mode programs speak.

/// The PeerSet and PeerSlice CRDs as YAML, two documents (`petdns crd`; `deploy/crd.yaml` is
/// this output).
pub fn crd_yaml() -> anyhow::Result<String> {
    use kube::CustomResourceExt;
    let peerset = serde_saphyr::to_string(&crate::identity::PeerSet::crd())?;
    let peerslice = serde_saphyr::to_string(&crate::identity::PeerSlice::crd())?;
    Ok(format!("{peerset}---\n{peerslice}"))
}
