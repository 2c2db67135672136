//! `secnet conform --cluster kind|existing --dry-run`: every command and rendered
//! manifest of a run, in order, without a cluster, a container engine or network.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

use super::Options;
use super::real::{kind_options, selected_sets};
use crate::cluster::ClusterError;
use crate::cluster::kube::RUN_LABEL;
use crate::cluster::kube::cluster::vms;
use crate::cluster::kube::command::HostRunner;
use crate::cluster::kube::components::{
    self, Component, ComponentError, ComponentSet, Fetcher, Source,
};
use crate::cluster::kube::kind::Kind;
use crate::cluster::provider::Provider;
use crate::objects::FixtureError;
use crate::scenario::Scenario;

/// Why the plan cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the {0} provider has no real cluster to plan")]
    NotReal(Provider),
    #[error("cannot read the kind config {}: {source} (--kind-config)", path.display())]
    ReadKindConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    KindConfig {
        path: PathBuf,
        source: Box<serde_saphyr::Error>,
    },
    #[error(transparent)]
    Component(#[from] ComponentError),
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    #[error(transparent)]
    Render(#[from] ClusterError),
}

/// The nodes kind will name for a config: `<cluster>-control-plane`, `-worker`,
/// `-worker2`, … (kind's own naming), for the plan.
pub fn kind_node_names(
    config_yaml: &str,
    cluster: &str,
) -> Result<Vec<String>, serde_saphyr::Error> {
    let doc: Value = serde_saphyr::from_str(config_yaml)?;
    let roles: Vec<&str> = doc["nodes"]
        .as_array()
        .map(|n| n.iter().filter_map(|n| n["role"].as_str()).collect())
        .unwrap_or_default();
    let roles = if roles.is_empty() {
        vec!["control-plane"]
    } else {
        roles
    };
    let mut seen: Vec<(&str, usize)> = Vec::new();
    Ok(roles
        .into_iter()
        .map(|role| {
            let n = match seen.iter_mut().find(|(r, _)| *r == role) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((role, 1));
                    1
                }
            };
            if n == 1 {
                format!("{cluster}-{role}")
            } else {
                format!("{cluster}-{role}{n}")
            }
        })
        .collect())
}

/// Reads the manifest cache and nothing else: the plan never downloads and
/// records no first-use sum, but a cached file that fails its check is an error.
struct CacheOnly(PathBuf);

impl Fetcher for CacheOnly {
    fn fetch(&self, url: &str) -> Result<String, ComponentError> {
        components::read_cached(&self.0, url, false)?.ok_or_else(|| ComponentError::NotCached {
            url: url.into(),
            dir: self.0.clone(),
        })
    }
}

/// How a remote manifest's bytes are checked, for the plan.
fn checksum_note(url: &str) -> String {
    match components::pinned_sha256(url) {
        Some(sum) => format!("sha256 {sum} pinned"),
        None => "sha256 trusted on first use: recorded next to the cached file, checked on every later read".into(),
    }
}

/// Every image and manifest pin of the run, and what is not pinned and why.
fn pins(w: &mut String, opts: &Options, kind: Option<&Kind<HostRunner>>, sets: &[ComponentSet]) {
    let real = &opts.real;
    let _ = writeln!(
        w,
        "### Pins
"
    );
    if let Some(k) = kind {
        if k.opts.reuse.is_none() {
            let node = k
                .opts
                .node_image
                .as_deref()
                .unwrap_or("kind's own default (not pinned)");
            let _ = writeln!(w, "node image: {node}");
        }
        for load in k.image_loads() {
            let _ = writeln!(
                w,
                "loaded image: {} (built locally, no registry digest: the run prints the image ID `{}` gives)",
                load.image, load.inspect
            );
        }
        if k.opts.engine != "docker" {
            let _ = writeln!(
                w,
                "{0}: kind runs with KIND_EXPERIMENTAL_PROVIDER={0}; images go through an archive in {1}/, removed after loading (also on failure)",
                k.opts.engine,
                k.opts.archive_dir.display()
            );
        }
    }
    let _ = writeln!(w, "pod image: {}", components::POD_IMAGE);
    for set in sets {
        if let Some((repo, image)) = components::image_override(set.name) {
            let _ = writeln!(
                w,
                "{}: every {repo} container runs {image} (overrides the moving tag upstream's manifest names)",
                set.name
            );
        }
        match set.name {
            Component::Macvtap if real.upstream_macvtap => {
                let _ = writeln!(w, "macvtap: {}", components::UPSTREAM_MACVTAP_IMAGE);
            }
            Component::Kubevirt => {
                let _ = writeln!(
                    w,
                    "kubevirt: not pinned by digest: its operator names virt-* images by tag {} (not overridden)",
                    components::KUBEVIRT_VERSION
                );
            }
            Component::Cnao => {
                let _ = writeln!(
                    w,
                    "cnao: the operator deploys its components by digest; its own image is tag {} (not pinned: no digest found)",
                    components::CNAO_VERSION
                );
            }
            _ => {}
        }
        for source in &set.sources {
            if let Source::Remote { url, .. } = source {
                let _ = writeln!(w, "manifest: {url}: {}", checksum_note(url));
            }
        }
    }
    let _ = writeln!(w);
}

/// A document as it would be applied: the run label on it.
fn labelled_yaml(mut doc: Value, run_id: &str) -> String {
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(l) = labels.as_object_mut() {
            l.insert(RUN_LABEL.into(), Value::from(run_id));
        }
    }
    serde_saphyr::to_string(&doc).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

/// The run namespace's name (as `KubeCluster::run_namespace`).
fn run_namespace(run_id: &str) -> String {
    format!("secnet-{run_id}")
}

/// Step 2: the run's own namespace, made before anything else.
fn run_namespace_section(w: &mut String, opts: &Options, run_id: &str) {
    let name = run_namespace(run_id);
    let _ = writeln!(w, "## 2. Run namespace {name}\n");
    let _ = writeln!(
        w,
        "created first; the scenarios' pods, NADs and ConfigMaps go there, whatever namespace their fixtures name (the components keep theirs)"
    );
    if opts.offer().offers(crate::scenario::Capability::NodeAccess) {
        let _ = writeln!(
            w,
            "node access: on a scenario's first node-level check, a probe pod {} per node (privileged, hostNetwork, hostPID, pinned to the node, image {}); commands run as `{} <command>`; deleted with the run",
            crate::cluster::kube::cluster::probe_pod_name("<node>"),
            crate::cluster::kube::KubeOptions::default().pod_image,
            crate::cluster::kube::cluster::NSENTER_HOST.join(" ")
        );
    }
    let doc = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name,
        "labels": {crate::cluster::kube::cluster::POD_SECURITY_LABEL: "privileged"}}});
    let _ = writeln!(w, "---\n{}\n", labelled_yaml(doc, run_id).trim_end());
}

/// Step 3: every object the components would apply is looked up first.
fn conflict_check_section(
    w: &mut String,
    opts: &Options,
    run_id: &str,
    sets: &[ComponentSet],
    dir: &std::path::Path,
    cache: &CacheOnly,
) {
    let _ = writeln!(w, "## 3. Conflict check, before anything is applied\n");
    let _ = writeln!(
        w,
        "each object below that exists without {RUN_LABEL}={run_id} is someone else's: {}",
        if opts.real.adopt_existing {
            "--adopt-existing: used as found (not applied, not labelled, never deleted)"
        } else {
            "the run stops, naming each with its field managers (--adopt-existing uses them as found)"
        }
    );
    for set in sets {
        for source in &set.sources {
            let one = ComponentSet {
                sources: vec![source.clone()],
                ..set.clone()
            };
            let Ok(docs) = components::render(&one, dir, cache) else {
                continue; // not cached: named in the next step
            };
            for doc in docs {
                let kind = doc["kind"].as_str().unwrap_or("?");
                let name = doc["metadata"]["name"].as_str().unwrap_or("?");
                match doc["metadata"]["namespace"].as_str() {
                    Some(ns) => {
                        let _ = writeln!(w, "  {} {kind} {ns}/{name}", set.name);
                    }
                    None => {
                        let _ = writeln!(w, "  {} {kind} {name}", set.name);
                    }
                }
            }
        }
    }
    let _ = writeln!(w);
}

/// The KubeVirt guest image: its build context and the engine's build (`kind load`
/// follows with the other images).
fn guest_image_section(w: &mut String, real: &super::real::RealOptions) {
    let _ = writeln!(
        w,
        "# KubeVirt guest image {}: this machine's guest kernel + initramfs (vm::image), booted by kernelBoot; context {}/Containerfile:",
        vms::guest_image(),
        super::real::guest_context_dir(real).display()
    );
    for line in vms::guest_containerfile().lines() {
        let _ = writeln!(w, "#   {line}");
    }
    let _ = writeln!(w, "$ {}", super::real::guest_image_build_cmd(real));
}

/// What a VM scenario asks of KubeVirt to move a guest and change its NICs (when
/// the run offers it): the VirtualMachineInstanceMigration and the VM's JSON
/// patches, for the seed's macvtap VM between the first two nodes.
fn kubevirt_moves_section(
    w: &mut String,
    opts: &Options,
    run_id: &str,
    scenarios: &[&Scenario],
    nodes: &[String],
) -> Result<(), PlanError> {
    use crate::cluster::kube::cluster::moves;
    use crate::scenario::Capability;
    use crate::vm::kubevirt::{BindingKind, NetworkSource, VirtualMachine, VmInterface};
    let offer = opts.offer();
    if !offer.offers(Capability::LiveMigration) && !offer.offers(Capability::NicHotplug) {
        return Ok(());
    }
    let rel = "seed/vm-macvtap.yaml";
    let raw = match crate::objects::load_file(&opts.fixtures_dir.join(rel))?
        .into_iter()
        .next()
    {
        Some(crate::objects::Object::Other { raw, .. }) => raw,
        _ => return Ok(()),
    };
    let Ok(mut vm) = VirtualMachine::from_value(&raw) else {
        return Ok(());
    };
    vm.name = "vm-hp-mig".into();
    let node = |i: usize| {
        nodes
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("<node {}>", i + 1))
    };
    let ns = run_namespace(run_id);
    let users: Vec<String> = scenarios
        .iter()
        .filter(|s| {
            s.needs
                .iter()
                .any(|c| matches!(c, Capability::LiveMigration | Capability::NicHotplug))
                && s.portable_on(&offer)
        })
        .map(|s| s.name.to_string())
        .collect();
    let _ = writeln!(
        w,
        "\nKubeVirt moves and changes guests (LiveMigration, NicHotplug; withdrawn once connected if fewer than two nodes take pods): for the VM of fixtures/{rel} as {} ({}):",
        vm.name,
        if users.is_empty() {
            "no selected scenario runs it here: the migration and hot-plug scenarios stream from the LAN this machine sees (LanWatch)".to_string()
        } else {
            format!("used by {}", users.join("; "))
        }
    );
    let (from, to) = (node(0), node(1));
    // The name hashes the source pod's, known only once the VM runs.
    let mig = format!("{}-mig-<hash>", vm.name);
    let obj = moves::migration_object(&vm, &mig, &ns, &to, &[]);
    let _ = writeln!(
        w,
        "a migration from {from} to {to} (the name's hash from the source pod and the target): created, its phase read until Succeeded or Failed within the scenario's deadline (the last phase named at the deadline), then the VMI's nodeName and migrationState (start and end times):"
    );
    let _ = writeln!(w, "---\n{}", labelled_yaml(obj, run_id).trim_end());
    let hot = VmInterface {
        name: "hot".into(),
        binding: BindingKind::Macvtap,
        mac: Some("<requested MAC>".into()),
        network: NetworkSource::Multus {
            namespace: "default".into(),
            name: "dataplane".into(),
        },
    };
    let render = |patch: Result<Value, crate::vm::kubevirt::KubevirtError>| match patch {
        Ok(p) => serde_json::to_string_pretty(&p).unwrap_or_default(),
        Err(e) => format!("(none: {e})"),
    };
    let plug = moves::plug_patch(&vm, &hot, &ns);
    let _ = writeln!(
        w,
        "\na hot-plug of interface hot: PATCH virtualmachines/{ns}/{} (application/json-patch+json), then the VMI's status.interfaces read until it lists hot with a MAC, and the guest shows the MAC:\n{}",
        vm.name,
        render(plug)
    );
    let mut plugged = vm.clone();
    plugged.interfaces.push(hot);
    let _ = writeln!(
        w,
        "\nits unplug: PATCH virtualmachines/{ns}/{}, then the VMI's status.interfaces read until hot is gone:\n{}",
        vm.name,
        render(crate::vm::kubevirt_api::unplug_patch(&plugged, "hot"))
    );
    Ok(())
}

/// `--dry-run`: every command and every rendered manifest of a run, in order,
/// without a cluster, Docker or network (remote manifests come from the cache or
/// are named with their pin).
pub fn plan(opts: &Options, run_id: &str, scenarios: &[&Scenario]) -> Result<String, PlanError> {
    let real = &opts.real;
    let sets = selected_sets(real);
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "# secnet conform --cluster {} --dry-run: the plan of run {run_id} (nothing is run)\n",
        opts.cluster
    );
    let mut kind = None;
    // The nodes a migration would go between (kind's from its config).
    let mut nodes_named = real.nodes.clone();
    match opts.cluster {
        Provider::Kind => {
            let k = Kind::new(kind_options(opts, run_id), HostRunner);
            let config = std::fs::read_to_string(&k.opts.config).map_err(|source| {
                PlanError::ReadKindConfig {
                    path: k.opts.config.clone(),
                    source,
                }
            })?;
            let nodes = kind_node_names(&config, &k.cluster_name()).map_err(|source| {
                PlanError::KindConfig {
                    path: k.opts.config.clone(),
                    source: Box::new(source),
                }
            })?;
            match &k.opts.reuse {
                Some(name) => {
                    let _ = writeln!(
                        w,
                        "## 1. Cluster: kind, reusing {name} (not created, never deleted)\n"
                    );
                }
                None => {
                    let _ = writeln!(w, "## 1. Cluster: kind\n");
                    let _ = writeln!(w, "$ {}", k.create_cmd());
                }
            }
            let _ = writeln!(w, "$ {}", k.nodes_cmd());
            for node in &nodes {
                for cmd in k.lower_device_cmds(node) {
                    let _ = writeln!(w, "$ {cmd}");
                }
            }
            if real.components.contains(&Component::Kubevirt) {
                guest_image_section(w, real);
            }
            for cmd in k.load_cmds() {
                let _ = writeln!(w, "$ {cmd}");
            }
            let _ = writeln!(w, "$ {}", k.kubeconfig_cmd());
            let _ = writeln!(
                w,
                "\n# {} ({}):\n{config}",
                k.opts.config.display(),
                nodes.join(", ")
            );
            pins(w, opts, Some(&k), &sets);
            nodes_named = nodes;
            kind = Some(k);
        }
        Provider::Existing => {
            let _ = writeln!(
                w,
                "## 1. Cluster: existing (never created or deleted by secnet)\n"
            );
            let _ = writeln!(
                w,
                "kubeconfig: {}\ncontext: {}\n",
                real.kubeconfig
                    .as_ref()
                    .map_or("$KUBECONFIG, ~/.kube/config or in-cluster".into(), |p| p
                        .display()
                        .to_string()),
                real.context
                    .as_deref()
                    .unwrap_or("the kubeconfig's current context")
            );
            let _ = writeln!(
                w,
                "nodes: {}\nlower device: {}\n",
                if real.nodes.is_empty() {
                    "all (unpinned pods wherever the scheduler puts them)".to_string()
                } else {
                    format!(
                        "{} (unpinned pods kept on them by node affinity)",
                        real.nodes.join(", ")
                    )
                },
                real.lower_device
            );
            pins(w, opts, None, &sets);
        }
        Provider::Netns | Provider::Bare => return Err(PlanError::NotReal(opts.cluster)),
    }
    let dir = opts.fixtures_dir.join("components");
    let cache = CacheOnly(real.manifest_cache.clone());
    run_namespace_section(w, opts, run_id);
    conflict_check_section(w, opts, run_id, &sets, &dir, &cache);
    let _ = writeln!(
        w,
        "## 4. Components: server-side apply (field manager secnet, never forced, label {RUN_LABEL}={run_id})\n"
    );
    for set in &sets {
        let _ = writeln!(w, "### {} {}\n", set.name, set.version);
        for source in &set.sources {
            let one = ComponentSet {
                sources: vec![source.clone()],
                ..set.clone()
            };
            match (components::render(&one, &dir, &cache), source) {
                (Ok(docs), _) => {
                    let from = match source {
                        Source::Local(rel) => format!("fixtures/components/{rel}"),
                        Source::Remote { url, version } => {
                            format!("{url} (pinned {version}, cached, {})", checksum_note(url))
                        }
                    };
                    let _ = writeln!(w, "# from {from}: {} document(s)", docs.len());
                    for doc in docs {
                        let _ = writeln!(w, "---\n{}", labelled_yaml(doc, run_id).trim_end());
                    }
                    let _ = writeln!(w);
                }
                (Err(ComponentError::NotCached { .. }), Source::Remote { url, version }) => {
                    let _ = writeln!(
                        w,
                        "# fetched at run time: {url} (pinned {version}, {}; not in the cache {} yet, so not shown)\n",
                        checksum_note(url),
                        real.manifest_cache.display()
                    );
                }
                (Err(e), _) => return Err(e.into()),
            }
        }
    }
    if sets.iter().any(|s| s.name == Component::Macvtap) {
        let _ = writeln!(
            w,
            "then wait up to {} s until every node has allocatable {}\n",
            real.timeout.as_secs(),
            crate::scenario::seed::DATAPLANE
        );
    }
    if sets.iter().any(|s| s.name == Component::Openvswitch) {
        let _ = writeln!(
            w,
            "then wait up to {} s until every node has a Ready Open vSwitch pod\n",
            real.timeout.as_secs()
        );
    }
    if sets.iter().any(|s| s.name == Component::Kubevirt) {
        let _ = writeln!(
            w,
            "then wait up to {} s until KubeVirt kubevirt/kubevirt is Available\n",
            super::real::kubevirt_timeout(real).as_secs()
        );
    }
    let _ = writeln!(w, "## 5. Scenarios\n");
    let nad = crate::objects::load_file(&opts.fixtures_dir.join("seed/macvtap-nad.yaml"))?;
    for (i, s) in scenarios.iter().enumerate() {
        if s.portable_on(&opts.offer()) {
            let _ = writeln!(
                w,
                "[{:>2}] run   {} (objects labelled secnet.scope=s{}, deleted after it)",
                i + 1,
                s.name,
                i + 1
            );
        } else {
            let why = s.unsupported_on(&opts.offer()).unwrap_or_default();
            let _ = writeln!(w, "[{:>2}] skip  {}  ({why})", i + 1, s.name);
        }
    }
    let _ = writeln!(
        w,
        "\nevery scenario first applies fixtures/seed/macvtap-nad.yaml, in the run namespace:"
    );
    for obj in &nad {
        let mut doc = crate::cluster::kube::apply::document(obj)?;
        doc["metadata"]["namespace"] = Value::from(run_namespace(run_id));
        let _ = writeln!(w, "---\n{}", labelled_yaml(doc, run_id).trim_end());
    }
    kubevirt_moves_section(w, opts, run_id, scenarios, &nodes_named)?;
    let _ = writeln!(w, "\n## 6. Teardown\n");
    let _ = writeln!(
        w,
        "delete every object labelled {RUN_LABEL}={run_id} (by UID; objects without the label are never touched)"
    );
    let _ = writeln!(
        w,
        "then delete namespace {} and wait until it is gone",
        run_namespace(run_id)
    );
    if let Some(k) = kind {
        if k.opts.reuse.is_some() {
            let _ = writeln!(w, "on failure: $ {}", k.export_logs_cmd());
            let _ = writeln!(w, "the reused cluster stays");
        } else if opts.keep {
            let _ = writeln!(
                w,
                "--keep: the kind cluster stays; on failure: $ {}",
                k.export_logs_cmd()
            );
        } else {
            let _ = writeln!(w, "on failure: $ {}", k.export_logs_cmd());
            let _ = writeln!(w, "$ {}", k.delete_cmd());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_nodes_by_role_and_count() {
        let config =
            "kind: Cluster\nnodes:\n  - role: control-plane\n  - role: worker\n  - role: worker\n";
        assert_eq!(
            kind_node_names(config, "secnet-sn000001").unwrap(),
            [
                "secnet-sn000001-control-plane",
                "secnet-sn000001-worker",
                "secnet-sn000001-worker2"
            ]
        );
        assert_eq!(
            kind_node_names("kind: Cluster\n", "c").unwrap(),
            ["c-control-plane"]
        );
    }

    fn plan_options(cluster: &str, cache: &std::path::Path) -> Options {
        use clap::ValueEnum as _;
        let mut opts = Options::bundled();
        opts.cluster = Provider::from_str(cluster, false).unwrap();
        opts.real.manifest_cache = cache.to_path_buf();
        opts
    }

    /// The plan of every scenario with machine-specific paths replaced, for a snapshot.
    fn full_plan(opts: &Options) -> String {
        let all = crate::scenario::all();
        let selected: Vec<&Scenario> = all.iter().collect();
        let plan = plan(opts, "sn000001", &selected).unwrap();
        let repo = opts.fixtures_dir.parent().unwrap().display().to_string();
        let tmp = std::env::temp_dir().display().to_string();
        plan.replace(&opts.real.manifest_cache.display().to_string(), "<cache>")
            .replace(&repo, "<repo>")
            .replace(&format!("{tmp}/"), "<tmp>/")
    }

    #[test]
    fn kind_dry_run_plan() {
        let cache = crate::lab::ScratchDir::new("secnet-plan-test").unwrap();
        let opts = plan_options("kind", cache.path());
        insta::assert_snapshot!("kind_dry_run_plan", full_plan(&opts));
    }

    /// The cluster section with podman: the provider variable on every kind
    /// command, the archive load, the pins.
    #[test]
    fn podman_kind_plan() {
        let cache = crate::lab::ScratchDir::new("secnet-plan-test").unwrap();
        let mut opts = plan_options("kind", cache.path());
        opts.real.engine = "podman".into();
        let plan = full_plan(&opts);
        let cluster = &plan[..plan.find("## 2.").unwrap()];
        insta::assert_snapshot!("podman_kind_plan_cluster_section", cluster);
    }

    /// A cached manifest is shown as it would be applied, after its checksum: one
    /// without a pin is trusted on first use (the plan records nothing), one that
    /// differs from its pin or its recorded sum stops the plan.
    #[test]
    fn cached_manifests_are_checked_before_they_are_shown() {
        let cache = crate::lab::ScratchDir::new("secnet-plan-test").unwrap();
        let mut opts = plan_options("kind", cache.path());
        opts.real.components = vec![Component::Multus, Component::Kubevirt];
        let operator =
            "https://github.com/kubevirt/kubevirt/releases/download/v1.6.0/kubevirt-operator.yaml";
        let cached = cache.path().join(components::cache_name(operator));
        std::fs::write(
            &cached,
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubevirt\n",
        )
        .unwrap();
        let shown = full_plan(&opts);
        assert!(
            shown.contains(&format!(
                "# from {operator} (pinned v1.6.0, cached, sha256 trusted on first use"
            )),
            "{shown}"
        );
        assert!(shown.contains("  name: kubevirt\n"), "{shown}");
        assert!(
            !components::sum_file(&cached).exists(),
            "a plan records nothing"
        );

        // A recorded sum that no longer matches.
        std::fs::write(
            components::sum_file(&cached),
            format!("{}  x\n", "0".repeat(64)),
        )
        .unwrap();
        let all = crate::scenario::all();
        let err = plan(&opts, "sn000001", &[&all[0]]).unwrap_err().to_string();
        assert!(
            err.contains(operator) && err.contains(&"0".repeat(64)),
            "{err}"
        );
        assert!(err.contains("recorded by its first fetch"), "{err}");
        std::fs::remove_file(components::sum_file(&cached)).unwrap();

        // A cached multus manifest that is not the pinned one.
        let multus = components::MANIFEST_SHA256[0].0;
        std::fs::write(
            cache.path().join(components::cache_name(multus)),
            "kind: x\n",
        )
        .unwrap();
        let err = plan(&opts, "sn000001", &[&all[0]]).unwrap_err().to_string();
        assert!(err.contains(multus) && err.contains("pinned in"), "{err}");
    }

    #[test]
    fn reused_kind_cluster_plan_has_no_create_or_delete() {
        let cache = crate::lab::ScratchDir::new("secnet-plan-test").unwrap();
        let mut opts = plan_options("kind", cache.path());
        opts.real.kind_reuse = Some("dev".into());
        let plan = full_plan(&opts);
        assert!(
            plan.contains("reusing dev (not created, never deleted)"),
            "{plan}"
        );
        assert!(
            !plan.contains("kind create") && !plan.contains("kind delete"),
            "{plan}"
        );
        assert!(plan.contains("$ kind get nodes --name dev"), "{plan}");
    }

    #[test]
    fn kind_plan_with_kubevirt_runs_the_vm_scenarios_on_an_emulated_kubevirt() {
        let cache = crate::lab::ScratchDir::new("secnet-plan-test").unwrap();
        let mut opts = plan_options("kind", cache.path());
        opts.real.components = vec![Component::Multus, Component::Macvtap, Component::Kubevirt];
        let plan = full_plan(&opts);
        let line = |name: &str| {
            plan.lines()
                .find(|l| l.contains(name))
                .unwrap_or_else(|| panic!("no {name} in {plan}"))
                .to_string()
        };
        for runnable in [
            "vm/macvtap frontend",
            "vm/bridge binding on macvlan-test",
            "vm/guest that cannot boot",
            "vm/masquerade",
        ] {
            assert!(line(runnable).contains("] run   "), "{}", line(runnable));
        }
        assert!(plan.contains("useEmulation: true"), "{plan}");
        assert!(
            plan.contains("until KubeVirt kubevirt/kubevirt is Available"),
            "{plan}"
        );
        let build = "$ docker build -t localhost/secnet-guest:dev -f <cache>/guest-image/Containerfile <cache>/guest-image";
        let load = "$ kind load docker-image localhost/secnet-guest:dev --name secnet-sn000001";
        let (b, l) = (plan.find(build), plan.find(load));
        assert!(
            b.is_some() && l.is_some() && b < l,
            "build then load:\n{plan}"
        );
        assert!(
            plan.contains(&format!("#   COPY kernel {}", vms::KERNEL_PATH)),
            "{plan}"
        );
    }

    #[test]
    fn existing_dry_run_plan_never_creates_or_deletes_the_cluster() {
        let cache = crate::lab::ScratchDir::new("secnet-plan-test").unwrap();
        let mut opts = plan_options("existing", cache.path());
        opts.real.context = Some("lab".into());
        opts.real.upstream_macvtap = true;
        let plan = full_plan(&opts);
        assert!(plan.contains("context: lab"), "{plan}");
        assert!(plan.contains(components::UPSTREAM_MACVTAP_IMAGE), "{plan}");
        assert!(!plan.contains("$ kind"), "{plan}");
        assert!(plan.contains("not in the cache <cache> yet"), "{plan}");
    }
}
