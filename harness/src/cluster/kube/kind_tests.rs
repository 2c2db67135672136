//! kind's command lines for both engines (snapshots) and the image archive's life:
//! written by `<engine> save`, removed after the load whether or not it worked.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use super::*;

const RUN: &str = "r1";

/// Records command lines; answers like kind and the engine would. `podman save`
/// really writes its `-o` file, so the tests can see it removed afterwards.
struct Engine {
    cmds: RefCell<Vec<String>>,
    fail_on: Option<&'static str>,
}

impl Engine {
    fn new(fail_on: Option<&'static str>) -> Self {
        Engine {
            cmds: RefCell::default(),
            fail_on,
        }
    }
}

impl Runner for Engine {
    fn run(&self, cmd: &Cmd) -> Result<String, CommandError> {
        let line = cmd.to_string();
        self.cmds.borrow_mut().push(line.clone());
        let args: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
        if let ["save", .., "-o", out, _image] = args[..] {
            std::fs::write(out, "an image archive").unwrap();
        }
        if self.fail_on.is_some_and(|f| line.contains(f)) {
            return Err(CommandError::Failed {
                cmdline: line,
                status: "exit status: 1".into(),
                stdout: String::new(),
                stderr: "boom".into(),
            });
        }
        Ok(match args[..] {
            ["get", "nodes", ..] => "secnet-r1-control-plane\nsecnet-r1-worker\n".into(),
            ["get", "kubeconfig", ..] => "apiVersion: v1\nkind: Config\n".into(),
            ["image", "inspect", ..] => "sha256:0123abcd\n".into(),
            _ => String::new(),
        })
    }
}

fn options(engine: &str, archive_dir: &Path) -> KindOptions {
    let mut opts = KindOptions::new(RUN);
    opts.engine = engine.into();
    opts.archive_dir = archive_dir.to_path_buf();
    opts
}

/// The command lines with the scratch directory's path made stable.
fn lines(kind: &Kind<Engine>, dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    kind.runner
        .cmds
        .borrow()
        .iter()
        .map(|l| l.replace(&dir, "<tmp>"))
        .collect()
}

fn archives_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn docker_loads_from_its_store_and_pins_the_node_image() {
    let dir = crate::lab::ScratchDir::new("secnet-kind-test").unwrap();
    let kind = Kind::new(options("docker", dir.path()), Engine::new(None));
    let up = kind.bring_up().unwrap();
    assert_eq!(
        up.images,
        [LoadedImage {
            image: super::super::components::SECNET_IMAGE.into(),
            id: "sha256:0123abcd".into()
        }]
    );
    kind.down(true);
    let cmds = lines(&kind, dir.path());
    assert!(
        cmds[0].contains(&format!("--image {KIND_NODE_IMAGE}")),
        "{cmds:#?}"
    );
    assert!(
        cmds.iter()
            .all(|c| !c.contains("KIND_EXPERIMENTAL_PROVIDER")),
        "{cmds:#?}"
    );
    // The whole docker command list is tests.rs's `kind_up_then_failed_down` snapshot.
    assert!(
        cmds.contains(
            &"kind load docker-image localhost/secnet-plugins:dev --name secnet-r1".into()
        ),
        "{cmds:#?}"
    );
}

#[test]
fn podman_runs_kind_with_its_provider_and_loads_through_an_archive() {
    let dir = crate::lab::ScratchDir::new("secnet-kind-test").unwrap();
    let kind = Kind::new(options("podman", dir.path()), Engine::new(None));
    kind.bring_up().unwrap();
    kind.down(true);
    let cmds = lines(&kind, dir.path());
    for c in cmds.iter().filter(|c| c.contains("kind ")) {
        assert!(
            c.starts_with("KIND_EXPERIMENTAL_PROVIDER=podman kind "),
            "{c}"
        );
    }
    assert!(
        cmds.iter()
            .all(|c| !c.starts_with("docker ") && !c.contains("docker-image")),
        "{cmds:#?}"
    );
    assert!(archives_in(dir.path()).is_empty(), "the archive is removed");
    insta::assert_yaml_snapshot!("kind_podman_up_then_failed_down", cmds);
}

#[test]
fn a_failed_archive_load_still_removes_the_archive() {
    let dir = crate::lab::ScratchDir::new("secnet-kind-test").unwrap();
    let kind = Kind::new(
        options("podman", dir.path()),
        Engine::new(Some("load image-archive")),
    );
    let err = kind.up().unwrap_err().to_string();
    assert!(err.contains("kind load image-archive"), "{err}");
    assert!(err.contains("boom"), "{err}");
    let cmds = lines(&kind, dir.path());
    assert!(
        cmds.iter()
            .any(|c| c.starts_with("podman save --format docker-archive -o <tmp>/")),
        "{cmds:#?}"
    );
    assert!(
        archives_in(dir.path()).is_empty(),
        "{:?}",
        archives_in(dir.path())
    );
    // Taken down after the failure: logs exported, cluster deleted.
    assert!(
        cmds.last()
            .unwrap()
            .ends_with("kind delete cluster --name secnet-r1"),
        "{cmds:#?}"
    );
}

#[test]
fn an_image_never_built_fails_before_anything_is_saved() {
    let dir = crate::lab::ScratchDir::new("secnet-kind-test").unwrap();
    let kind = Kind::new(
        options("podman", dir.path()),
        Engine::new(Some("image inspect")),
    );
    let err = kind.up().unwrap_err().to_string();
    assert!(err.contains("podman image inspect"), "{err}");
    let cmds = lines(&kind, dir.path());
    assert!(cmds.iter().all(|c| !c.contains(" save ")), "{cmds:#?}");
}

#[test]
fn archive_names_are_file_names() {
    assert_eq!(
        archive_name("sn00ab12", "localhost/secnet-plugins:dev"),
        "secnet-sn00ab12-localhost_secnet-plugins_dev.tar"
    );
    assert_eq!(
        archive_name("r", "quay.io/x/y:v1@sha256:ab"),
        "secnet-r-quay.io_x_y_v1_sha256_ab.tar"
    );
}

#[test]
fn the_provider_variable_is_shown_as_a_shell_prefix() {
    let cmd = Cmd::new("kind", &["get", "nodes"]).env("KIND_EXPERIMENTAL_PROVIDER", "podman");
    assert_eq!(
        cmd.to_string(),
        "KIND_EXPERIMENTAL_PROVIDER=podman kind get nodes"
    );
    let quoted = Cmd::new("true", &[]).env("A", "two words");
    assert_eq!(quoted.to_string(), "A='two words' true");
}

/// The variable reaches the program (the host runner, for real).
#[test]
fn the_host_runner_passes_the_environment() {
    use super::super::command::HostRunner;
    let out = HostRunner
        .run(
            &Cmd::new("sh", &["-c", "printf %s \"$SECNET_TEST_VAR\""])
                .env("SECNET_TEST_VAR", "x y"),
        )
        .unwrap();
    assert_eq!(out, "x y");
    // A failure names the command with its environment, as the plan shows it.
    let err = HostRunner
        .run(&Cmd::new("sh", &["-c", "exit 3"]).env("KIND_EXPERIMENTAL_PROVIDER", "podman"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("KIND_EXPERIMENTAL_PROVIDER=podman sh -c 'exit 3' failed"),
        "{err}"
    );
}

#[test]
fn the_default_node_image_is_pinned_by_digest() {
    let (named, digest) = KIND_NODE_IMAGE.split_once("@sha256:").unwrap();
    assert!(named.starts_with("kindest/node:v1."), "{named}");
    assert!(super::super::checksum::is_sha256_hex(digest), "{digest}");
    assert_eq!(
        KindOptions::new(RUN).node_image.as_deref(),
        Some(KIND_NODE_IMAGE)
    );
}
