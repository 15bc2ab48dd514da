//! Drawing an anomaly: an HTML page with an SVG timeline of one register's operations around
//! the one the checker could not place — one lane per client, a bar from invocation to
//! completion (to the right edge, dashed, when the outcome is unknown), the longest
//! linearizable prefix numbered in its order, the stuck operation in red, and the faults
//! shaded behind.

use std::fmt::Write;

use super::linear::{Call, Op, Ret};
use super::nemesis::FaultRecord;

/// A short text for an operation: `read 5@3`, `write 7 -> v4`, `cas v3:7 failed`, `... ?`.
pub fn describe(op: &Op) -> String {
    let call = match op.call {
        Call::Read => "read".to_string(),
        Call::Write(v) => format!("write {}", short(v)),
        Call::Cas { expect, value } => format!("cas v{expect}:{}", short(value)),
    };
    let ret = match op.ret {
        Ret::Read(r) => format!(" {}@v{}", short(r.value), r.version),
        Ret::Written(v) => format!(" -> v{v}"),
        Ret::CasFailed => " failed".to_string(),
        Ret::Unknown => " ?".to_string(),
    };
    call + &ret
}

/// Values are (client + 1) << 32 | counter: shown as client.counter.
fn short(v: u64) -> String {
    if v >> 32 == 0 {
        v.to_string()
    } else {
        format!("{}.{}", (v >> 32) - 1, v & 0xffff_ffff)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The page for the anomaly at `ops[stuck]`.
pub fn timeline(
    path: &str,
    ops: &[Op],
    stuck: usize,
    prefix: &[usize],
    faults: &[FaultRecord],
) -> String {
    let s = &ops[stuck];
    // The window: half a second either side of the stuck operation (its invocation to its
    // completion, or a second past invocation when unknown).
    let from = s.invoke.saturating_sub(500_000_000);
    let to = s.complete.unwrap_or(s.invoke + 500_000_000) + 500_000_000;
    let shown: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].invoke <= to && ops[i].complete.is_none_or(|c| c >= from))
        .collect();
    let mut lanes: Vec<u32> = shown.iter().map(|&i| ops[i].process).collect();
    lanes.sort_unstable();
    lanes.dedup();
    let width = 1400.0;
    let left = 90.0;
    let lane_h = 34.0;
    let x = |t: u64| {
        left + (t.clamp(from, to) - from) as f64 / (to - from).max(1) as f64 * (width - left - 10.0)
    };
    let height = 40.0 + lane_h * lanes.len() as f64;
    let order: std::collections::HashMap<usize, usize> =
        prefix.iter().enumerate().map(|(n, &i)| (i, n + 1)).collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="11">"#
    );
    for f in faults {
        if f.healed >= from && f.start <= to {
            let (a, b) = (x(f.start), x(f.healed));
            let _ = write!(
                svg,
                r##"<rect x="{a:.1}" y="0" width="{:.1}" height="{height}" fill="#fde9c8"><title>{}</title></rect>"##,
                (b - a).max(1.0),
                esc(&f.what)
            );
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="12" fill="#a60">{}</text>"##,
                a + 2.0,
                esc(&f.what)
            );
        }
    }
    for (l, p) in lanes.iter().enumerate() {
        let y = 30.0 + lane_h * l as f64;
        let name = if *p == u32::MAX { "final".to_string() } else { format!("client {p}") };
        let _ = write!(svg, r#"<text x="4" y="{:.1}">{name}</text>"#, y + 16.0);
    }
    for &i in &shown {
        let op = &ops[i];
        let l = lanes.iter().position(|p| *p == op.process).unwrap_or(0);
        let y = 30.0 + lane_h * l as f64;
        let (a, b) = (x(op.invoke), x(op.complete.unwrap_or(to)));
        let (fill, stroke) = if i == stuck {
            ("#f4b4b4", "#c00")
        } else if order.contains_key(&i) {
            ("#cfe8cf", "#383")
        } else {
            ("#dde", "#558")
        };
        let dash = if op.complete.is_none() { r#" stroke-dasharray="4 3""# } else { "" };
        let label = match order.get(&i) {
            Some(n) => format!("#{n} {}", describe(op)),
            None => describe(op),
        };
        let _ = write!(
            svg,
            r#"<rect x="{a:.1}" y="{y:.1}" width="{:.1}" height="22" fill="{fill}" stroke="{stroke}"{dash}><title>{}</title></rect><text x="{:.1}" y="{:.1}">{}</text>"#,
            (b - a).max(2.0),
            esc(&format!(
                "{} invoked {:.3} s, {}",
                describe(op),
                op.invoke as f64 / 1e9,
                match op.complete {
                    Some(c) => format!("completed {:.3} s", c as f64 / 1e9),
                    None => "no answer".into(),
                }
            )),
            a + 2.0,
            y + 15.0,
            esc(&label)
        );
    }
    svg.push_str("</svg>");
    format!(
        "<!doctype html><meta charset=utf-8><title>{p}: not linearizable</title>\
         <h2>{p}: no linearization places {d} (client {c})</h2>\
         <p>Window {a:.3}–{b:.3} s of the run. Green: the longest linearizable prefix the \
         checker found, numbered in its order; red: the operation it could not place after it; \
         dashed: no answer (may have taken effect any time after invocation, or never); \
         shaded: faults.</p>{svg}",
        p = esc(path),
        d = esc(&describe(s)),
        c = s.process,
        a = from as f64 / 1e9,
        b = to as f64 / 1e9,
    )
}
