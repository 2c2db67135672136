//! What users see of `secnet conform` before it runs anything, pinned as snapshots:
//! the help texts, `--list` on every provider and the `--dry-run` plans. A change of
//! the layers below (providers, abilities) must leave these identical.

use clap::Parser as _;

use super::{Cli, Cmd};

/// What `secnet <args>` prints when clap stops it (help, or a usage error).
fn clap_output(args: &[&str]) -> String {
    match Cli::try_parse_from(std::iter::once("secnet").chain(args.iter().copied())) {
        Ok(_) => panic!("secnet {args:?} parsed; expected help or an error"),
        Err(e) => e.render().to_string(),
    }
}

/// The conform options `secnet conform <args>` would run with.
fn options(args: &[&str]) -> secnet::conform::Options {
    let cli = Cli::try_parse_from(["secnet", "conform"].iter().chain(args)).unwrap();
    let Cmd::Conform(c) = cli.command else {
        unreachable!("parsed as conform")
    };
    super::conform::options(c).unwrap()
}

/// `text` with what differs between machines and runs replaced: the run id, the
/// directory of the bundled binaries, the checkout's path, the scratch and cache
/// directories, the home directory.
fn portable(text: &str, cache: &std::path::Path) -> String {
    let fixtures = secnet::bins::fixtures_dir();
    let repo = fixtures.parent().unwrap().to_path_buf();
    let canonical = std::fs::canonicalize(&repo).unwrap_or_else(|_| repo.clone());
    // The test binary runs from <target>/<profile>/deps, next to the bundled ones.
    let exe = std::env::current_exe().unwrap();
    let bins = exe.parent().and_then(|d| d.parent()).unwrap();
    let tmp = std::env::temp_dir().display().to_string();
    let run_id = regex::Regex::new(r"\bsn[0-9a-f]{6}\b").unwrap();
    let text = text
        .replace(&cache.display().to_string(), "<cache>")
        .replace(&bins.display().to_string(), "<bin>")
        .replace(&repo.display().to_string(), "<repo>")
        .replace(&canonical.display().to_string(), "<repo>")
        .replace(&format!("{tmp}/"), "<tmp>/");
    // The default kubeconfig lives in the user's home.
    let text = match std::env::var("HOME") {
        Ok(home) if home.len() > 1 => text.replace(&format!("{home}/"), "<home>/"),
        _ => text,
    };
    run_id.replace_all(&text, "sn<run>").into_owned()
}

/// The example inventory, as `--inventory` takes it.
fn inventory() -> String {
    secnet::bins::fixtures_dir()
        .parent()
        .unwrap()
        .join("clusters/inventory.example.yaml")
        .display()
        .to_string()
}

#[test]
fn help_texts() {
    insta::assert_snapshot!("secnet_help", clap_output(&["--help"]));
    insta::assert_snapshot!("secnet_conform_help", clap_output(&["conform", "--help"]));
}

#[test]
fn list_on_every_provider() {
    let cache = secnet::lab::ScratchDir::new("secnet-baseline").unwrap();
    let inventory = inventory();
    for (name, args) in [
        ("netns", vec!["--cluster", "netns"]),
        ("kind", vec!["--cluster", "kind"]),
        ("existing", vec!["--cluster", "existing"]),
        (
            "existing_inventory",
            vec!["--cluster", "existing", "--inventory", inventory.as_str()],
        ),
    ] {
        let opts = options(&args);
        let table = secnet::conform::listing(&opts, false).unwrap();
        insta::assert_snapshot!(format!("list_{name}"), portable(&table, cache.path()));
    }
    let kind = options(&["--cluster", "kind"]);
    let json = secnet::conform::listing(&kind, true).unwrap();
    insta::assert_snapshot!("list_kind_json", portable(&json, cache.path()));
}

#[test]
fn dry_run_plans() {
    let cache = secnet::lab::ScratchDir::new("secnet-baseline").unwrap();
    let cache_arg = cache.path().display().to_string();
    let inventory = inventory();
    for (name, args) in [
        ("netns", vec!["--cluster", "netns"]),
        ("kind", vec!["--cluster", "kind"]),
        ("existing", vec!["--cluster", "existing"]),
        (
            "existing_inventory",
            vec!["--cluster", "existing", "--inventory", inventory.as_str()],
        ),
    ] {
        let mut args = args;
        args.extend(["--dry-run", "--manifest-cache", cache_arg.as_str()]);
        let plan = secnet::conform::dry_run(&options(&args)).unwrap();
        insta::assert_snapshot!(format!("dry_run_{name}"), portable(&plan, cache.path()));
    }
}

/// An unknown `--cluster` is refused by the parser, naming the providers there are.
#[test]
fn an_unknown_cluster_is_a_usage_error_naming_the_valid_ones() {
    let err = clap_output(&["conform", "--cluster", "minikube"]);
    assert!(err.contains("netns, kind, existing"), "{err}");
    insta::assert_snapshot!("unknown_cluster", err);
}
