//! The plugin side of the CNI spec, shared by secnet's bundled CNI plugins.
//!
//! One module per concern: spec versions, the error type with spec codes, the
//! invocation environment (`CNI_*` variables), `CNI_ARGS`, results, MAC addresses and
//! network namespaces with a netlink handle opened inside them; `skel`, the
//! plugin skeleton (one `main`, typed ADD/CHECK arguments, one CHECK comparison).

pub mod args;
pub mod error;
pub mod failure;
pub mod invocation;
pub mod mac;
pub mod naming;
pub mod netns;
pub mod policy;
pub mod result;
pub mod skel;
pub mod tapdev;
pub mod version;

pub use error::{CniError, ErrorCode};
pub use invocation::{Command, Invocation};
pub use mac::MacAddr;
pub use version::SpecVersion;

/// Expands `async fn name(v: SpecVersion)` test bodies into one tokio test per spec
/// version the bundled plugins support, in modules `v0_3_0` … `v1_1_0` (so tests
/// are named `v1_0_0::name`, as the reference plugins' suites name them).
#[macro_export]
macro_rules! for_every_version {
    ($($test:ident),* $(,)?) => {
        mod v0_3_0 { $( #[tokio::test] async fn $test() { super::$test($crate::SpecVersion::V0_3_0).await } )* }
        mod v0_3_1 { $( #[tokio::test] async fn $test() { super::$test($crate::SpecVersion::V0_3_1).await } )* }
        mod v0_4_0 { $( #[tokio::test] async fn $test() { super::$test($crate::SpecVersion::V0_4_0).await } )* }
        mod v1_0_0 { $( #[tokio::test] async fn $test() { super::$test($crate::SpecVersion::V1_0_0).await } )* }
        mod v1_1_0 { $( #[tokio::test] async fn $test() { super::$test($crate::SpecVersion::V1_1_0).await } )* }
    };
}
