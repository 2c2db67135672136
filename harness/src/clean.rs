//! `secnet clean`: removes what runs left behind (a killed run, `--keep`): network
//! namespaces named `sn<6 hex>-…`, and nothing else.

use std::time::Duration;

use crate::lab::{CommandError, run};

/// Whether `name` is a namespace secnet created (optionally of run `run_id`).
pub fn is_ours(name: &str, run_id: Option<&str>) -> bool {
    let Some((id, rest)) = name.split_once('-') else {
        return false;
    };
    let shaped = id.len() == 8
        && id.starts_with("sn")
        && id[2..].chars().all(|c| c.is_ascii_hexdigit())
        && !rest.is_empty();
    shaped && run_id.is_none_or(|r| r == id)
}

/// Deletes our namespaces; returns the names removed.
pub fn clean(run_id: Option<&str>) -> Result<Vec<String>, CommandError> {
    let listing = run("ip", &["netns", "list"], Duration::from_secs(10))?;
    let mut removed = Vec::new();
    for name in listing.lines().filter_map(|l| l.split_whitespace().next()) {
        if is_ours(name, run_id) {
            run("ip", &["netns", "del", name], Duration::from_secs(10))?;
            removed.push(name.to_string());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_run_prefixed_names() {
        assert!(is_ours("sn0a1b2c-node", None));
        assert!(is_ours("sn0a1b2c-node", Some("sn0a1b2c")));
        assert!(!is_ours("sn0a1b2c-node", Some("sn000000")));
        for other in [
            "cni-1234",
            "snx-node",
            "sn0a1b2c",
            "sn0a1b2cd-x",
            "sn0a1bzz-x",
            "myns",
        ] {
            assert!(!is_ours(other, None), "{other}");
        }
    }
}
