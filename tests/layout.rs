//! The layout of `src/` (docs/ARCHITECTURE.md): each top-level module is one layer and may use
//! only the layers below it, and no two files of `src/` use each other, directly or through
//! others. Checked from the source text: every `crate::` path, and every `super::` path that
//! names a module file, outside comments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may use the modules of lower layers only.
const LAYERS: &[&[&str]] = &[
    &["identity", "cidr", "k8s"],
    &["index"],
    &["admin"],
    &["dns", "source", "controller"],
    &["cli"],
    &["config", "telemetry"],
    &["commands"],
];

type Module = Vec<String>;

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/index/build.rs` is `index::build`, `src/dns/mod.rs` is
/// `dns`, `src/lib.rs` and `src/main.rs` are the crate root (empty).
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        parts.clear();
    }
    parts
}

/// The paths after `crate::` and `super::` on one line, as segments (`crate` or `super` first).
fn paths_in(line: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut rest = line;
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().next_back();
            let tail = &rest[i..];
            rest = &rest[i + start.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let path: String = tail
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(
                path.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            );
        }
    }
    out
}

/// The modules each file uses, by file module (edges to its own ancestors and descendants left
/// out: a parent re-exports its children, and a child may use what its parent re-exports).
fn uses(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Module, PathBuf> = files
        .iter()
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let mut deps = BTreeSet::new();
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for path in paths_in(code) {
                let full: Module = if path[0] == "crate" {
                    path[1..].to_vec()
                } else {
                    // `super` of `a/b.rs` is `a`; of `a/b/mod.rs` also `a`.
                    let mut base = module.clone();
                    base.pop();
                    base.extend(path[1..].iter().cloned());
                    base
                };
                let target = (1..=full.len())
                    .rev()
                    .map(|k| full[..k].to_vec())
                    .find(|m| modules.contains_key(m));
                if let Some(t) = target
                    && !module.starts_with(&t)
                    && !t.starts_with(module)
                {
                    deps.insert(t);
                }
            }
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

#[test]
fn each_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (module, deps) in uses(&src) {
        let Some(top) = module.first() else { continue };
        let Some(own) = layer(top) else {
            wrong.push(format!("{top}: not in LAYERS (add it to its layer)"));
            continue;
        };
        for dep in deps {
            let dep_top = &dep[0];
            if dep_top == top {
                continue;
            }
            match layer(dep_top) {
                Some(l) if l < own => {}
                _ => wrong.push(format!("{} uses {}", module.join("::"), dep.join("::"))),
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_files_of_src_use_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = uses(&src);
    // Tarjan's strongly connected components: any component of more than one file is a cycle.
    struct Walk<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        cycles: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Module) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.join("::"));
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.cycles.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        cycles: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    assert!(
        walk.cycles.is_empty(),
        "files of src/ that use each other: {:?}",
        walk.cycles
    );
}

/// The checker itself finds what it is meant to find.
#[test]
fn the_checker_sees_crate_and_super_paths() {
    assert_eq!(
        paths_in("use crate::identity::{A, B}; let x = super::wire::f();"),
        vec![vec!["crate", "identity"], vec!["super", "wire", "f"],]
    );
    assert!(paths_in("let my_crate::x = 1; // notcrate::y").is_empty());
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = uses(&src);
    let build = graph.get(&vec!["index".to_string(), "build".to_string()]);
    assert!(
        build.is_some_and(|d| d.contains(&vec!["identity".to_string()])),
        "index::build uses identity: {build:?}"
    );
}
