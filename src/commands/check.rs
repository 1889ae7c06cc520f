//! `petdns check`: the identity table of the manifests and every error, without serving.

use std::io::Write;

use super::EXIT_INVALID;
use crate::config::CheckConfig;
use crate::identity::IdentityTable;
use crate::source::embedded;
use crate::source::leases::LeaseStore;
use crate::source::manifests;

/// `petdns check`: prints the identity table and returns the exit code.
pub fn check(cfg: &CheckConfig, out: &mut dyn Write) -> u8 {
    let objects = match manifests::load(&cfg.manifests) {
        Ok(o) => o,
        Err(errors) => {
            for e in &errors {
                let _ = writeln!(out, "error: {e}");
            }
            let _ = writeln!(out, "{} error(s); nothing loaded", errors.len());
            return EXIT_INVALID;
        }
    };
    let mut leases = match &cfg.state_dir {
        Some(dir) => LeaseStore::open_read_only(dir, cfg.pod_cidr),
        None => LeaseStore::in_memory(cfg.pod_cidr),
    };
    let tables = match embedded::tables(&objects, &mut leases, cfg.srv_priority) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return EXIT_INVALID;
        }
    };
    let _ = write_table(&tables, out);
    0
}

fn write_table(tables: &[IdentityTable], out: &mut dyn Write) -> std::io::Result<()> {
    let header = [
        "NAMESPACE",
        "SET",
        "ORDINAL",
        "POD",
        "STATE",
        "ADDRESSES",
        "PUBLISHED",
    ];
    let mut rows: Vec<[String; 7]> = Vec::new();
    for t in tables {
        for i in &t.identities {
            let addrs = if i.addresses.is_empty() {
                "-".to_string()
            } else {
                i.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            rows.push([
                t.namespace.clone(),
                t.stateful_set.clone(),
                i.ordinal.to_string(),
                i.pod.clone(),
                i.state.to_string(),
                addrs,
                if i.published { "yes" } else { "no" }.to_string(),
            ]);
        }
    }
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[&str]| {
        cells
            .iter()
            .zip(widths.iter())
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(&header))?;
    for r in &rows {
        writeln!(
            out,
            "{}",
            line(&r.iter().map(String::as_str).collect::<Vec<_>>())
        )?;
    }
    for t in tables {
        for c in t.problems() {
            writeln!(
                out,
                "warning: {}/{}: {}: {}",
                t.namespace, t.stateful_set, c.reason, c.message
            )?;
        }
    }
    Ok(())
}
