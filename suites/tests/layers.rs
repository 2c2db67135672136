//! The harness's modules use each other one way (ARCHITECTURE.md, "Layers"): no
//! two top-level modules of `harness/src` use each other, directly or round a
//! circle, and neither do the submodules of `report`. Read from the source: every
//! `crate::…` and `super::…` path outside test code (`#[cfg(test)]` items and the
//! files only they declare), resolved to the module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modules whose direct children must not form a circle: the crate root (its
/// top-level modules) and `report`.
const LEVELS: [&[&str]; 2] = [&[], &["report"]];

type ModPath = Vec<String>;

/// Why one module uses another: a file and the path it names.
type Uses = BTreeMap<(String, String), BTreeSet<String>>;

fn harness_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../harness/src")
}

/// `text` without comments, with every string and char literal emptied of what
/// could be read as code (braces, semicolons, `::`): a `#[path = "x.rs"]` keeps
/// its file name.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some((open, hashes)) = raw_string_start(text, i) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body_end = text[i + open..]
                .find(&close)
                .map_or(b.len(), |e| i + open + e);
            out.push('"');
            out.extend(text[i + open..body_end].chars().filter(|&c| keep(c)));
            out.push('"');
            i = (body_end + close.len()).min(b.len());
        } else if b[i] == b'"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                } else if keep(b[i] as char) {
                    out.push(b[i] as char);
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if b[i] == b'\'' && char_literal_len(rest).is_some() {
            out.push_str("' '");
            i += char_literal_len(rest).unwrap_or(1);
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The opening's length and the number of `#` of a raw string (`r"`, `r#"`,
/// `br"` …) starting at `i`.
fn raw_string_start(text: &str, i: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let after_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    let start = if text[i..].starts_with("br") {
        i + 1
    } else {
        i
    };
    if after_ident || b.get(start) != Some(&b'r') {
        return None;
    }
    let hashes = text[start + 1..].bytes().take_while(|&c| c == b'#').count();
    (b.get(start + 1 + hashes) == Some(&b'"')).then_some((start - i + 2 + hashes, hashes))
}

/// The length of a char literal (`'a'`, `'\n'`, `'\u{1F600}'`) at the start of
/// `s`; `None` for a lifetime.
fn char_literal_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices().skip(1);
    let (_, c) = chars.next()?;
    if c == '\\' {
        // The escaped character may itself be a quote: `'\''`.
        let close = s.get(3..)?.find('\'')?;
        return Some(close + 4);
    }
    let (j, close) = chars.next()?;
    (close == '\'').then_some(j + 1)
}

/// The end of the item starting at `i` (after its attributes): its `;`, or the
/// `}` closing its first block.
fn item_end(s: &str, mut i: usize) -> usize {
    let b = s.as_bytes();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if !s[i..].starts_with("#[") {
            break;
        }
        let mut depth = 0;
        while i < b.len() {
            match b[i] {
                b'[' => depth += 1,
                b']' => {
                    depth -= 1;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
    let mut depth = 0;
    while i < b.len() {
        match b[i] {
            b';' if depth == 0 => return i + 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// `code` without its `#[cfg(test)]` items.
fn without_tests(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let end = item_end(rest, at + "#[cfg(test)]".len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The words of `code` and where each starts.
fn words(code: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in code.char_indices().chain([(code.len(), ' ')]) {
        match (is_ident(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, &code[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// The `mod name;` declarations of `code`, with their `#[path]` if any.
fn declared_mods(code: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let w = words(code);
    for (k, &(at, word)) in w.iter().enumerate() {
        let Some(&(name_at, name)) = w.get(k + 1) else {
            continue;
        };
        let after = code[name_at + name.len()..].trim_start();
        if word != "mod" || !after.starts_with(';') {
            continue;
        }
        let before = &code[..at];
        let attr_start = before.rfind([';', '}', '{']).map_or(0, |p| p + 1);
        let path = before[attr_start..]
            .split("#[path")
            .nth(1)
            .and_then(|a| a.split('"').nth(1))
            .map(str::to_string);
        out.push((name.to_string(), path));
    }
    out
}

/// The module paths `use` trees and inline paths of `code` name, starting with
/// `crate` or `super`, as written (segments).
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `use` trees, braces and all.
    for (at, word) in words(code) {
        if word != "use" {
            continue;
        }
        let tree = &code[at + 3..];
        let tree = &tree[..tree.find(';').unwrap_or(tree.len())];
        let t = tree.trim_start();
        if t.starts_with("crate") || t.starts_with("super") {
            expand_use(t, Vec::new(), &mut out);
        }
    }
    // Inline paths: `crate::a::b(…)`, `super::x::Y`.
    let bytes = code.as_bytes();
    for (at, word) in words(code) {
        if !matches!(word, "crate" | "super") || (at > 0 && bytes[at - 1] == b':') {
            continue;
        }
        let mut segs = vec![word.to_string()];
        let mut i = at + word.len();
        while code[i..].starts_with("::") {
            let seg: String = code[i + 2..].chars().take_while(|&c| is_ident(c)).collect();
            if seg.is_empty() {
                break;
            }
            i += 2 + seg.len();
            segs.push(seg);
        }
        out.push(segs);
    }
    out
}

/// Every path of a `use` tree (`crate::{a::b, c::{d, e}}`).
fn expand_use(tree: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let plain = tree.split(" as ").next().unwrap_or(tree);
        let mut path = prefix;
        path.extend(
            plain
                .split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "self" && *s != "*")
                .map(str::to_string),
        );
        out.push(path);
        return;
    };
    let mut path = prefix;
    path.extend(
        tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    );
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices().chain([(inner.len(), ',')]) {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                let part = &inner[start..i];
                if !part.trim().is_empty() {
                    expand_use(part, path.clone(), out);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if inner.trim().is_empty() {
        out.push(path);
    }
}

/// One source file of the module tree.
struct Module {
    path: ModPath,
    file: String,
    code: String,
}

/// The modules reachable from `lib.rs` outside test code, read through `read`
/// (a relative file name to its text, `None` when there is no such file).
fn module_tree(read: &dyn Fn(&str) -> Option<String>) -> Vec<Module> {
    let mut out = Vec::new();
    let mut todo = vec![(Vec::new(), "lib.rs".to_string())];
    while let Some((path, file)) = todo.pop() {
        let text = read(&file).unwrap_or_else(|| panic!("{file}: declared but not found"));
        let code = without_tests(&code_only(&text));
        // A module's children are in the directory named after it (or its own, for
        // lib.rs and mod.rs); a #[path] is relative to the declaring file's directory.
        let file_dir = Path::new(&file).parent().unwrap_or(Path::new(""));
        let own_dir: PathBuf = path.iter().collect();
        for (name, attr) in declared_mods(&code) {
            let mut child = path.clone();
            child.push(name.clone());
            let found = match attr {
                Some(p) => Some(file_dir.join(p)),
                None => [
                    own_dir.join(format!("{name}.rs")),
                    own_dir.join(&name).join("mod.rs"),
                ]
                .into_iter()
                .find(|c| read(&c.to_string_lossy()).is_some()),
            };
            let found = found.unwrap_or_else(|| panic!("{file}: mod {name}; has no file"));
            todo.push((child, found.to_string_lossy().into_owned()));
        }
        out.push(Module { path, file, code });
    }
    out
}

/// Which module `named` (as written in module `from`) is: the longest known
/// module its resolved path starts with.
fn resolve(from: &[String], named: &[String], known: &BTreeSet<ModPath>) -> ModPath {
    let mut full: ModPath = Vec::new();
    let mut segs = named.iter().peekable();
    if segs.peek().is_some_and(|s| *s == "crate") {
        segs.next();
    } else {
        full = from.to_vec();
        while segs.peek().is_some_and(|s| *s == "super" || *s == "self") {
            if segs.next().is_some_and(|s| s == "super") {
                full.pop();
            }
        }
    }
    full.extend(segs.cloned());
    while !full.is_empty() && !known.contains(&full) {
        full.pop();
    }
    full
}

/// For each level, the uses between its direct children: `(a, b)` → why.
fn uses_at(modules: &[Module], level: &[&str]) -> Uses {
    let known: BTreeSet<ModPath> = modules.iter().map(|m| m.path.clone()).collect();
    let child_of = |p: &ModPath| -> Option<String> {
        let under = p.len() > level.len() && p.iter().zip(level).all(|(a, b)| a == b);
        under.then(|| p[level.len()].clone())
    };
    let mut uses = Uses::new();
    for m in modules {
        let Some(a) = child_of(&m.path) else {
            continue;
        };
        for named in named_paths(&m.code) {
            let target = resolve(&m.path, &named, &known);
            let Some(b) = child_of(&target) else {
                continue;
            };
            if a != b {
                uses.entry((a.clone(), b)).or_default().insert(format!(
                    "{} ({})",
                    m.file,
                    named.join("::")
                ));
            }
        }
    }
    uses
}

/// The circles among `uses`, each named with the uses that make it.
fn circles(uses: &Uses) -> Vec<String> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in uses.keys() {
        next.entry(a).or_default().push(b);
    }
    let reaches = |from: &str, to: &str| -> Option<Vec<String>> {
        // Breadth first, so the circle named is a shortest one.
        let mut came: BTreeMap<&str, &str> = BTreeMap::new();
        let mut frontier = vec![from];
        while !frontier.is_empty() {
            let mut more = Vec::new();
            for n in frontier {
                for &m in next.get(n).into_iter().flatten() {
                    if came.contains_key(m) || m == from {
                        continue;
                    }
                    came.insert(m, n);
                    if m == to {
                        let mut path = vec![to.to_string()];
                        let mut at = to;
                        while let Some(&p) = came.get(at) {
                            path.push(p.to_string());
                            at = p;
                        }
                        path.reverse();
                        return Some(path);
                    }
                    more.push(m);
                }
            }
            frontier = more;
        }
        None
    };
    let mut seen: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    let mut out = Vec::new();
    for (a, b) in uses.keys() {
        let Some(back) = reaches(b, a) else {
            continue;
        };
        let members: BTreeSet<String> = back.iter().cloned().collect();
        if !seen.insert(members) {
            continue;
        }
        let mut ring = vec![a.clone()];
        ring.extend(back);
        let why: Vec<String> = ring
            .windows(2)
            .map(|w| {
                let files = &uses[&(w[0].clone(), w[1].clone())];
                let first: Vec<&str> = files.iter().take(3).map(String::as_str).collect();
                format!("  {} → {}: {}", w[0], w[1], first.join(", "))
            })
            .collect();
        out.push(format!("{}\n{}", ring.join(" → "), why.join("\n")));
    }
    out
}

fn circles_in(read: &dyn Fn(&str) -> Option<String>) -> (Vec<String>, usize) {
    let modules = module_tree(read);
    let mut found = Vec::new();
    let mut edges = 0;
    for level in LEVELS {
        let uses = uses_at(&modules, level);
        edges += uses.len();
        found.extend(circles(&uses).into_iter().map(|c| {
            let at = if level.is_empty() {
                "crate".to_string()
            } else {
                level.join("::")
            };
            format!("in {at}: {c}")
        }));
    }
    (found, edges)
}

#[test]
fn harness_modules_use_each_other_one_way() {
    let src = harness_src();
    let read = |rel: &str| std::fs::read_to_string(src.join(rel)).ok();
    let (found, edges) = circles_in(&read);
    // A scan that reads nothing finds no circle either.
    assert!(
        edges > 40,
        "only {edges} uses between modules found: is the scan broken?"
    );
    assert!(
        found.is_empty(),
        "modules that use each other (move the shared item down a layer, see ARCHITECTURE.md):\n{}",
        found.join("\n")
    );
}

/// The scan finds a circle through grouped `use` trees, `super::` and inline paths,
/// and leaves test code out.
#[test]
fn a_circle_between_modules_is_named() {
    let files: BTreeMap<&str, &str> = BTreeMap::from([
        (
            "lib.rs",
            "pub mod a;\npub mod b;\nmod report;\n#[cfg(test)]\nmod c;",
        ),
        ("a.rs", "use crate::{b::Thing, report};\n"),
        (
            "b.rs",
            "// crate::a is only in a comment\nfn f() { let s = \"crate::a\"; }\n",
        ),
        ("c.rs", "use crate::a;"),
        ("report.rs", "pub mod html;\npub mod topology;\n"),
        ("report/html.rs", "use super::topology::svg;\n"),
        (
            "report/topology.rs",
            "fn t() { '{'; }\n#[cfg(test)]\nmod tests { use crate::report::html; }\n",
        ),
    ]);
    let read = |rel: &str| files.get(rel).map(|s| s.to_string());
    assert_eq!(circles_in(&read).0, Vec::<String>::new());

    let mut files = files;
    files.insert("b.rs", "fn f() { crate::a::go(); }");
    files.insert("report/topology.rs", "use super::{html::escape};");
    let read = |rel: &str| files.get(rel).map(|s| s.to_string());
    let found = circles_in(&read).0;
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("in crate: a → b → a"), "{found:#?}");
    assert!(found[0].contains("b.rs (crate::a::go)"), "{found:#?}");
    assert!(
        found[1].starts_with("in report: html → topology → html"),
        "{found:#?}"
    );
}
