//! The manifest cache's checksums (pinned, trust on first use, tampered) with a
//! temporary cache directory, the pins' consistency, and the multus image override.

use std::cell::RefCell;

use serde_json::json;

use super::*;
use crate::lab::ScratchDir;

/// Serves fixed text for every URL and counts the downloads.
struct Upstream {
    text: String,
    calls: RefCell<usize>,
}

impl Upstream {
    fn serving(text: &str) -> Self {
        Upstream {
            text: text.into(),
            calls: RefCell::new(0),
        }
    }
}

impl Fetcher for &Upstream {
    fn fetch(&self, _url: &str) -> Result<String, ComponentError> {
        *self.calls.borrow_mut() += 1;
        Ok(self.text.clone())
    }
}

const UNPINNED: &str = "https://example.invalid/releases/download/v1/operator.yaml";

#[test]
fn an_unpinned_manifest_is_trusted_on_first_use_then_checked() {
    let dir = ScratchDir::new("secnet-cache-test").unwrap();
    let upstream = Upstream::serving("kind: A\n");
    let cache = CachedFetcher {
        dir: dir.path().join("manifests"),
        inner: &upstream,
    };
    assert_eq!(cache.fetch(UNPINNED).unwrap(), "kind: A\n");
    let file = cache.dir.join(cache_name(UNPINNED));
    let sum = std::fs::read_to_string(sum_file(&file)).unwrap();
    assert_eq!(
        sum.split_whitespace().next(),
        Some(super::super::checksum::sha256_hex(b"kind: A\n").as_str())
    );
    // Read again from the cache: checked, not downloaded.
    assert_eq!(cache.fetch(UNPINNED).unwrap(), "kind: A\n");
    assert_eq!(*upstream.calls.borrow(), 1);

    // Changed in the cache after the first fetch: an error naming all of it.
    std::fs::write(&file, "kind: B\n").unwrap();
    let err = cache.fetch(UNPINNED).unwrap_err();
    let text = err.to_string();
    for part in [
        UNPINNED.to_string(),
        file.display().to_string(),
        super::super::checksum::sha256_hex(b"kind: A\n"),
        super::super::checksum::sha256_hex(b"kind: B\n"),
        sum_file(&file).display().to_string(),
        "delete".into(),
    ] {
        assert!(text.contains(&part), "{part:?} missing from: {text}");
    }
    assert!(
        matches!(&err, ComponentError::Checksum(m) if matches!(m.expected_from, Expected::FirstUse(_))),
        "{err:?}"
    );

    // Deleting the entry but not its sum: a new download must still match it.
    std::fs::remove_file(&file).unwrap();
    let moved = Upstream::serving("kind: C\n");
    let refetch = CachedFetcher {
        dir: cache.dir.clone(),
        inner: &moved,
    };
    assert!(refetch.fetch(UNPINNED).is_err());
    assert!(
        !file.exists(),
        "a download that fails its check is not cached"
    );
}

#[test]
fn a_pinned_manifest_must_match_its_pin_in_the_cache_and_on_download() {
    let (url, pin) = MANIFEST_SHA256[0];
    let dir = ScratchDir::new("secnet-cache-test").unwrap();
    // A tampered cache entry.
    let file = dir.path().join(cache_name(url));
    std::fs::write(&file, "apiVersion: v1\nkind: ServiceAccount\n").unwrap();
    let upstream = Upstream::serving("not it either\n");
    let cache = CachedFetcher {
        dir: dir.path().to_path_buf(),
        inner: &upstream,
    };
    let text = cache.fetch(url).unwrap_err().to_string();
    assert!(text.contains(url) && text.contains(pin), "{text}");
    assert!(text.contains("MANIFEST_SHA256"), "{text}");
    assert_eq!(
        *upstream.calls.borrow(),
        0,
        "a bad cache entry is not refetched"
    );
    assert!(
        !sum_file(&file).exists(),
        "a pinned manifest needs no sum file"
    );

    // Not cached: the download is checked and not stored.
    std::fs::remove_file(&file).unwrap();
    assert!(cache.fetch(url).is_err());
    assert_eq!(*upstream.calls.borrow(), 1);
    assert!(!file.exists());
}

#[test]
fn pins_name_manifests_the_sets_fetch_and_are_digests() {
    let remote: Vec<String> = sets(&ComponentOptions::default())
        .into_iter()
        .flat_map(|s| s.sources)
        .filter_map(|s| match s {
            Source::Remote { url, .. } => Some(url),
            Source::Local(_) => None,
        })
        .collect();
    for (url, sum) in MANIFEST_SHA256 {
        assert!(remote.iter().any(|u| u == url), "stale pin: {url}");
        assert!(super::super::checksum::is_sha256_hex(sum), "{url}: {sum}");
    }
    for image in [UPSTREAM_MACVTAP_IMAGE, POD_IMAGE, MULTUS_IMAGE] {
        let (_, digest) = image.split_once("@sha256:").expect(image);
        assert!(super::super::checksum::is_sha256_hex(digest), "{image}");
    }
    assert!(
        MULTUS_IMAGE.starts_with(&format!("{MULTUS_IMAGE_REPO}:{MULTUS_VERSION}-thick@")),
        "MULTUS_IMAGE must follow MULTUS_VERSION"
    );
    assert_eq!(image_tag(UPSTREAM_MACVTAP_IMAGE), "v0.13.1");
    assert_eq!(image_tag("localhost:5000/x"), "");
    assert_eq!(image_tag(SECNET_IMAGE), "dev");
}

#[test]
fn multus_containers_run_the_pinned_release_image() {
    let snapshot = format!("{MULTUS_IMAGE_REPO}:snapshot-thick");
    let mut docs = vec![
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "kube-multus-ds", "namespace": "kube-system"},
        "spec": {"template": {"spec": {
            "initContainers": [{"name": "install-multus-binary", "image": snapshot}],
            "containers": [
                {"name": "kube-multus", "image": snapshot},
                {"name": "sidecar", "image": "docker.io/library/busybox:1.37"},
                {"name": "lookalike", "image": format!("{MULTUS_IMAGE_REPO}-other:v1")}
            ]}}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"image": snapshot}}),
    ];
    let (repo, image) = image_override(Component::Multus).unwrap();
    assert_eq!(override_images(&mut docs, repo, image), 2);
    let pod = &docs[0]["spec"]["template"]["spec"];
    assert_eq!(pod["initContainers"][0]["image"], MULTUS_IMAGE);
    assert_eq!(pod["containers"][0]["image"], MULTUS_IMAGE);
    assert_eq!(
        pod["containers"][1]["image"],
        "docker.io/library/busybox:1.37"
    );
    assert_eq!(
        pod["containers"][2]["image"],
        format!("{MULTUS_IMAGE_REPO}-other:v1")
    );
    assert_eq!(docs[1]["data"]["image"], snapshot, "only pod templates");
    assert_eq!(image_override(Component::Macvtap), None);
}

/// `render` applies the override to what it fetched.
#[test]
fn render_overrides_the_multus_image() {
    let manifest = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: kube-multus-ds\n  namespace: kube-system\nspec:\n  template:\n    spec:\n      containers:\n        - name: kube-multus\n          image: ghcr.io/k8snetworkplumbingwg/multus-cni:snapshot-thick\n";
    let upstream = Upstream::serving(manifest);
    let set = sets(&ComponentOptions::default())
        .into_iter()
        .find(|s| s.name == Component::Multus)
        .unwrap();
    let docs = render(&set, std::path::Path::new("/nonexistent"), &&upstream).unwrap();
    assert_eq!(
        docs[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        MULTUS_IMAGE
    );
}
