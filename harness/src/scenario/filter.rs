//! Label filter expressions in Ginkgo's syntax (`--label-filter`): labels joined by
//! `&&`, `||` (or `,`), negated by `!`, grouped with parentheses, and `/regex/` for
//! any label the regex matches. A scenario's labels here are its labels, its backend
//! and its group (the name up to the first `/`: `seed`, `ovs`, `vm`, `fault`, …).

use regex::Regex;

/// The label of a scenario known to be flaky: left out of a run (reported as
/// skipped, saying so) unless `--label quarantine` or a `--label-filter` naming it
/// asks for it.
pub const QUARANTINE: &str = "quarantine";

/// Whether the run's selection asks for quarantined scenarios.
pub fn quarantine_wanted(labels: &[String], filter: Option<&LabelFilter>) -> bool {
    labels.iter().any(|l| l.eq_ignore_ascii_case(QUARANTINE))
        || filter.is_some_and(|f| f.names(QUARANTINE))
}

/// A scenario's stable short id: 7 characters, `s` and six hex digits of the
/// FNV-1a hash of its name. Stable across builds and machines while the name stays;
/// a test keeps them unique across the scenarios of the build.
pub fn short_id(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("s{:06x}", (h ^ (h >> 32)) & 0xff_ffff)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--label-filter {text:?}: {problem} at character {at}; e.g. 'seed && !vm' or '(ovs || macvlan) && !fault'"
)]
pub struct FilterError {
    pub(crate) text: String,
    /// 1-based character position.
    pub(crate) at: usize,
    pub(crate) problem: String,
}

/// A parsed label filter.
#[derive(Debug, Clone)]
pub enum LabelFilter {
    Label(String),
    Matches(Regex),
    Not(Box<LabelFilter>),
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
}

impl LabelFilter {
    pub fn parse(text: &str) -> Result<LabelFilter, FilterError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            text,
            tokens: &tokens,
            pos: 0,
        };
        let filter = parser.or()?;
        match parser.tokens.get(parser.pos) {
            None => Ok(filter),
            Some((at, tok)) => Err(parser.error(*at, format!("unexpected {}", tok.describe()))),
        }
    }

    /// Whether the expression names `label` (plainly, not through a regex).
    pub fn names(&self, label: &str) -> bool {
        match self {
            LabelFilter::Label(l) => l.eq_ignore_ascii_case(label),
            LabelFilter::Matches(_) => false,
            LabelFilter::Not(f) => f.names(label),
            LabelFilter::And(a, b) | LabelFilter::Or(a, b) => a.names(label) || b.names(label),
        }
    }

    /// Whether a scenario with these labels (labels, backend and group) is selected.
    pub fn matches(&self, labels: &[&str]) -> bool {
        match self {
            LabelFilter::Label(l) => labels.iter().any(|x| x.eq_ignore_ascii_case(l)),
            LabelFilter::Matches(re) => labels.iter().any(|x| re.is_match(x)),
            LabelFilter::Not(f) => !f.matches(labels),
            LabelFilter::And(a, b) => a.matches(labels) && b.matches(labels),
            LabelFilter::Or(a, b) => a.matches(labels) || b.matches(labels),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Label(String),
    Regex(String),
    And,
    Or,
    Not,
    Open,
    Close,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Label(l) => format!("label {l:?}"),
            Token::Regex(r) => format!("/{r}/"),
            Token::And => "&&".into(),
            Token::Or => "||".into(),
            Token::Not => "!".into(),
            Token::Open => "(".into(),
            Token::Close => ")".into(),
        }
    }
}

fn is_label_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '+')
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, FilterError> {
    let err = |at: usize, problem: &str| FilterError {
        text: text.to_string(),
        at,
        problem: problem.to_string(),
    };
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let at = i + 1;
        match chars[i] {
            c if c.is_whitespace() => i += 1,
            '&' if chars.get(i + 1) == Some(&'&') => {
                tokens.push((at, Token::And));
                i += 2;
            }
            '|' if chars.get(i + 1) == Some(&'|') => {
                tokens.push((at, Token::Or));
                i += 2;
            }
            ',' => {
                tokens.push((at, Token::Or));
                i += 1;
            }
            '!' => {
                tokens.push((at, Token::Not));
                i += 1;
            }
            '(' => {
                tokens.push((at, Token::Open));
                i += 1;
            }
            ')' => {
                tokens.push((at, Token::Close));
                i += 1;
            }
            '/' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|c| *c == '/')
                    .ok_or_else(|| err(at, "a /regex/ without its closing /"))?;
                tokens.push((at, Token::Regex(chars[i + 1..i + 1 + end].iter().collect())));
                i += end + 2;
            }
            c if is_label_char(c) => {
                let len = chars[i..].iter().take_while(|c| is_label_char(**c)).count();
                tokens.push((at, Token::Label(chars[i..i + len].iter().collect())));
                i += len;
            }
            '&' | '|' => return Err(err(at, "a single & or | (write && or ||)")),
            c => return Err(err(at, &format!("character {c:?} is not part of a label"))),
        }
    }
    Ok(tokens)
}

/// Precedence as Ginkgo: `!` binds tightest, then `&&`, then `||`.
struct Parser<'a> {
    text: &'a str,
    tokens: &'a [(usize, Token)],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, at: usize, problem: String) -> FilterError {
        FilterError {
            text: self.text.to_string(),
            at,
            problem,
        }
    }

    fn eat(&mut self, want: &Token) -> bool {
        if self.tokens.get(self.pos).map(|(_, t)| t) == Some(want) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<LabelFilter, FilterError> {
        let mut left = self.and()?;
        while self.eat(&Token::Or) {
            left = LabelFilter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<LabelFilter, FilterError> {
        let mut left = self.not()?;
        while self.eat(&Token::And) {
            left = LabelFilter::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<LabelFilter, FilterError> {
        if self.eat(&Token::Not) {
            return Ok(LabelFilter::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<LabelFilter, FilterError> {
        let end = self.text.chars().count() + 1;
        let Some((at, tok)) = self.tokens.get(self.pos).cloned() else {
            return Err(self.error(end, "the expression ends where a label was expected".into()));
        };
        self.pos += 1;
        match tok {
            Token::Label(l) => Ok(LabelFilter::Label(l)),
            Token::Regex(r) => Regex::new(&r)
                .map(LabelFilter::Matches)
                .map_err(|e| self.error(at, format!("/{r}/ is not a regex: {e}"))),
            Token::Open => {
                let inner = self.or()?;
                if self.eat(&Token::Close) {
                    Ok(inner)
                } else {
                    Err(self.error(at, "this ( is never closed".into()))
                }
            }
            other => Err(self.error(at, format!("expected a label, found {}", other.describe()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(expr: &str, labels: &[&str]) -> bool {
        LabelFilter::parse(expr).unwrap().matches(labels)
    }

    #[test]
    fn operators_and_precedence_follow_ginkgo() {
        let seed_pod = ["seed", "macvtap", "mac"];
        let vm = ["vm", "macvtap", "reachability"];
        assert!(sel("seed && !vm", &seed_pod));
        assert!(!sel("seed && !vm", &vm));
        assert!(sel("seed || vm", &vm));
        assert!(sel("seed, vm", &vm));
        // && before ||: vm || (seed && ovs)
        assert!(sel("vm || seed && ovs", &vm));
        assert!(!sel("(vm || seed) && ovs", &vm));
        assert!(sel("!!vm", &vm));
        assert!(sel("/^mac/ && !/^vm$/", &seed_pod));
        assert!(!sel("/^mac/ && !/^vm$/", &vm));
        assert!(
            sel("SEED", &seed_pod),
            "labels match without case, as in Ginkgo"
        );
        assert!(sel("spec-1.x", &["spec-1.x"]));
    }

    #[test]
    fn ids_are_stable_short_and_unique_across_the_scenarios() {
        // Pinned: an id printed in a CI log must find the scenario next week.
        assert_eq!(short_id("seed/macvtap-pod"), short_id("seed/macvtap-pod"));
        assert_ne!(short_id("seed/a"), short_id("seed/b"));
        let mut seen = std::collections::BTreeMap::new();
        for s in crate::scenario::all() {
            let id = s.id();
            assert_eq!(id.len(), 7, "{id}");
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
            if let Some(other) = seen.insert(id.clone(), s.name.clone()) {
                panic!("{} and {other} share the id {id}", s.name);
            }
        }
    }

    #[test]
    fn quarantine_is_wanted_only_when_named() {
        let f = |e: &str| LabelFilter::parse(e).unwrap();
        assert!(!quarantine_wanted(&[], None));
        assert!(!quarantine_wanted(
            &["seed".into()],
            Some(&f("seed && !vm"))
        ));
        assert!(quarantine_wanted(&["Quarantine".into()], None));
        assert!(quarantine_wanted(&[], Some(&f("seed && quarantine"))));
        assert!(quarantine_wanted(&[], Some(&f("!(quarantine)"))));
    }

    #[test]
    fn errors_point_at_the_problem() {
        for (expr, at, what) in [
            ("seed &&", 8, "ends"),
            ("seed & vm", 6, "single &"),
            ("(seed || vm", 1, "never closed"),
            ("seed vm", 6, "unexpected label"),
            ("/[/", 1, "not a regex"),
            ("/open", 1, "closing /"),
            ("seed && $x", 9, "not part of a label"),
            ("&& seed", 1, "expected a label"),
        ] {
            let e = LabelFilter::parse(expr).unwrap_err();
            assert_eq!(e.at, at, "{expr}: {e}");
            assert!(e.to_string().contains(what), "{expr}: {e}");
        }
    }
}
