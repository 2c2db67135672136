//! The documentation says what the binary does: every label, backend, group and
//! subcommand it accepts is listed, and every one listed exists; the README fits on
//! a screen; no file names a developer's machine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The `backticked` words of the paragraph that starts with `lead` in `text`.
fn listed(text: &str, lead: &str, file: &str) -> BTreeSet<String> {
    let start = text
        .find(lead)
        .unwrap_or_else(|| panic!("{file} has no paragraph starting {lead:?}"));
    let para = text[start + lead.len()..]
        .split("\n\n")
        .next()
        .unwrap_or_default();
    para.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .filter(|w| !w.starts_with("--"))
        .collect()
}

fn assert_same(what: &str, binary: &BTreeSet<String>, docs: &BTreeSet<String>, file: &str) {
    let undocumented: Vec<_> = binary.difference(docs).collect();
    let unknown: Vec<_> = docs.difference(binary).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "{what}: accepted by secnet but not in {file}: {undocumented:?}; in {file} but not accepted: {unknown:?}"
    );
}

#[test]
fn every_label_backend_and_group_is_documented_and_exists() {
    let all = secnet::scenario::all();
    let backends: BTreeSet<String> = all.iter().map(|s| s.backend.to_string()).collect();
    let groups: BTreeSet<String> = all.iter().map(|s| s.group().to_string()).collect();
    let labels: BTreeSet<String> = all
        .iter()
        .flat_map(|s| s.labels.iter().map(|l| l.to_string()))
        .filter(|l| !backends.contains(l) && !groups.contains(l))
        .collect();
    let file = "docs/scenarios.md";
    let doc = read(file);
    assert_same("labels", &labels, &listed(&doc, "**Labels**", file), file);
    assert_same(
        "backends",
        &backends,
        &listed(&doc, "**Backends**", file),
        file,
    );
    assert_same("groups", &groups, &listed(&doc, "**Groups**", file), file);
}

#[test]
fn every_subcommand_is_documented_and_exists() {
    let bin = secnet::bins::bundled("secnet").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(bin)
        .arg("--help")
        .output()
        .expect("secnet runs");
    let help = String::from_utf8_lossy(&out.stdout);
    let commands: BTreeSet<String> = help
        .split("Commands:")
        .nth(1)
        .expect("secnet --help lists its commands")
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect();
    assert!(commands.contains("conform"), "{help}");
    let readme = read("README.md");
    assert_same(
        "subcommands",
        &commands,
        &listed(&readme, "| `secnet` |", "README.md"),
        "README.md",
    );
    for c in &commands {
        let doc = read("docs/scenarios.md") + &read("docs/ci.md") + &read("docs/upstream.md");
        assert!(
            doc.contains(&format!("secnet {c}")) || readme.contains(&format!("secnet {c}")),
            "no `secnet {c}` example in the README or docs/"
        );
    }
}

#[test]
fn the_readme_fits_on_a_screen() {
    let lines = read("README.md").lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines; move detail to docs/"
    );
}

/// Tracked text files (`git ls-files`; without git, every file outside target/).
fn tracked_files() -> Vec<PathBuf> {
    let root = repo();
    if let Ok(out) = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["ls-files", "-z"])
        .output()
        && out.status.success()
    {
        return out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| root.join(String::from_utf8_lossy(p).as_ref()))
            .collect();
    }
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = e.path();
            let name = e.file_name();
            if path.is_dir() {
                if !matches!(name.to_str(), Some("target" | ".git")) {
                    dirs.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Where `text` names a path under a developer's home or work tree: a path that
/// starts with the top-level `work`, `home` or `root` directory (not a process's
/// root under /proc).
fn machine_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for top in ["work", "home", "root"] {
        let needle = format!("/{top}/");
        for (i, _) in text.match_indices(&needle) {
            let before = text[..i].chars().next_back();
            let starts_a_path = before.is_none_or(|c| {
                !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '>' | '*'))
            });
            if starts_a_path {
                let end = text[i..]
                    .find(|c: char| c.is_whitespace() || matches!(c, '`' | '"' | '\'' | ')'))
                    .map_or(text.len(), |e| i + e);
                found.push(text[i..end].to_string());
            }
        }
    }
    found
}

#[test]
fn no_file_names_a_developer_machine_path() {
    let root = repo();
    let mut hits = Vec::new();
    for path in tracked_files() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // binary or unreadable
        };
        for p in machine_paths(&text) {
            hits.push(format!(
                "{}: {p}",
                path.strip_prefix(&root).unwrap_or(&path).display()
            ));
        }
    }
    assert!(hits.is_empty(), "machine paths in tracked files: {hits:#?}");
}

#[test]
fn the_path_check_tells_machine_paths_from_proc_roots() {
    // Built from pieces, so that this file does not name such a path itself.
    let (home, root) = (format!("/{}/alice/src", "home"), format!("/{}/x", "root"));
    assert_eq!(
        machine_paths(&format!("see {home} and `{root}` or /proc/<pid>/root/run")),
        [home, root]
    );
    assert!(machine_paths("/proc/1/root/db.sock /proc/self/root/tmp").is_empty());
}
