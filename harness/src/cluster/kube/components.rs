//! Pinned component sets for real clusters: our manifests (`fixtures/components/`)
//! with `${NAME}` placeholders, and upstream manifests fetched by URL + version pin
//! through a `Fetcher` (curl into an offline cache dir; a fake in tests).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::command::{Cmd, HostRunner, Runner};

/// The bundled plugins' image (built from `Containerfile`, loaded into kind).
pub const SECNET_IMAGE: &str = "localhost/secnet-plugins:dev";
pub const UPSTREAM_MACVTAP_IMAGE: &str = "quay.io/kubevirt/macvtap-cni:v0.13.1";
pub const MULTUS_VERSION: &str = "v4.2.3";
pub const KUBEVIRT_VERSION: &str = "v1.6.0";
pub const CNAO_VERSION: &str = "v0.99.0";
/// Open vSwitch for nodes that have none (the `openvswitch` set; Containerfile stage `ovs`).
pub const OPENVSWITCH_IMAGE: &str = "localhost/secnet-ovs:dev";

/// A component set secnet can install (`--components`, an inventory's `preinstalled`),
/// in the order `sets` applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    Multus,
    Macvtap,
    /// Open vSwitch itself on every node (what ovs-cni plugs into).
    Openvswitch,
    OvsCni,
    Kubevirt,
    Cnao,
}

impl Component {
    pub const ALL: [Component; 6] = [
        Component::Multus,
        Component::Macvtap,
        Component::Openvswitch,
        Component::OvsCni,
        Component::Kubevirt,
        Component::Cnao,
    ];

    /// The name on the command line, in inventories and reports.
    pub fn name(self) -> &'static str {
        match self {
            Component::Multus => "multus",
            Component::Macvtap => "macvtap",
            Component::Openvswitch => "openvswitch",
            Component::OvsCni => "ovs-cni",
            Component::Kubevirt => "kubevirt",
            Component::Cnao => "cnao",
        }
    }

    /// The known names, comma-separated, for error messages.
    pub fn known() -> String {
        Component::ALL.map(Component::name).join(", ")
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown component {0:?}; known: {known}", known = Component::known())]
pub struct UnknownComponent(pub String);

impl std::str::FromStr for Component {
    type Err = UnknownComponent;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Component::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| UnknownComponent(name.to_string()))
    }
}

/// Inventories name components as strings; an unknown one is an error naming the known.
impl<'de> serde::Deserialize<'de> for Component {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A `${NAME}` placeholder that cannot be filled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubstituteError {
    #[error("unterminated ${{ (a placeholder is ${{NAME}})")]
    Unterminated,
    #[error("no value for ${{{0}}}")]
    Unknown(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("failed to fetch {url}: {source}")]
    Fetch {
        url: String,
        source: Box<super::command::CommandError>,
    },
    #[error("{url} is not in the manifest cache {} (--manifest-cache; a run with network fills it)", dir.display())]
    NotCached { url: String, dir: PathBuf },
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write the manifest cache {}: {source}", path.display())]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("component {set}: {file}: {source}")]
    Placeholder {
        set: Component,
        file: String,
        source: SubstituteError,
    },
    #[error("component {set}: {file} is not valid YAML: {source}")]
    Yaml {
        set: Component,
        file: String,
        source: Box<serde_saphyr::Error>,
    },
    #[error("component {set}: {file}, document {doc}: needs apiVersion and kind")]
    NotAnObject {
        set: Component,
        file: String,
        doc: usize,
    },
    #[error("failed to apply component {set}: {source}")]
    Apply {
        set: Component,
        source: crate::cluster::ClusterError,
    },
}

/// Gets a remote manifest's text.
pub trait Fetcher {
    fn fetch(&self, url: &str) -> Result<String, ComponentError>;
}

/// Downloads with curl (present on every CI image; no HTTP stack of our own).
pub struct CurlFetcher;

impl Fetcher for CurlFetcher {
    fn fetch(&self, url: &str) -> Result<String, ComponentError> {
        let cmd = Cmd::new("curl", &["-fsSL", "--retry", "3", url]);
        HostRunner
            .run(&cmd)
            .map_err(|source| ComponentError::Fetch {
                url: url.into(),
                source: Box::new(source),
            })
    }
}

/// Reads `dir/<url as a file name>` if present, else fetches and stores it there:
/// a warm cache runs offline. Pins are versioned URLs, so a cached file never goes stale.
pub struct CachedFetcher<F> {
    pub dir: PathBuf,
    pub inner: F,
}

pub fn cache_name(url: &str) -> String {
    url.trim_start_matches("https://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl<F: Fetcher> Fetcher for CachedFetcher<F> {
    fn fetch(&self, url: &str) -> Result<String, ComponentError> {
        let path = self.dir.join(cache_name(url));
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Ok(text);
        }
        let text = self.inner.fetch(url)?;
        let write = std::fs::create_dir_all(&self.dir).and_then(|_| std::fs::write(&path, &text));
        write.map_err(|source| ComponentError::Cache { path, source })?;
        Ok(text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Source {
    /// A file under `fixtures/components/`.
    Local(String),
    Remote {
        url: String,
        version: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentSet {
    pub name: Component,
    pub version: String,
    pub sources: Vec<Source>,
    pub vars: BTreeMap<String, String>,
    /// `(namespace, label selector)` of its pods, for diagnostics.
    pub log_selectors: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvtapImpl {
    /// The bundled Rust plugins from `SECNET_IMAGE`.
    Secnet,
    /// kubevirt/macvtap-cni's image.
    Upstream,
}

#[derive(Debug, Clone)]
pub struct ComponentOptions {
    pub macvtap: MacvtapImpl,
    pub image: String,
    pub lower_device: String,
    /// Do the nodes have /dev/kvm? Without it KubeVirt uses software emulation.
    pub kvm: bool,
}

impl Default for ComponentOptions {
    fn default() -> Self {
        ComponentOptions {
            macvtap: MacvtapImpl::Secnet,
            image: SECNET_IMAGE.into(),
            lower_device: super::DEFAULT_LOWER_DEVICE.into(),
            kvm: false,
        }
    }
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every set, in the order they are applied.
pub fn sets(opts: &ComponentOptions) -> Vec<ComponentSet> {
    // Our image has no shell: its install step is install-cni; upstream's has cp.
    let (mv_image, dp_cmd, cni_src, install_cni) = match opts.macvtap {
        MacvtapImpl::Secnet => (
            opts.image.as_str(),
            "/usr/local/bin/macvtap-deviceplugin",
            "/usr/local/bin/macvtap",
            "/usr/local/bin/install-cni",
        ),
        MacvtapImpl::Upstream => (
            UPSTREAM_MACVTAP_IMAGE,
            "/macvtap-deviceplugin",
            "/macvtap-cni",
            "cp",
        ),
    };
    let gh = |repo: &str, version: &str, file: &str| Source::Remote {
        url: format!("https://github.com/{repo}/releases/download/{version}/{file}"),
        version: version.into(),
    };
    vec![
        ComponentSet {
            name: Component::Multus,
            version: MULTUS_VERSION.into(),
            sources: vec![Source::Remote {
                url: format!(
                    "https://raw.githubusercontent.com/k8snetworkplumbingwg/multus-cni/{MULTUS_VERSION}/deployments/multus-daemonset-thick.yml"
                ),
                version: MULTUS_VERSION.into(),
            }],
            vars: BTreeMap::new(),
            log_selectors: vec![("kube-system".into(), "app=multus".into())],
        },
        ComponentSet {
            name: Component::Macvtap,
            version: mv_image.rsplit(':').next().unwrap_or("").into(),
            sources: vec![Source::Local("macvtap/macvtap.yaml".into())],
            vars: vars(&[
                ("MACVTAP_IMAGE", mv_image),
                ("MACVTAP_DP_CMD", dp_cmd),
                ("MACVTAP_CNI_SRC", cni_src),
                ("MACVTAP_INSTALL_CNI", install_cni),
                ("LOWER_DEVICE", &opts.lower_device),
            ]),
            log_selectors: vec![("kube-system".into(), "app=secnet-macvtap".into())],
        },
        openvswitch_set(),
        ComponentSet {
            name: Component::OvsCni,
            version: opts.image.rsplit(':').next().unwrap_or("").into(),
            sources: vec![Source::Local("ovs-cni/ovs-cni.yaml".into())],
            vars: vars(&[
                ("OVS_IMAGE", &opts.image),
                ("OVS_CNI_SRC", "/usr/local/bin/ovs"),
            ]),
            log_selectors: vec![("kube-system".into(), "app=secnet-ovs-cni".into())],
        },
        ComponentSet {
            name: Component::Kubevirt,
            version: KUBEVIRT_VERSION.into(),
            sources: vec![
                gh(
                    "kubevirt/kubevirt",
                    KUBEVIRT_VERSION,
                    "kubevirt-operator.yaml",
                ),
                Source::Local("kubevirt/kubevirt-cr.yaml".into()),
            ],
            vars: vars(&[("USE_EMULATION", if opts.kvm { "false" } else { "true" })]),
            log_selectors: vec![("kubevirt".into(), "kubevirt.io".into())],
        },
        ComponentSet {
            name: Component::Cnao,
            version: CNAO_VERSION.into(),
            sources: vec![
                gh(
                    "kubevirt/cluster-network-addons-operator",
                    CNAO_VERSION,
                    "namespace.yaml",
                ),
                gh(
                    "kubevirt/cluster-network-addons-operator",
                    CNAO_VERSION,
                    "network-addons-config.crd.yaml",
                ),
                gh(
                    "kubevirt/cluster-network-addons-operator",
                    CNAO_VERSION,
                    "operator.yaml",
                ),
                Source::Local("cnao/networkaddonsconfig.yaml".into()),
            ],
            vars: BTreeMap::new(),
            log_selectors: vec![(
                "cluster-network-addons".into(),
                "name=cluster-network-addons-operator".into(),
            )],
        },
    ]
}

/// Open vSwitch on every node: a DaemonSet running ovsdb-server and ovs-vswitchd
/// with the userspace datapath, bridge and trunk uplink named as the netns nodes
/// name them (`super::openvswitch`).
fn openvswitch_set() -> ComponentSet {
    use super::openvswitch as ovs;
    ComponentSet {
        name: Component::Openvswitch,
        version: OPENVSWITCH_IMAGE.rsplit(':').next().unwrap_or("").into(),
        sources: vec![Source::Local("openvswitch/openvswitch.yaml".into())],
        vars: vars(&[
            ("OPENVSWITCH_IMAGE", OPENVSWITCH_IMAGE),
            ("OVS_BRIDGE", ovs::BRIDGE),
            ("OVS_UPLINK", ovs::UPLINK),
            ("OVS_UNDERLAY", ovs::UNDERLAY),
            ("OVS_VXLAN_ID", ovs::VXLAN_ID),
            ("OVS_VXLAN_GROUP", ovs::VXLAN_GROUP),
            ("OVS_VXLAN_PORT", ovs::VXLAN_PORT),
        ]),
        log_selectors: vec![(ovs::NAMESPACE.into(), ovs::POD_SELECTOR.into())],
    }
}

/// Replaces `${NAME}` with its value; an unknown placeholder is an error.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String, SubstituteError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(SubstituteError::Unterminated)?;
        let name = &after[..end];
        let value = vars
            .get(name)
            .ok_or_else(|| SubstituteError::Unknown(name.to_string()))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The documents a set applies, in order (each with `apiVersion` and `kind`).
pub fn render(
    set: &ComponentSet,
    fixtures_dir: &Path,
    fetcher: &dyn Fetcher,
) -> Result<Vec<Value>, ComponentError> {
    let mut docs = Vec::new();
    for source in &set.sources {
        let (text, label) = match source {
            Source::Local(rel) => {
                let path = fixtures_dir.join(rel);
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| ComponentError::Read { path, source })?;
                let text =
                    substitute(&text, &set.vars).map_err(|source| ComponentError::Placeholder {
                        set: set.name,
                        file: rel.clone(),
                        source,
                    })?;
                (text, rel.clone())
            }
            Source::Remote { url, .. } => (fetcher.fetch(url)?, url.clone()),
        };
        // Kept raw (not through the typed fixture model): every field upstream wrote
        // is applied as written.
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|source| ComponentError::Yaml {
                set: set.name,
                file: label.clone(),
                source: Box::new(source),
            })?;
        for (i, doc) in parsed.into_iter().enumerate().filter(|(_, d)| !d.is_null()) {
            let has = |k: &str| doc.get(k).and_then(Value::as_str).is_some();
            if !(has("apiVersion") && has("kind")) {
                return Err(ComponentError::NotAnObject {
                    set: set.name,
                    file: label,
                    doc: i + 1,
                });
            }
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Renders a set and applies it (server-side apply, run label) to the cluster.
/// The (blocking) fetches happen here, before the returned future's first apply;
/// pass a warm `CachedFetcher` to run offline. The future does not hold the fetcher.
pub fn install<'a>(
    cluster: &'a super::KubeCluster,
    set: &'a ComponentSet,
    fixtures_dir: &Path,
    fetcher: &dyn Fetcher,
) -> impl std::future::Future<Output = Result<usize, ComponentError>> + Send + 'a {
    let rendered = render(set, fixtures_dir, fetcher);
    async move {
        let docs = rendered?;
        let n = docs.len();
        for doc in docs {
            cluster
                .apply_document(doc)
                .await
                .map_err(|source| ComponentError::Apply {
                    set: set.name,
                    source,
                })?;
        }
        Ok(n)
    }
}
