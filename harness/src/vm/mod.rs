//! VMs on the netns cluster: KubeVirt VirtualMachine fixtures run as QEMU guests
//! inside their virt-launcher pods, attached the way KubeVirt's bindings attach them.
//!
//! - [`image`]: the guest kernel + busybox initramfs, built from Debian packages, cached
//! - [`agent`]: the serial-line protocol to exec in the guest
//! - [`qemu`]: launching and killing QEMU in a pod's netns
//! - [`binding`]: macvtap (tap fd), bridge (in-pod bridge + tap), masquerade (NAT)
//! - [`kubevirt`]: VM/VMI fixtures, validation against KubeVirt's OpenAPI, launcher pods

pub mod agent;
pub mod binding;
pub mod image;
pub mod kubevirt;
pub mod qemu;

#[cfg(test)]
mod boot_tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Boots the guest without NICs and runs a command through the agent. Needs QEMU
    /// and a kernel package, not root.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn guest_boots_and_the_agent_answers() {
        let what = "vm::guest_boots_and_the_agent_answers";
        if !crate::prereq::require_program(what, qemu::QEMU, "qemu-system-x86")
            || !crate::prereq::require(what, image::Inputs::discover().err().map(|e| e.to_string()))
        {
            return;
        }
        let cache = std::env::temp_dir().join(format!("secnet-image-test-{}", std::process::id()));
        let t = Instant::now();
        let img = image::ensure(&cache).unwrap();
        let cold = t.elapsed();
        let t = Instant::now();
        let again = image::ensure(&cache).unwrap();
        let cached = t.elapsed();
        assert!(img.built && !again.built);
        eprintln!("image: cold {cold:?}, cached {cached:?}, {:?}", img.format);
        let log = cache.join("console.log");
        let (mut q, mut agent) = qemu::Qemu::spawn(qemu::LaunchSpec {
            name: "boot-test".into(),
            image: img.clone(),
            netns: None,
            nics: vec![],
            console_log: log.clone(),
            memory_mb: 128,
        })
        .unwrap();
        let ready = agent.wait_ready(Duration::from_secs(60)).await;
        let boot = q.started.elapsed();
        let ready =
            ready.unwrap_or_else(|e| panic!("{e} {:?}\nconsole:\n{}", q.exited(), q.console()));
        assert_eq!(ready, img.kernel_version);
        let r = agent
            .exec("echo hi; false", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!((r.output.as_str(), r.code), ("hi\n", 1));
        let r = agent
            .exec("cat /proc/modules | cut -d' ' -f1", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(
            r.output.contains("virtio_net"),
            "{}\nconsole:\n{}",
            r.output,
            q.console()
        );
        eprintln!("boot to agent ready: {boot:?} ({})", q.accel);
        q.kill();
        let _ = std::fs::remove_dir_all(&cache);
    }
}
