//! Drawings of a lab: Graphviz dot, SVG (laid out by layout-rs, no
//! Graphviz needed), and a self-contained HTML page.

use std::fmt::Write as _;

use vbet_proto::vbet::orchestrator::v1 as pb;
use vbet_proto::vbet::port::v1 as port_pb;

/// The lab as a Graphviz graph: nodes as boxes (with their addresses),
/// switches and hubs as ellipses, cables as edges labelled with the NICs
/// they join; down cables dashed red.
pub fn dot(lab: &pb::Lab) -> String {
    let name = lab.summary.as_ref().map_or("lab", |s| s.name.as_str());
    let mut out = format!(
        "graph \"{}\" {{\n  layout=neato;\n  overlap=false;\n",
        quote(name)
    );
    for n in &lab.nodes {
        let addrs: Vec<String> = n
            .nics
            .iter()
            .flat_map(|nic| nic.addresses.clone())
            .collect();
        let label = if addrs.is_empty() {
            format!("{}\\n({})", n.name, n.kind)
        } else {
            format!("{}\\n({})\\n{}", n.name, n.kind, addrs.join("\\n"))
        };
        let _ = writeln!(
            out,
            "  \"{}\" [shape=box, label=\"{}\"];",
            quote(&n.name),
            quote(&label)
        );
    }
    for s in &lab.switches {
        let _ = writeln!(
            out,
            "  \"{}\" [shape=ellipse, label=\"{}\\n({})\"];",
            quote(&s.name),
            quote(&s.name),
            s.kind
        );
    }
    for c in &lab.cables {
        let device = |end: &str| {
            end.rsplit_once(':')
                .map_or(end.to_owned(), |(d, _)| d.to_owned())
        };
        let down = c.state != port_pb::LinkState::Up as i32 && c.state != 0;
        let _ = writeln!(
            out,
            "  \"{}\" -- \"{}\" [label=\"{}\"{}];",
            quote(&device(&c.a)),
            quote(&device(&c.b)),
            quote(&c.label),
            if down {
                ", style=dashed, color=red"
            } else {
                ""
            }
        );
    }
    out.push_str("}\n");
    out
}

fn quote(text: &str) -> String {
    text.replace('"', "\\\"")
}

/// The lab as SVG.
pub fn svg(lab: &pb::Lab) -> anyhow::Result<String> {
    use layout::backends::svg::SVGWriter;
    use layout::gv::{DotParser, GraphBuilder};
    // layout-rs reads a subset of dot: no graph attributes.
    let text = dot(lab)
        .lines()
        .filter(|l| {
            !l.trim_start().starts_with("layout=") && !l.trim_start().starts_with("overlap=")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let graph = DotParser::new(&text)
        .process()
        .map_err(|e| anyhow::anyhow!("cannot lay out the lab's graph: {e}"))?;
    let mut builder = GraphBuilder::new();
    builder.visit_graph(&graph);
    let mut visual = builder.get();
    let mut writer = SVGWriter::new();
    visual.do_it(false, false, false, &mut writer);
    Ok(writer.finalize())
}

/// A self-contained HTML page: the drawing and a table of nodes.
pub fn html(lab: &pb::Lab) -> anyhow::Result<String> {
    let s = lab.summary.clone().unwrap_or_default();
    let mut rows = String::new();
    for n in &lab.nodes {
        for nic in &n.nics {
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&n.name),
                escape(&n.kind),
                escape(&n.state),
                escape(&nic.name),
                escape(&nic.addresses.join(" ")),
                escape(&nic.peer)
            );
        }
    }
    Ok(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>vBET lab {name}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:left}}</style></head>\
         <body><h1>Lab {name}</h1><p>{state}, from {topo}</p>{svg}\
         <table><tr><th>node</th><th>kind</th><th>state</th><th>NIC</th><th>addresses</th><th>peer</th></tr>{rows}</table>\
         </body></html>\n",
        name = escape(&s.name),
        state = escape(&s.state),
        topo = escape(&s.topology_path),
        svg = svg(lab)?,
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> pb::Lab {
        pb::Lab {
            summary: Some(pb::LabSummary {
                name: "t".into(),
                ..Default::default()
            }),
            nodes: vec![pb::Node {
                name: "h1".into(),
                kind: "host".into(),
                nics: vec![pb::NicInfo {
                    addresses: vec!["10.0.0.1/24".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            switches: vec![pb::SwitchInfo {
                name: "sw".into(),
                kind: "switch".into(),
                ..Default::default()
            }],
            cables: vec![pb::Cable {
                label: "c1".into(),
                a: "sw:1".into(),
                b: "h1:1".into(),
                state: port_pb::LinkState::Down as i32,
                impairment: None,
            }],
            run_dir: String::new(),
        }
    }

    #[test]
    fn dot_svg_and_html_draw_the_lab() {
        let dot = dot(&lab());
        assert!(
            dot.contains("\"sw\" -- \"h1\" [label=\"c1\", style=dashed, color=red]"),
            "{dot}"
        );
        let svg = svg(&lab()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("h1"), "{svg}");
        assert!(html(&lab()).unwrap().contains("10.0.0.1/24"));
    }
}
