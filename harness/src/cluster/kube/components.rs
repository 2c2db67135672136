//! Pinned component sets for real clusters: our manifests (`fixtures/components/`)
//! with `${NAME}` placeholders, and upstream manifests fetched by URL + version pin
//! through a `Fetcher` (curl into an offline cache dir; a fake in tests).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::command::{Cmd, HostRunner, Runner};

/// The bundled plugins' image (built from `Containerfile`, loaded into kind). Built
/// locally, so it has no registry digest: the run names the image ID it loaded.
pub const SECNET_IMAGE: &str = "localhost/secnet-plugins:dev";
/// kubevirt/macvtap-cni v0.13.1. Digest read from cluster-network-addons-operator
/// v0.102.0, `pkg/components/components.go` (`MacvtapCniImageDefault`), whose
/// `components.yaml` names macvtap-cni v0.13.1 (commit b6a53d4).
pub const UPSTREAM_MACVTAP_IMAGE: &str = "quay.io/kubevirt/macvtap-cni:v0.13.1@sha256:5266955a654a4cb4e425424ab274cf31e7a6deb3f340e3679a11d689bfa734d0";
/// Plain pods' image (`KubeOptions::pod_image`; also the node probe pods'). Digest of
/// docker.io/library/busybox:1.37 as pinned in several public Dockerfiles and test
/// suites (found with the search tool; not pulled here: no container engine).
pub const POD_IMAGE: &str = "docker.io/library/busybox:1.37@sha256:9db7b59979c38555a39def84a31fb98b5296952f9e3afd4f6f11f05b07adfab0";
/// v4.3.0 rather than v4.2.x: the release whose thick manifest and image digest
/// could both be found (see `MULTUS_IMAGE`, `MANIFEST_SHA256`).
pub const MULTUS_VERSION: &str = "v4.3.0";
/// Upstream's thick DaemonSet names the moving `snapshot-thick` tag; `render`
/// overrides its multus containers' images with this release image. Digest (and the
/// manifest's sha256 below) read from infernix/kubevirt-ip-helper,
/// `test/e2e/versions.env` (`MULTUS_IMAGE_DIGEST`, `MULTUS_MANIFEST_SHA256`).
pub const MULTUS_IMAGE: &str = "ghcr.io/k8snetworkplumbingwg/multus-cni:v4.3.0-thick@sha256:a922a39a78049991d03178c07afc45a198326481049bd7d84626097402fa14bb";
/// The repository whose images in the multus set are replaced by `MULTUS_IMAGE`.
pub const MULTUS_IMAGE_REPO: &str = "ghcr.io/k8snetworkplumbingwg/multus-cni";
/// KubeVirt's operator manifest names its images by tag (`virt-operator:v1.6.0`,
/// and the operator deploys the other virt-* images by the same tag); they are not
/// overridden: the operator resolves them itself, and a wrong override would only
/// show as a stuck rollout. The manifest is checked on first use (no pin found).
pub const KUBEVIRT_VERSION: &str = "v1.6.0";
/// CNAO's operator manifest pins the components it deploys by digest (its
/// `*_IMAGE` environment); only its own image is a tag
/// (`cluster-network-addons-operator:v0.99.0`), left as is: no digest found here.
pub const CNAO_VERSION: &str = "v0.99.0";
pub use super::openvswitch::IMAGE as OPENVSWITCH_IMAGE;
/// whereabouts' release image for kind and existing clusters (its binaries and a
/// shell at `/`); a tag, not pinned by digest (none found). The bare provider
/// writes its own image from `--component-bin whereabouts=DIR` instead.
pub const WHEREABOUTS_IMAGE: &str = "ghcr.io/k8snetworkplumbingwg/whereabouts:v0.9.2";

/// Known sha256 of remote manifests. Every other remote manifest is trusted on
/// first use: its sum is recorded next to the cached file and checked on every
/// later read (`CachedFetcher`).
pub const MANIFEST_SHA256: &[(&str, &str)] = &[(
    // infernix/kubevirt-ip-helper, test/e2e/versions.env (MULTUS_MANIFEST_SHA256).
    "https://raw.githubusercontent.com/k8snetworkplumbingwg/multus-cni/v4.3.0/deployments/multus-daemonset-thick.yml",
    "2d622f697809644a12704497bbf5c3256adc1e7f5b5504655e4993743651b585",
)];

/// The pinned sha256 of a remote manifest, if secnet knows one.
pub fn pinned_sha256(url: &str) -> Option<&'static str> {
    MANIFEST_SHA256
        .iter()
        .find(|(u, _)| *u == url)
        .map(|(_, sum)| *sum)
}

/// An image reference's tag (`v0.13.1` of `repo:v0.13.1@sha256:...`), for versions.
pub fn image_tag(image: &str) -> &str {
    let named = image.split('@').next().unwrap_or(image);
    match named.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => tag,
        _ => "",
    }
}

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
    /// whereabouts, the cluster-wide IPAM (secnet's manifest).
    Whereabouts,
}

impl Component {
    pub(crate) const ALL: [Component; 7] = [
        Component::Multus,
        Component::Macvtap,
        Component::Openvswitch,
        Component::OvsCni,
        Component::Kubevirt,
        Component::Cnao,
        Component::Whereabouts,
    ];

    /// The name on the command line, in inventories and reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Component::Multus => "multus",
            Component::Macvtap => "macvtap",
            Component::Openvswitch => "openvswitch",
            Component::OvsCni => "ovs-cni",
            Component::Kubevirt => "kubevirt",
            Component::Cnao => "cnao",
            Component::Whereabouts => "whereabouts",
        }
    }

    /// The known names, comma-separated, for error messages.
    pub(crate) fn known() -> String {
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
    #[error(transparent)]
    Checksum(Box<ChecksumMismatch>),
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
/// a warm cache runs offline. Pins are versioned URLs, so a cached file never goes
/// stale; its sha256 is checked on every read and fetch: against `MANIFEST_SHA256`,
/// or else against `<file>.sha256`, written when the file is first seen.
pub struct CachedFetcher<F> {
    pub(crate) dir: PathBuf,
    pub(crate) inner: F,
}

/// A manifest whose bytes are not the ones expected.
#[derive(Debug, thiserror::Error)]
#[error(
    "{url}: {} has sha256 {actual}, expected {expected} ({}); {}",
    file.display(), expected_from.origin(), expected_from.fix(file)
)]
pub struct ChecksumMismatch {
    pub(crate) url: String,
    /// The cache file (a download is written there only once its sum matched).
    pub(crate) file: PathBuf,
    pub(crate) expected: String,
    pub(crate) actual: String,
    pub(crate) expected_from: Expected,
}

/// Where a manifest's expected sha256 came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// `MANIFEST_SHA256` in this file.
    Pinned,
    /// The `.sha256` file its first fetch wrote (trust on first use).
    FirstUse(PathBuf),
}

impl Expected {
    fn origin(&self) -> String {
        match self {
            Expected::Pinned => "pinned in harness/src/cluster/kube/components.rs".into(),
            Expected::FirstUse(sum) => format!("recorded by its first fetch in {}", sum.display()),
        }
    }

    fn fix(&self, file: &Path) -> String {
        match self {
            Expected::Pinned => format!(
                "delete {} to fetch it again; if upstream re-published it on purpose, update its pin in MANIFEST_SHA256",
                file.display()
            ),
            Expected::FirstUse(sum) => format!(
                "if the change is expected, delete {} and {} to trust a new download",
                file.display(),
                sum.display()
            ),
        }
    }
}

/// The trust-on-first-use sum file next to a cached manifest.
pub fn sum_file(cached: &Path) -> PathBuf {
    let mut name = cached.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Checks `text` (the manifest of `url`, cached at `file`) against its pin or its
/// first-use sum. `record`: with neither, write the sum file (trust on first use);
/// the dry-run plan passes false, as it changes nothing.
pub fn verify(url: &str, file: &Path, text: &str, record: bool) -> Result<(), ComponentError> {
    let actual = super::checksum::sha256_hex(text.as_bytes());
    let mismatch = |expected: &str, expected_from| {
        ComponentError::Checksum(Box::new(ChecksumMismatch {
            url: url.into(),
            file: file.to_path_buf(),
            expected: expected.into(),
            actual: actual.clone(),
            expected_from,
        }))
    };
    if let Some(pin) = pinned_sha256(url) {
        return if pin == actual {
            Ok(())
        } else {
            Err(mismatch(pin, Expected::Pinned))
        };
    }
    let sum = sum_file(file);
    match std::fs::read_to_string(&sum) {
        Ok(recorded) => {
            let recorded = recorded.split_whitespace().next().unwrap_or("");
            if recorded == actual {
                Ok(())
            } else {
                Err(mismatch(recorded, Expected::FirstUse(sum)))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if record {
                // `sha256sum -c` reads this format.
                let line = format!("{actual}  {}\n", file.display());
                std::fs::write(&sum, line)
                    .map_err(|source| ComponentError::Cache { path: sum, source })?;
            }
            Ok(())
        }
        Err(source) => Err(ComponentError::Read { path: sum, source }),
    }
}

/// The cached manifest of `url` in `dir`, checked (`verify`); `None` if not cached.
pub fn read_cached(dir: &Path, url: &str, record: bool) -> Result<Option<String>, ComponentError> {
    let path = dir.join(cache_name(url));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            verify(url, &path, &text, record)?;
            Ok(Some(text))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ComponentError::Read { path, source }),
    }
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
        if let Some(text) = read_cached(&self.dir, url, true)? {
            return Ok(text);
        }
        let text = self.inner.fetch(url)?;
        let path = self.dir.join(cache_name(url));
        std::fs::create_dir_all(&self.dir).map_err(|source| ComponentError::Cache {
            path: self.dir.clone(),
            source,
        })?;
        // Checked before it is stored: a bad download never enters the cache.
        verify(url, &path, &text, true)?;
        std::fs::write(&path, &text).map_err(|source| ComponentError::Cache { path, source })?;
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
    pub(crate) name: Component,
    pub(crate) version: String,
    pub(crate) sources: Vec<Source>,
    pub(crate) vars: BTreeMap<String, String>,
    /// `(namespace, label selector)` of its pods, for diagnostics.
    pub(crate) log_selectors: Vec<(String, String)>,
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
    pub(crate) macvtap: MacvtapImpl,
    pub(crate) image: String,
    pub(crate) lower_device: String,
    /// Do the nodes have /dev/kvm? Without it KubeVirt uses software emulation.
    pub(crate) kvm: bool,
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
            version: image_tag(mv_image).into(),
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
        // The nodes reach the API server through the kubernetes Service.
        whereabouts_set(WHEREABOUTS_IMAGE, "", "", ""),
    ]
}

/// whereabouts from `image` (its binaries in `bin_dir`; empty: `/`), its CNI's
/// kubeconfig naming `api_host:api_port` (empty: the kubernetes Service).
pub fn whereabouts_set(image: &str, bin_dir: &str, api_host: &str, api_port: &str) -> ComponentSet {
    ComponentSet {
        name: Component::Whereabouts,
        version: image_tag(image).into(),
        sources: vec![Source::Local("whereabouts/whereabouts.yaml".into())],
        vars: vars(&[
            ("WHEREABOUTS_IMAGE", image),
            ("WHEREABOUTS_BIN_DIR", bin_dir),
            ("API_HOST", api_host),
            ("API_PORT", api_port),
        ]),
        log_selectors: vec![("kube-system".into(), "app=secnet-whereabouts".into())],
    }
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
    if let Some((repo, image)) = image_override(set.name) {
        override_images(&mut docs, repo, image);
    }
    Ok(docs)
}

/// A set whose upstream manifest names a moving image: `(repository, pinned image)`;
/// every container of that repository runs the pinned image instead.
pub fn image_override(set: Component) -> Option<(&'static str, &'static str)> {
    match set {
        Component::Multus => Some((MULTUS_IMAGE_REPO, MULTUS_IMAGE)),
        _ => None,
    }
}

/// Sets every (init) container image of `repo` in the workloads' pod templates to
/// `image`; returns how many it replaced.
pub fn override_images(docs: &mut [Value], repo: &str, image: &str) -> usize {
    let of_repo = |s: &str| {
        s.strip_prefix(repo)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '@']))
    };
    let mut replaced = 0;
    for doc in docs.iter_mut() {
        let Some(pod) = doc.pointer_mut("/spec/template/spec") else {
            continue;
        };
        for list in ["initContainers", "containers"] {
            let Some(containers) = pod.get_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for c in containers {
                if c.get("image").and_then(Value::as_str).is_some_and(of_repo) {
                    c["image"] = Value::from(image);
                    replaced += 1;
                }
            }
        }
    }
    replaced
}

/// Applies a set's rendered documents in order (server-side apply, run label),
/// leaving out those `skip` names (objects adopted as found); how many were applied.
pub async fn apply_rendered(
    cluster: &super::KubeCluster,
    set: &ComponentSet,
    docs: Vec<Value>,
    skip: impl Fn(&Value) -> bool,
) -> Result<usize, ComponentError> {
    let mut applied = 0;
    for doc in docs.into_iter().filter(|d| !skip(d)) {
        cluster
            .apply_document(doc)
            .await
            .map_err(|source| ComponentError::Apply {
                set: set.name,
                source,
            })?;
        applied += 1;
    }
    Ok(applied)
}

#[cfg(test)]
#[path = "components_tests.rs"]
mod tests;
