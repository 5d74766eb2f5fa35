//! Grouped bar charts as SVG, written by hand: one small function instead of
//! a plotting library and its font stack.

/// One series of values, one per category.
pub struct Series<'a> {
    pub name: &'a str,
    pub values: Vec<f64>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 4] = ["#2b6cb0", "#c05621", "#718096", "#2f855a"];

/// Bars for each category (e.g. a size), one per series, each labelled with its value.
pub fn bars(title: &str, unit: &str, categories: &[String], series: &[Series]) -> String {
    let max = series.iter().flat_map(|s| s.values.iter().copied()).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let top = nice_ceiling(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let group_w = plot_w / categories.len().max(1) as f64;
    let bar_w = group_w * 0.8 / series.len().max(1) as f64;
    let y = |v: f64| TOP + plot_h - (v / top) * plot_h;

    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
"#,
        WIDTH / 2.0,
        escape(title)
    );
    for tick in 0..=4 {
        let v = top * tick as f64 / 4.0;
        svg += &format!(
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e2e8f0\"/>\n<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            short(v),
            y = y(v)
        );
    }
    svg += &format!(
        "<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">{}</text>\n",
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(unit)
    );
    for (c, category) in categories.iter().enumerate() {
        let group_x = LEFT + group_w * c as f64 + group_w * 0.1;
        for (s, one) in series.iter().enumerate() {
            let Some(&v) = one.values.get(c) else { continue };
            let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
            let x = group_x + bar_w * s as f64;
            svg += &format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>\n",
                y(v),
                bar_w - 2.0,
                TOP + plot_h - y(v),
                COLOURS[s % COLOURS.len()],
                x + bar_w / 2.0 - 1.0,
                y(v) - 3.0,
                short(v)
            );
        }
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            group_x + group_w * 0.4,
            TOP + plot_h + 16.0,
            escape(category)
        );
    }
    for (s, one) in series.iter().enumerate() {
        let x = LEFT + 150.0 * s as f64;
        let y = HEIGHT - 18.0;
        svg += &format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>\n<text x=\"{}\" y=\"{y}\">{}</text>\n",
            y - 10.0,
            COLOURS[s % COLOURS.len()],
            x + 16.0,
            escape(one.name)
        );
    }
    svg + "</svg>\n"
}

/// The smallest 1, 2 or 5 × 10^k at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|&c| c >= v).unwrap_or(10.0 * magnitude)
}

/// 1234567 → "1.2M", 5.8 → "5.8".
fn short(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e4 => format!("{:.0}k", v / 1e3),
        v if v >= 100.0 => format!("{v:.0}"),
        v => format!("{v:.1}"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_and_labels() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(120_108.0), 200_000.0);
        assert_eq!(short(120_108.0), "120k");
        assert_eq!(short(5.83), "5.8");
    }

    #[test]
    fn a_chart_has_one_bar_per_value() {
        let svg = bars(
            "t <1>",
            "KiB",
            &["1k".into(), "5k".into()],
            &[Series { name: "a", values: vec![1.0, 2.0] }, Series { name: "b", values: vec![3.0, f64::NAN] }],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<rect x=").count(), 4 + 2, "four bars and two legend keys");
        assert!(svg.contains("t &lt;1&gt;"));
    }
}
