//! Which pending scenario may start now, when scenarios share one cluster: those
//! that need it alone run with no other scenario on it, those that share it run
//! beside each other, and those that do not use it run beside anything (up to
//! `--jobs` in all, counted by the caller).

use crate::scenario::provider::Sharing;

/// What is running on the shared cluster.
#[derive(Debug, Default)]
pub struct Slots {
    /// Scenarios running that use the cluster (`Beside`, `BesideOthers` or `Alone`).
    on_cluster: usize,
    /// One of them needs it alone.
    alone: bool,
    /// The groups of the `BesideOthers` ones running.
    groups: Vec<&'static str>,
}

impl Slots {
    /// Whether a scenario of `sharing` may start now.
    pub fn may_start(&self, sharing: Sharing) -> bool {
        match sharing {
            Sharing::Own => true,
            Sharing::Beside => !self.alone,
            Sharing::BesideOthers(group) => !self.alone && !self.groups.contains(&group),
            Sharing::Alone => self.on_cluster == 0,
        }
    }

    pub fn started(&mut self, sharing: Sharing) {
        match sharing {
            Sharing::Own => {}
            Sharing::Beside => self.on_cluster += 1,
            Sharing::BesideOthers(group) => {
                self.on_cluster += 1;
                self.groups.push(group);
            }
            Sharing::Alone => {
                self.on_cluster += 1;
                self.alone = true;
            }
        }
    }

    pub fn ended(&mut self, sharing: Sharing) {
        match sharing {
            Sharing::Own => {}
            Sharing::Beside => self.on_cluster = self.on_cluster.saturating_sub(1),
            Sharing::BesideOthers(group) => {
                self.on_cluster = self.on_cluster.saturating_sub(1);
                if let Some(i) = self.groups.iter().position(|g| *g == group) {
                    self.groups.remove(i);
                }
            }
            Sharing::Alone => {
                self.on_cluster = self.on_cluster.saturating_sub(1);
                self.alone = false;
            }
        }
    }
}

/// The order scenarios are tried in when several run at once: those that need the
/// cluster alone first (they go one after the other while the others fill the
/// remaining jobs), then those that share it, heaviest first within each.
pub fn sort_key(sharing: Sharing, weight: u32) -> (u8, std::cmp::Reverse<u32>) {
    let class = match sharing {
        Sharing::Alone => 0,
        Sharing::Beside | Sharing::BesideOthers(_) => 1,
        Sharing::Own => 2,
    };
    (class, std::cmp::Reverse(weight))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alone_waits_for_the_cluster_to_be_free_and_keeps_it() {
        let mut s = Slots::default();
        assert!(s.may_start(Sharing::Alone));
        s.started(Sharing::Alone);
        assert!(!s.may_start(Sharing::Alone));
        assert!(!s.may_start(Sharing::Beside));
        assert!(s.may_start(Sharing::Own), "a node lab runs beside it");
        s.ended(Sharing::Alone);
        assert!(s.may_start(Sharing::Beside));
    }

    #[test]
    fn beside_ones_share_and_hold_off_an_alone_one() {
        let mut s = Slots::default();
        s.started(Sharing::Beside);
        s.started(Sharing::Beside);
        assert!(s.may_start(Sharing::Beside));
        assert!(!s.may_start(Sharing::Alone));
        s.ended(Sharing::Beside);
        assert!(!s.may_start(Sharing::Alone), "one still on the cluster");
        s.ended(Sharing::Beside);
        assert!(s.may_start(Sharing::Alone));
    }

    #[test]
    fn one_of_a_group_at_a_time_beside_the_others() {
        let mut s = Slots::default();
        s.started(Sharing::BesideOthers("ovs"));
        assert!(!s.may_start(Sharing::BesideOthers("ovs")));
        assert!(s.may_start(Sharing::BesideOthers("ipv6")));
        assert!(s.may_start(Sharing::Beside));
        assert!(!s.may_start(Sharing::Alone));
        s.ended(Sharing::BesideOthers("ovs"));
        assert!(s.may_start(Sharing::BesideOthers("ovs")));
        assert!(s.may_start(Sharing::Alone));
    }

    #[test]
    fn own_ones_never_count() {
        let mut s = Slots::default();
        s.started(Sharing::Own);
        assert!(s.may_start(Sharing::Alone));
        s.ended(Sharing::Own);
        assert!(s.may_start(Sharing::Alone));
    }

    #[test]
    fn alone_ones_are_tried_first_then_beside_then_own() {
        let mut v = [
            (Sharing::Own, 9),
            (Sharing::Beside, 1),
            (Sharing::Alone, 1),
            (Sharing::Alone, 5),
        ];
        v.sort_by_key(|(s, w)| sort_key(*s, *w));
        assert_eq!(
            v,
            [
                (Sharing::Alone, 5),
                (Sharing::Alone, 1),
                (Sharing::Beside, 1),
                (Sharing::Own, 9)
            ]
        );
    }
}
