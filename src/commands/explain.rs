//! `petdns explain NAME`: the answers of a name and the reasons behind them, from manifests or
//! from the cluster's PeerSets.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use hickory_proto::rr::RecordType;

use super::{AppError, EXIT_INVALID};
use crate::identity::{PeerSet, PeerSlice, parse_slice_name};
use crate::index::{self, IndexConfig};
use crate::k8s::kube_client;
use crate::source::leases::LeaseStore;
use crate::source::{embedded, manifests};

/// `petdns explain`: the answers of a name and the reasons behind them.
pub async fn explain(args: &crate::cli::ExplainArgs) -> anyhow::Result<u8> {
    use crate::identity::explain;
    let zone = crate::config::parse_zone(&args.zone).map_err(AppError::from)?;
    let zone_text = zone.to_string();
    let target = match explain::parse_target(&args.name, &zone_text) {
        Ok(t) => t,
        Err(e) => {
            println!("error: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    let (tables, namespaces) = if args.source.kube {
        let client = kube_client(args.source.kubeconfig.as_deref()).await?;
        let peersets: kube::Api<PeerSet> = kube::Api::all(client.clone());
        let peerslices: kube::Api<PeerSlice> = kube::Api::all(client);
        let sets = peersets
            .list(&Default::default())
            .await
            .context("listing PeerSets")?;
        let slices = peerslices
            .list(&Default::default())
            .await
            .context("listing PeerSlices")?;
        // The slices of each set, by namespace and name (`<set>.<block>`).
        let mut by_set: BTreeMap<(String, String), Vec<&PeerSlice>> = BTreeMap::new();
        for slice in &slices.items {
            let (Some(ns), Some(name)) = (&slice.metadata.namespace, &slice.metadata.name) else {
                continue;
            };
            if let Some((set, _)) = parse_slice_name(name) {
                by_set
                    .entry((ns.clone(), set.to_string()))
                    .or_default()
                    .push(slice);
            }
        }
        let mut tables = Vec::new();
        for ps in &sets.items {
            let key = (
                ps.metadata.namespace.clone().unwrap_or_default(),
                ps.metadata.name.clone().unwrap_or_default(),
            );
            let mut parts = Vec::new();
            for slice in by_set.get(&key).into_iter().flatten() {
                match slice.identities(&ps.spec) {
                    Ok(ids) => parts.push(ids),
                    Err(e) => println!("warning: {e}"),
                }
            }
            match ps.to_table(parts) {
                Ok(t) => tables.push(t),
                Err(e) => println!("warning: {e}"),
            }
        }
        let mut namespaces: BTreeSet<String> = manifests::BUILTIN_NAMESPACES
            .iter()
            .map(|s| s.to_string())
            .collect();
        namespaces.extend(tables.iter().map(|t| t.namespace.clone()));
        (tables, namespaces)
    } else {
        let objects = match manifests::load(&args.source.manifests) {
            Ok(o) => o,
            Err(errors) => {
                for e in &errors {
                    println!("error: {e}");
                }
                return Ok(EXIT_INVALID);
            }
        };
        let state_dir = args
            .leases
            .state_dir
            .clone()
            .or_else(crate::config::default_state_dir);
        let mut leases = match &state_dir {
            Some(dir) => LeaseStore::open_read_only(dir, args.leases.pod_cidr),
            None => LeaseStore::in_memory(args.leases.pod_cidr),
        };
        let tables =
            embedded::tables(&objects, &mut leases, crate::identity::SrvPriority::Uniform)?;
        (tables, objects.all_namespaces())
    };
    let index_cfg = IndexConfig {
        zone: zone.clone(),
        ttl: 5,
        negative_ttl: 5,
        ns_addresses: Vec::new(),
    };
    let snap = index::build(&tables, &namespaces, &index_cfg, 1, 1);
    let fqdn = match &target {
        explain::Target::Service { namespace, service } => {
            format!("{service}.{namespace}.svc.{zone_text}")
        }
        explain::Target::Pod {
            namespace,
            service,
            pod,
        } => format!("{pod}.{service}.{namespace}.svc.{zone_text}"),
        explain::Target::Port {
            namespace,
            service,
            port,
            protocol,
        } => format!("_{port}._{protocol}.{service}.{namespace}.svc.{zone_text}"),
    };
    println!("{fqdn}");
    if let Ok(name) = hickory_proto::rr::Name::from_ascii(&fqdn) {
        let lower = hickory_proto::rr::LowerName::new(&name);
        for rtype in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::SRV,
            RecordType::TXT,
        ] {
            if let index::Lookup::Found(_, rrset) = snap.lookup(&lower, rtype) {
                for r in rrset.answers.iter() {
                    match &r.data {
                        hickory_proto::rr::RData::TXT(txt) => {
                            let strings: Vec<String> = txt
                                .txt_data
                                .iter()
                                .map(|s| format!("{:?}", String::from_utf8_lossy(s)))
                                .collect();
                            println!("  {} {} IN TXT {}", r.name, r.ttl, strings.join(" "));
                        }
                        _ => println!("  {r}"),
                    }
                }
            }
        }
    }
    println!();
    print!("{}", explain::explain(&target, &tables));
    Ok(0)
}
