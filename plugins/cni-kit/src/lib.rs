//! The plugin side of the CNI spec, shared by secnet's bundled CNI plugins.
//!
//! One module per concern: spec versions, the error type with spec codes, the
//! invocation environment (`CNI_*` variables), `CNI_ARGS`, results, MAC addresses and
//! network namespaces with a netlink handle opened inside them.

pub mod args;
pub mod error;
pub mod failure;
pub mod invocation;
pub mod mac;
pub mod netns;
pub mod result;
pub mod version;

pub use error::{CniError, ErrorCode};
pub use invocation::{Command, Invocation};
pub use mac::MacAddr;
pub use version::SpecVersion;
