//! Guests on the netns cluster: QEMU in the virt-launcher pods, on this machine.

use futures::future::BoxFuture;

use super::NetnsCluster;
use crate::objects::NetworkAttachmentDefinition;
use crate::vm::kubevirt::VirtualMachine;
use crate::vm::{Guests, RunningVm, VmError, VmOptions};

impl Guests for NetnsCluster {
    fn start_vm<'a>(
        &'a self,
        vm: &'a VirtualMachine,
        node: Option<&'a str>,
        nads: &'a [NetworkAttachmentDefinition],
        opts: &'a VmOptions,
    ) -> BoxFuture<'a, Result<RunningVm, VmError>> {
        Box::pin(crate::vm::start_qemu(
            self,
            &self.opts.run_id,
            vm,
            node,
            nads,
            opts,
        ))
    }

    fn boots_local_image(&self) -> bool {
        true
    }
}
