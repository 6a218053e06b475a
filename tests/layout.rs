//! The layout keeps its shape: no import cycle between the top-level modules of `src/policy`
//! or of `src/host`, and the functional core never reaches the host (no `proxy_wasm`, no
//! `crate::host` in `src/policy`). Read from the sources, so `cargo test` fails on the commit
//! that adds such an arrow, with the file and path that made it.
//!
//! A module is `X.rs` with everything under `X/`; its arrows are the `crate::…` and `super::…`
//! paths of its code (`use` trees expanded, inline paths too) that name another top-level
//! module of the same folder. Test code is left out: `tests.rs` files, and the inline
//! `#[cfg(test)] mod tests { … }` that closes a file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One arrow between top-level modules, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Arrow {
    from: String,
    to: String,
    file: String,
    path: String,
}

#[test]
fn the_policy_core_has_no_import_cycle() {
    assert_no_cycle("policy");
}

#[test]
fn the_host_shell_has_no_import_cycle() {
    assert_no_cycle("host");
}

#[test]
fn the_policy_core_never_reaches_proxy_wasm_or_the_host() {
    let mut found = Vec::new();
    for file in rust_files(&src().join("policy")) {
        let text = fs::read_to_string(&file).unwrap();
        for (n, line) in code_lines(&text).enumerate() {
            if line.contains("proxy_wasm") || line.contains("crate::host") {
                found.push(format!("{}:{}: {}", shown(&file), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "src/policy reaches the host:\n{}",
        found.join("\n")
    );
}

/// The checker itself: it sees arrows in every form the sources use, and reports a cycle.
#[test]
fn a_cycle_is_reported_with_the_paths_that_make_it() {
    let modules: BTreeSet<String> = ["a", "b", "c"].iter().map(|m| m.to_string()).collect();
    let a = "use crate::policy::b::{self, Thing};\nfn f() { crate::policy::c::g(); }\n";
    let b = "use super::{c::X, d};\n// use crate::policy::a; (a comment)\n";
    let c = "pub(crate) use super::super::a::Y;\n";
    let mut arrows = Vec::new();
    arrows.extend(arrows_of("policy", &["policy", "a"], "a.rs", a, &modules));
    arrows.extend(arrows_of("policy", &["policy", "b"], "b.rs", b, &modules));
    arrows.extend(arrows_of(
        "policy",
        &["policy", "c", "inner"],
        "c/inner.rs",
        c,
        &modules,
    ));
    let pairs: Vec<(&str, &str)> = arrows
        .iter()
        .map(|a| (a.from.as_str(), a.to.as_str()))
        .collect();
    assert_eq!(pairs, [("a", "b"), ("a", "c"), ("b", "c"), ("c", "a")]);
    let found = cycles(&arrows);
    assert_eq!(found, vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    let acyclic: Vec<Arrow> = arrows.into_iter().filter(|a| a.from != "c").collect();
    assert!(cycles(&acyclic).is_empty());
}

fn assert_no_cycle(folder: &str) {
    let root = src().join(folder);
    let modules = top_level_modules(&root);
    assert!(modules.len() > 3, "no modules found in {}", root.display());
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let mut arrows = Vec::new();
    for (module, files) in &modules {
        for file in files {
            if file.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = fs::read_to_string(file).unwrap();
            let at = module_path(&root, folder, file);
            let at: Vec<&str> = at.iter().map(String::as_str).collect();
            assert_eq!(at.get(1).copied(), Some(module.as_str()));
            arrows.extend(arrows_of(folder, &at, &shown(file), &text, &names));
        }
    }
    let found = cycles(&arrows);
    let report: Vec<String> = found
        .iter()
        .map(|cycle| {
            let inside: Vec<String> = arrows
                .iter()
                .filter(|a| cycle.contains(&a.from) && cycle.contains(&a.to))
                .map(|a| format!("  {} -> {}: {} ({})", a.from, a.to, a.path, a.file))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            format!("cycle {}:\n{}", cycle.join(" <-> "), inside.join("\n"))
        })
        .collect();
    assert!(
        found.is_empty(),
        "src/{folder}: import cycles between top-level modules\n{}",
        report.join("\n")
    );
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn shown(file: &Path) -> String {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    file.strip_prefix(base)
        .unwrap_or(file)
        .display()
        .to_string()
}

/// `X.rs` (not `mod.rs`) with the files under `X/`, by module name.
fn top_level_modules(root: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut modules = BTreeMap::new();
    for entry in fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && name != "mod" {
            let mut files = vec![path.clone()];
            let folder = root.join(name);
            if folder.is_dir() {
                files.extend(rust_files(&folder));
            }
            modules.insert(name.to_string(), files);
        }
    }
    modules
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// `["policy", "vector_store", "qdrant"]` for `src/policy/vector_store/qdrant.rs`.
fn module_path(root: &Path, folder: &str, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root).unwrap().with_extension("");
    let mut path = vec![folder.to_string()];
    path.extend(
        relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// The lines of code: comments dropped, and the inline test module that closes a file.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    let end = text.find("#[cfg(test)]\nmod tests {").unwrap_or(text.len());
    text[..end].lines().map(|line| {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            return "";
        }
        // A trailing comment, when the `//` is not inside a string.
        match line.find(" //") {
            Some(at) if line[..at].matches('"').count() % 2 == 0 => &line[..at],
            _ => line,
        }
    })
}

/// The arrows from the file at module path `at` (`["policy", "x", …]`) to other top-level
/// modules of `folder` (`modules`).
fn arrows_of(
    folder: &str,
    at: &[&str],
    file: &str,
    text: &str,
    modules: &BTreeSet<String>,
) -> Vec<Arrow> {
    let code: String = code_lines(text).collect::<Vec<_>>().join("\n");
    let mut paths = Vec::new();
    for statement in use_statements(&code) {
        paths.extend(expand(&statement));
    }
    paths.extend(inline_paths(&code));
    let mut arrows = BTreeSet::new();
    for path in paths {
        let Some(target) = resolve(at, &path) else {
            continue;
        };
        let (Some(top), Some(module)) = (target.first(), target.get(1)) else {
            continue;
        };
        if top == folder && modules.contains(module) && module != at[1] {
            arrows.insert(Arrow {
                from: at[1].to_string(),
                to: module.clone(),
                file: file.to_string(),
                path: path.join("::"),
            });
        }
    }
    let mut arrows: Vec<Arrow> = arrows.into_iter().collect();
    // One arrow per pair is enough to report; keep the first path found.
    arrows.dedup_by(|a, b| a.from == b.from && a.to == b.to);
    arrows
}

/// The text of each `use` declaration (`pub use`, `pub(crate) use` too), up to its `;`.
fn use_statements(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        let after = &rest[at + 3..];
        let end = after.find(';').unwrap_or(after.len());
        out.push(after[..end].to_string());
        rest = &after[end..];
    }
    out
}

/// Where `word` stands as a whole word at the start of a declaration.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find(word) {
        let at = from + found;
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let starts = before.is_none_or(|c| c.is_whitespace() || c == ')' || c == ';');
        if starts && after.is_some_and(char::is_whitespace) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// The paths a use tree names: `a::{b, c::{d, e}}` is `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    expand_into(&[], tree.trim(), &mut out);
    out
}

fn expand_into(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let mut base = prefix.to_vec();
        base.extend(segments(tree[..open].trim_end_matches(':')));
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        for part in split_top_level(inner) {
            expand_into(&base, part, out);
        }
        return;
    }
    let name = tree.split(" as ").next().unwrap_or(tree);
    let mut path = prefix.to_vec();
    path.extend(segments(name));
    if path.last().is_some_and(|last| last == "self") {
        path.pop();
    }
    if !path.is_empty() {
        out.push(path);
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `a, b::{c, d}, e` split at the commas outside braces.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// `crate::…` and `super::…` paths written in code (`crate::policy::x::f(…)`).
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(found) = code[from..].find(start) {
            let at = from + found;
            let before = code[..at].chars().next_back();
            from = at + start.len();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            let path = segments(&code[at..end]);
            if path.len() > 1 {
                out.push(path);
            }
        }
    }
    out
}

/// The absolute module path `path` names from the module at `at`; `None` for paths that do not
/// start at `crate` or `super` (extern crates, the module's own children).
fn resolve(at: &[&str], path: &[String]) -> Option<Vec<String>> {
    let first = path.first()?;
    if first == "crate" {
        return Some(path[1..].to_vec());
    }
    if first != "super" {
        return None;
    }
    let mut base: Vec<String> = at.iter().map(|s| s.to_string()).collect();
    let mut rest = path;
    while rest.first().is_some_and(|s| s == "super") {
        base.pop()?;
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The strongly connected groups of more than one module (Tarjan), each sorted.
fn cycles(arrows: &[Arrow]) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for a in arrows {
        graph.entry(&a.from).or_default().insert(&a.to);
        graph.entry(&a.to).or_default();
    }
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(v: &'a str, graph: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in &graph[v] {
            if !s.index.contains_key(w) {
                visit(w, graph, s);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                group.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.found.push(group);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for &v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(v, &graph, &mut state);
        }
    }
    state.found.sort();
    state.found
}
