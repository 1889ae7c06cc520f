//! `petdns crd`: the CustomResourceDefinitions both cluster-mode programs speak.

/// The PeerSet CRD as YAML (`petdns crd`; `deploy/crd.yaml` is this output).
pub fn crd_yaml() -> anyhow::Result<String> {
    use kube::CustomResourceExt;
    let crd = crate::identity::PeerSet::crd();
    Ok(serde_saphyr::to_string(&crd)?)
}
