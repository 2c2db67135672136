//! A small SVG line-plot writer (no dependencies): `bench-scale.svg` has two
//! panels, per-pod attach cost vs pod count and VM boot vs parallel guests.

use std::fmt::Write as _;

#[derive(Debug, Clone)]
pub struct Series {
    pub(crate) label: String,
    pub(crate) color: &'static str,
    pub(crate) points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct Panel {
    pub(crate) title: String,
    pub(crate) x_label: String,
    pub(crate) y_label: String,
    /// Log-scaled x axis (pod counts 1..500).
    pub(crate) log_x: bool,
    pub(crate) series: Vec<Series>,
}

const W: f64 = 460.0;
const H: f64 = 320.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" upper bound for the y axis: 1, 2 or 5 times a power of ten.
pub fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One panel, drawn at horizontal offset `dx`.
fn panel(out: &mut String, p: &Panel, dx: f64) {
    let xs: Vec<f64> = {
        let mut v: Vec<f64> = p
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|q| q.0))
            .collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    };
    let tx = |x: f64| if p.log_x { x.max(1e-9).log10() } else { x };
    let (x0, x1) = match (xs.first(), xs.last()) {
        (Some(a), Some(b)) if tx(*b) > tx(*a) => (tx(*a), tx(*b)),
        (Some(a), _) => (tx(*a) - 1.0, tx(*a) + 1.0),
        _ => (0.0, 1.0),
    };
    let y_max = nice_ceiling(
        p.series
            .iter()
            .flat_map(|s| s.points.iter().map(|q| q.1))
            .fold(0.0, f64::max),
    );
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let px = |x: f64| dx + LEFT + (tx(x) - x0) / (x1 - x0) * plot_w;
    let py = |y: f64| TOP + plot_h - y / y_max * plot_h;
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="20" font-size="14" text-anchor="middle" font-weight="bold">{}</text>"#,
        dx + W / 2.0,
        esc(&p.title)
    );
    // Axes.
    let _ = writeln!(
        out,
        r#"<line class="axis" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
        dx + LEFT,
        TOP + plot_h,
        dx + LEFT + plot_w,
        TOP + plot_h
    );
    let _ = writeln!(
        out,
        r#"<line class="axis" x1="{:.1}" y1="{TOP:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
        dx + LEFT,
        dx + LEFT,
        TOP + plot_h
    );
    for x in &xs {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            px(*x),
            TOP + plot_h + 16.0,
            fmt_num(*x)
        );
    }
    for i in 0..=4 {
        let y = y_max * i as f64 / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            dx + LEFT,
            py(y),
            dx + LEFT + plot_w,
            py(y),
            dx + LEFT - 6.0,
            py(y) + 4.0,
            fmt_num(y)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
        dx + LEFT + plot_w / 2.0,
        H - 12.0,
        esc(&p.x_label)
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 {:.1} {:.1})">{}</text>"#,
        dx + 16.0,
        TOP + plot_h / 2.0,
        dx + 16.0,
        TOP + plot_h / 2.0,
        esc(&p.y_label)
    );
    for (k, s) in p.series.iter().enumerate() {
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            s.color,
            pts.join(" ")
        );
        for (x, y) in &s.points {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}: {} -> {:.2}</title></circle>"#,
                px(*x),
                py(*y),
                s.color,
                esc(&s.label),
                fmt_num(*x),
                y
            );
        }
        let ly = TOP + 8.0 + 16.0 * k as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            dx + LEFT + 10.0,
            ly - 9.0,
            s.color,
            dx + LEFT + 24.0,
            ly,
            esc(&s.label)
        );
    }
}

/// The panels side by side in one standalone SVG document.
pub fn render(panels: &[Panel]) -> String {
    let width = W * panels.len().max(1) as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{H:.0}\" viewBox=\"0 0 {width:.0} {H:.0}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (i, p) in panels.iter().enumerate() {
        panel(&mut out, p, W * i as f64);
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Panel> {
        vec![
            Panel {
                title: "per-pod attach cost".into(),
                x_label: "pods".into(),
                y_label: "ms per pod".into(),
                log_x: true,
                series: vec![Series {
                    label: "one node".into(),
                    color: "#1f77b4",
                    points: vec![(1.0, 40.0), (10.0, 12.5), (500.0, 30.0)],
                }],
            },
            Panel {
                title: "VM boot".into(),
                x_label: "guests in parallel".into(),
                y_label: "s".into(),
                log_x: false,
                series: vec![Series {
                    label: "agent ready".into(),
                    color: "#d62728",
                    points: vec![(1.0, 3.2), (2.0, 3.4), (4.0, 6.9)],
                }],
            },
        ]
    }

    #[test]
    fn has_axes_points_and_labels() {
        let svg = render(&sample());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches(r#"class="axis""#).count(), 4);
        assert_eq!(svg.matches("<circle").count(), 6);
        assert_eq!(svg.matches("<polyline").count(), 2);
        for label in [
            "per-pod attach cost",
            "VM boot",
            "ms per pod",
            "guests in parallel",
        ] {
            assert!(svg.contains(label), "{label}");
        }
        // x ticks are the measured counts.
        for tick in [">1<", ">10<", ">500<", ">4<"] {
            assert!(svg.contains(tick), "{tick}");
        }
        assert!(svg.contains("one node: 500 -> 30.00"));
        assert!(svg.contains("agent ready: 4 -> 6.90"));
    }

    #[test]
    fn log_axis_puts_decades_evenly() {
        let svg = render(&sample()[..1]);
        // 1, 10 and 500 on a log axis from x=60 to x=440: 10 is at 60 + 380*log(10)/log(500).
        let expect = 60.0 + 380.0 * (10f64.log10() / 500f64.log10());
        assert!(svg.contains(&format!(r#"cx="{expect:.1}""#)), "{svg}");
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(40.0), 50.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
        assert_eq!(nice_ceiling(101.0), 200.0);
    }

    #[test]
    fn escapes_text() {
        let mut p = sample();
        p[0].title = "a < b & c".into();
        assert!(render(&p).contains("a &lt; b &amp; c"));
    }
}
