//! Per-agent results: P&L (cash plus inventory marked to the last price, minus the starting
//! cash), inventory and order counts, as CSV and as text tables (per agent and per kind).

use std::fmt::Write as _;

use matching::SecurityId;

use crate::agent::AgentKind;
use crate::driver::Lockstep;
use crate::view::MarketView;

/// One agent's results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSummary {
    pub index: u32,
    pub kind: AgentKind,
    pub broker: u32,
    /// The security it trades, `*` for several.
    pub security: String,
    pub sent: u64,
    pub cancels: u64,
    pub amends: u64,
    pub rejected: u64,
    /// Orders filled completely.
    pub filled: u64,
    /// Trades it took part in.
    pub fills: u64,
    pub bought: u64,
    pub sold: u64,
    /// Net shares held, all securities together.
    pub inventory: i64,
    pub cash: i128,
    pub pnl: i128,
}

/// Summaries of every agent, marking positions at the view's last prices (the reference
/// price where a security never traded).
pub fn summarize(driver: &Lockstep, view: &MarketView) -> Vec<AgentSummary> {
    let mark = |id: SecurityId| {
        view.security(id)
            .map_or(0, |s| s.last_price.unwrap_or(s.reference))
    };
    driver
        .agents()
        .map(|a| {
            let acc = a.account;
            let c = acc.counts;
            AgentSummary {
                index: a.index,
                kind: a.kind,
                broker: a.broker.0,
                security: a
                    .security
                    .and_then(|id| view.security(id))
                    .map_or_else(|| "*".to_string(), |s| s.code.clone()),
                sent: c.sent,
                cancels: c.cancels_sent,
                amends: c.amends_sent,
                rejected: c.rejected,
                filled: c.filled,
                fills: c.fills,
                bought: c.bought,
                sold: c.sold,
                inventory: acc.positions().map(|(_, q)| q).sum(),
                cash: acc.cash,
                pnl: acc.pnl(mark),
            }
        })
        .collect()
}

const HEADER: [&str; 16] = [
    "agent",
    "kind",
    "broker",
    "security",
    "sent",
    "cancels",
    "amends",
    "rejected",
    "filled",
    "fills",
    "bought",
    "sold",
    "inventory",
    "cash",
    "pnl",
    "pnl_per_fill",
];

fn row(a: &AgentSummary) -> [String; 16] {
    let per_fill = if a.fills == 0 {
        String::new()
    } else {
        (a.pnl / i128::from(a.fills)).to_string()
    };
    [
        a.index.to_string(),
        a.kind.name().to_string(),
        a.broker.to_string(),
        a.security.clone(),
        a.sent.to_string(),
        a.cancels.to_string(),
        a.amends.to_string(),
        a.rejected.to_string(),
        a.filled.to_string(),
        a.fills.to_string(),
        a.bought.to_string(),
        a.sold.to_string(),
        a.inventory.to_string(),
        a.cash.to_string(),
        a.pnl.to_string(),
        per_fill,
    ]
}

/// Every agent as CSV, in index order.
pub fn agents_csv(agents: &[AgentSummary]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(HEADER);
    for a in agents {
        let _ = w.write_record(row(a));
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// A text table with right-aligned columns (the first `left` columns left-aligned).
fn table(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut first = true;
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if !first {
                out.push_str("  ");
            }
            first = false;
            if i < left {
                let _ = write!(out, "{cell:<w$}");
            } else {
                let _ = write!(out, "{cell:>w$}");
            }
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(&mut out, &mut header.iter().copied());
    let total: usize = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for r in rows {
        line(&mut out, &mut r.iter().map(String::as_str));
    }
    out
}

/// Every agent as a text table.
pub fn agents_table(agents: &[AgentSummary]) -> String {
    let rows: Vec<Vec<String>> = agents.iter().map(|a| row(a).to_vec()).collect();
    table(&HEADER, &rows, 4)
}

/// One line per kind: agents, orders, rejects, fills, volume, and the P&L spread.
pub fn kinds_table(agents: &[AgentSummary]) -> String {
    let header = [
        "kind",
        "agents",
        "sent",
        "cancels",
        "amends",
        "rejected",
        "filled",
        "fills",
        "volume",
        "net_inventory",
        "pnl_total",
        "pnl_mean",
        "pnl_min",
        "pnl_max",
    ];
    let mut rows = Vec::new();
    for kind in AgentKind::ALL {
        let group: Vec<&AgentSummary> = agents.iter().filter(|a| a.kind == kind).collect();
        if group.is_empty() {
            continue;
        }
        let sum = |f: fn(&AgentSummary) -> u64| group.iter().map(|a| f(a)).sum::<u64>();
        let pnl: Vec<i128> = group.iter().map(|a| a.pnl).collect();
        let total: i128 = pnl.iter().sum();
        rows.push(vec![
            kind.name().to_string(),
            group.len().to_string(),
            sum(|a| a.sent).to_string(),
            sum(|a| a.cancels).to_string(),
            sum(|a| a.amends).to_string(),
            sum(|a| a.rejected).to_string(),
            sum(|a| a.filled).to_string(),
            sum(|a| a.fills).to_string(),
            (sum(|a| a.bought) + sum(|a| a.sold)).to_string(),
            group.iter().map(|a| a.inventory).sum::<i64>().to_string(),
            total.to_string(),
            (total / group.len() as i128).to_string(),
            pnl.iter().min().copied().unwrap_or(0).to_string(),
            pnl.iter().max().copied().unwrap_or(0).to_string(),
        ]);
    }
    table(&header, &rows, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(index: u32, kind: AgentKind, pnl: i128, inventory: i64) -> AgentSummary {
        AgentSummary {
            index,
            kind,
            broker: index,
            security: "AAA".into(),
            sent: 10,
            cancels: 2,
            amends: 1,
            rejected: 1,
            filled: 3,
            fills: 4,
            bought: 300,
            sold: 200,
            inventory,
            cash: 1_000 - pnl,
            pnl,
        }
    }

    #[test]
    fn csv_has_one_row_per_agent() {
        let csv = agents_csv(&[
            agent(0, AgentKind::Noise, -50, 100),
            agent(1, AgentKind::Value, 80, -100),
        ]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], HEADER.join(","));
        assert_eq!(
            lines[1],
            "0,noise,0,AAA,10,2,1,1,3,4,300,200,100,1050,-50,-12"
        );
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn kinds_table_aggregates_per_kind() {
        let agents = [
            agent(0, AgentKind::Noise, -50, 100),
            agent(1, AgentKind::Noise, 30, 0),
            agent(2, AgentKind::MarketMaker, 900, -100),
        ];
        let t = kinds_table(&agents);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("kind"));
        assert!(lines[1].starts_with("---"));
        let noise: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            noise,
            [
                "noise", "2", "20", "4", "2", "2", "6", "8", "1000", "100", "-20", "-10", "-50",
                "30"
            ]
        );
        assert!(lines[3].starts_with("market_maker"));
        assert_eq!(lines.len(), 4, "no row for kinds without agents");
        // Columns line up: every line of the table has the same width as the separator.
        let t = agents_table(&agents);
        let widths: Vec<usize> = t.lines().skip(1).map(str::len).collect();
        assert!(widths.iter().all(|&w| w == widths[0]), "{t}");
    }
}
