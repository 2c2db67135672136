//! secnet's macvtap device plugin.
pub mod config;
