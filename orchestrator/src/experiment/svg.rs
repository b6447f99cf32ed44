//! A small SVG plot of reachability over time: one step line (reachable
//! or not, per probe) with the intervals a link was down shaded.

use std::fmt::Write;

/// A shaded interval with a label.
#[derive(Debug, Clone)]
pub struct Band {
    /// Start, seconds.
    pub from: f64,
    /// End, seconds.
    pub to: f64,
    /// Fill colour.
    pub colour: &'static str,
    /// Shown above the band.
    pub label: String,
}

/// Draws probes `(time s, reachable)` over `bands`.
pub fn reachability(title: &str, probes: &[(f64, bool)], bands: &[Band]) -> String {
    let (w, h, left, right, top, bottom) = (960.0, 260.0, 60.0, 20.0, 40.0, 40.0);
    let t_max = probes
        .iter()
        .map(|p| p.0)
        .chain(bands.iter().map(|b| b.to))
        .fold(1.0_f64, f64::max);
    let x = |t: f64| left + (w - left - right) * t / t_max;
    let y = |up: bool| if up { top + 20.0 } else { h - bottom - 10.0 };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="white"/>
<text x="{left}" y="20" font-size="14">{}</text>
"#,
        escape(title)
    );
    for b in bands {
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{top}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.3"/><text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
            x(b.from),
            (x(b.to) - x(b.from)).max(1.0),
            h - top - bottom,
            b.colour,
            x(b.from) + 2.0,
            top + 12.0,
            escape(&b.label)
        );
    }
    let mut path = String::new();
    for (i, (t, up)) in probes.iter().enumerate() {
        let _ = write!(
            path,
            "{}{:.1},{:.1} ",
            if i == 0 { "M" } else { "L" },
            x(*t),
            y(*up)
        );
    }
    let _ = writeln!(
        s,
        r#"<path d="{path}" fill="none" stroke="steelblue" stroke-width="1.5"/>"#
    );
    let axis_y = h - bottom;
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="black"/><text x="8" y="{:.1}">reached</text><text x="8" y="{:.1}">lost</text>"#,
        w - right,
        y(true) + 4.0,
        y(false) + 4.0
    );
    let step = nice_step(t_max);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{axis_y}" x2="{:.1}" y2="{:.1}" stroke="black"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{t:.0}</text>"#,
            x(t),
            x(t),
            axis_y + 4.0,
            x(t),
            axis_y + 18.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time (s)</text></svg>"#,
        (left + w - right) / 2.0,
        h - 4.0
    );
    s
}

fn nice_step(span: f64) -> f64 {
    [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0]
        .into_iter()
        .find(|s| span / s <= 12.0)
        .unwrap_or(300.0)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_well_formed_plot() {
        let probes: Vec<(f64, bool)> = (0..100)
            .map(|i| (i as f64 * 0.1, !(30..60).contains(&i)))
            .collect();
        let svg = reachability(
            "h1 -> h2 <test>",
            &probes,
            &[Band {
                from: 3.0,
                to: 6.0,
                colour: "red",
                label: "down".into(),
            }],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("&lt;test&gt;"));
        assert_eq!(svg.matches("<path").count(), 1);
    }
}
