//! `cargo xtask test`'s checks of the workspace's shape, beside the lints:
//!
//! * **No import loops.** In every crate, module A uses module B when its
//!   source names `crate::…`, `super::…` or `self::…` paths that reach B.
//!   Each use is looked at where A's and B's paths part (`a::x` using
//!   `b::y` is `a` using `b`), uses within one module's own subtree are
//!   containment rather than use, and the graph must have no cycle.
//! * **Small rooms.** No source file of `client/`, `service/` or
//!   `protocol/` is over [`MAX_LINES`] lines.
//! * **A client that is only a client.** `cargo tree -p nephele-client -e
//!   normal` names none of the service's crates (the service itself, its
//!   HTTP server, database, password hashing, certificate generation and
//!   token signing, PulseAudio).
//!
//! Hand-written: a crate-graph tool (cargo-modules, cargo-depgraph) would
//! be one more large install for a check this small, and none of them
//! fails a build on a module cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The most lines a source file may have.
pub const MAX_LINES: usize = 900;

/// Crates the client must not link. (openh264 stays: it is the client's
/// fallback H.264 *decoder*; its encoder's code is left out at link time,
/// which `cargo xtask bench` checks in the release binary.)
pub const NOT_IN_THE_CLIENT: [&str; 9] = [
    "nephele-service",
    "axum",
    "hyper",
    "redb",
    "argon2",
    "rcgen",
    "jsonwebtoken",
    "libpulse-binding",
    "libpulse-simple-binding",
];

/// A module path within a crate (`wire::events`); the crate root is empty.
type Module = Vec<String>;

/// The modules of the crate rooted at `src` (its `lib.rs`), with the
/// files they live in; a `bin/NAME/` directory is a crate of its own and
/// left out.
fn modules(src: &Path) -> Result<BTreeMap<Module, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = e?.path();
            let rel = p.strip_prefix(src).unwrap_or(&p).to_path_buf();
            if p.is_dir() {
                if rel != Path::new("bin") {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let mut path: Module = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                path.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                path.pop();
            }
            out.insert(path, p);
        }
    }
    Ok(out)
}

/// Expands `use` trees: `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        return vec![path.trim_end_matches("::").to_string()];
    };
    let prefix = &tree[..open];
    let inner = tree[open + 1..].trim_end().trim_end_matches('}');
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| {
            expand(p)
                .into_iter()
                .map(|s| format!("{prefix}{s}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The paths a source file names that start at `crate`, `super` or `self`.
fn paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Comments name paths too, in doc links; they are not uses.
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    // `use` statements, braces and all.
    let mut rest = code.as_str();
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest.find(';').unwrap_or(rest.len());
        out.extend(expand(&rest[..end]));
        rest = &rest[end..];
    }
    // Paths written inline.
    for root in ["crate::", "super::", "self::"] {
        let mut at = 0;
        while let Some(i) = code[at..].find(root) {
            let start = at + i;
            let before = code[..start].chars().last();
            at = start + root.len();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let end = code[start..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| start + e);
            out.push(code[start..end].trim_end_matches("::").to_string());
        }
    }
    out.retain(|p| p.starts_with("crate") || p.starts_with("super") || p.starts_with("self"));
    out
}

/// The module a path from module `from` reaches: the longest prefix of it
/// that is a module of the crate.
fn resolve(from: &Module, path: &str, all: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut segs = path.split("::").filter(|s| !s.is_empty());
    let mut base: Module = match segs.next()? {
        "crate" => Vec::new(),
        "self" => from.clone(),
        "super" => {
            let mut b = from.clone();
            b.pop()?;
            b
        }
        _ => return None,
    };
    for s in segs {
        if s == "super" {
            base.pop()?;
            continue;
        }
        let mut next = base.clone();
        next.push(s.to_string());
        if !all.contains_key(&next) {
            break;
        }
        base = next;
    }
    Some(base)
}

/// Where `a` using `b` shows between siblings: the children of their
/// common ancestor on each side; `None` when one contains the other.
fn siblings(a: &Module, b: &Module) -> Option<(Module, Module)> {
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if common == a.len() || common == b.len() {
        return None;
    }
    Some((a[..=common].to_vec(), b[..=common].to_vec()))
}

/// The uses between sibling modules of the crate at `src`.
fn uses(src: &Path) -> Result<BTreeSet<(Module, Module)>> {
    let all = modules(src)?;
    let mut edges = BTreeSet::new();
    for (m, file) in &all {
        let text = std::fs::read_to_string(file)?;
        for p in paths(&text) {
            if let Some(target) = resolve(m, &p, &all)
                && let Some(e) = siblings(m, &target)
            {
                edges.insert(e);
            }
        }
    }
    Ok(edges)
}

/// The cycles among `edges`: each a set of modules that reach each other.
fn cycles(edges: &BTreeSet<(Module, Module)>) -> Vec<Vec<Module>> {
    let nodes: BTreeSet<&Module> = edges.iter().flat_map(|(a, b)| [a, b]).collect();
    let reach = |from: &Module| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for (a, b) in edges {
                if *a == n && seen.insert(b.clone()) {
                    todo.push(b.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&Module, BTreeSet<Module>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out: Vec<Vec<Module>> = Vec::new();
    for n in &nodes {
        if !reached[n].contains(*n) || out.iter().any(|c| c.contains(n)) {
            continue;
        }
        let group: Vec<Module> = nodes
            .iter()
            .filter(|m| reached[n].contains(**m) && reached[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        out.push(group);
    }
    out
}

/// Every crate's source root in the workspace at `root`.
fn crate_roots(root: &Path) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    for c in [
        "protocol", "platform", "api", "client", "service", "tests", "xtask",
    ] {
        let src = root.join(c).join("src");
        if src.is_dir() {
            roots.push(src.clone());
        }
        if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
            roots.extend(bins.flatten().map(|b| b.path()).filter(|p| p.is_dir()));
        }
    }
    roots
}

/// Fails when a crate of the workspace has an import loop.
pub fn check_loops(root: &Path) -> Result<()> {
    let mut found = Vec::new();
    for src in crate_roots(root) {
        for cycle in cycles(&uses(&src)?) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            found.push(format!("{}: {}", src.display(), names.join(" ↔ ")));
        }
    }
    if !found.is_empty() {
        bail!("modules that import each other:\n  {}", found.join("\n  "));
    }
    eprintln!("xtask: no import loops");
    Ok(())
}

/// Fails when a source file of the client, the service or the protocol
/// is over [`MAX_LINES`] lines.
pub fn check_sizes(root: &Path) -> Result<()> {
    let mut big = Vec::new();
    let mut stack: Vec<PathBuf> = ["client", "service", "protocol"]
        .iter()
        .map(|c| root.join(c))
        .collect();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let n = std::fs::read_to_string(&p)?.lines().count();
                if n > MAX_LINES {
                    big.push(format!("{} ({n} lines)", p.display()));
                }
            }
        }
    }
    if !big.is_empty() {
        bail!(
            "source files over {MAX_LINES} lines: split them along their concerns:\n  {}",
            big.join("\n  ")
        );
    }
    eprintln!("xtask: no source file over {MAX_LINES} lines");
    Ok(())
}

/// What of x11rb only capturing a desktop needs: the window (winit,
/// softbuffer, the clipboard) draws through x11rb but never watches for
/// damage or injects input.
pub const X11_CAPTURE_FEATURES: [&str; 2] = ["x11rb feature \"damage\"", "x11rb feature \"xtest\""];

/// Fails when `tree` (`cargo tree -p nephele-client -e normal,features
/// --prefix none`'s output) names a crate the client must not link, or
/// x11rb's capture features.
pub fn check_client_tree(tree: &str) -> Result<()> {
    let names: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut bad: Vec<&str> = NOT_IN_THE_CLIENT
        .iter()
        .copied()
        .filter(|c| names.contains(c))
        .collect();
    bad.extend(
        X11_CAPTURE_FEATURES
            .iter()
            .copied()
            .filter(|f| tree.lines().any(|l| l.starts_with(f))),
    );
    if !bad.is_empty() {
        bail!("the client links {}: only the service may", bad.join(", "));
    }
    eprintln!(
        "xtask: the client links {} crates, none of the service's",
        names.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Module {
        s.split("::")
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn use_trees_and_inline_paths_are_found() {
        assert_eq!(
            expand("crate::wire::{InputEvent, events::{a, b as c}}"),
            [
                "crate::wire::InputEvent",
                "crate::wire::events::a",
                "crate::wire::events::b"
            ]
        );
        let text = "use crate::a::{B, c::D};\n// crate::comment::only\nfn f() { super::x::y(); let z = crate::e::F; }";
        let p = paths(text);
        assert!(p.contains(&"crate::a::B".to_string()), "{p:?}");
        assert!(p.contains(&"crate::a::c::D".to_string()), "{p:?}");
        assert!(p.contains(&"super::x::y".to_string()), "{p:?}");
        assert!(p.contains(&"crate::e::F".to_string()), "{p:?}");
        assert!(!p.iter().any(|x| x.contains("comment")), "{p:?}");
    }

    #[test]
    fn loops_are_found_between_siblings_and_not_within_a_subtree() {
        let all: BTreeMap<Module, PathBuf> = ["", "a", "a::x", "b", "c"]
            .iter()
            .map(|s| (m(s), PathBuf::new()))
            .collect();
        assert_eq!(
            resolve(&m("a::x"), "super::super::b::T", &all),
            Some(m("b"))
        );
        assert_eq!(resolve(&m("a"), "crate::a::x::y", &all), Some(m("a::x")));
        assert_eq!(siblings(&m("a::x"), &m("b")), Some((m("a"), m("b"))));
        assert_eq!(
            siblings(&m("a::x"), &m("a")),
            None,
            "a child using its parent"
        );
        let edges: BTreeSet<(Module, Module)> =
            [(m("a"), m("b")), (m("b"), m("a")), (m("b"), m("c"))]
                .into_iter()
                .collect();
        assert_eq!(cycles(&edges), vec![vec![m("a"), m("b")]]);
        let edges: BTreeSet<(Module, Module)> =
            [(m("a"), m("b")), (m("b"), m("c"))].into_iter().collect();
        assert!(cycles(&edges).is_empty());
    }

    #[test]
    fn a_client_tree_with_a_service_crate_is_refused() {
        assert!(check_client_tree("nephele-client v0.1.0\nquinn v0.11.9\n").is_ok());
        let e = check_client_tree("nephele-client v0.1.0\naxum v0.8.0\n").unwrap_err();
        assert!(e.to_string().contains("axum"), "{e}");
        let window = "x11rb v0.13.2\nx11rb feature \"shm\"\n";
        assert!(check_client_tree(window).is_ok());
        let capture = format!("{window}x11rb feature \"xtest\"\n");
        let e = check_client_tree(&capture).unwrap_err();
        assert!(e.to_string().contains("xtest"), "{e}");
    }
}
