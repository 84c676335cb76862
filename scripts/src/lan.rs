//! LAN emulation on one machine: each executor runs in its own network namespace `gm-exI`,
//! joined to the root namespace by a veth pair (`gm-vhI` root side, 10.77.I.1/24; `gm-vnI`
//! inside, 10.77.I.2/24), so every executor has its own network stack and link, as a PC on a
//! LAN would. Link delay comes from `tc netem` when the kernel has it, else from a
//! [`DelayRelay`] per executor (this VM's kernel lacks `sch_netem`); the link rate is capped with
//! `tbf` (or netem's `rate`). Namespaces are removed on drop and stale ones from a killed run are
//! removed before creating new ones. Needs root, `ip` and `tc`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::time::Duration;

use crate::relay::DelayRelay;
use crate::{Error, Result};

/// How the delay is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DelayVia {
    /// netem if the kernel has it, else the relay.
    Auto,
    /// `tc qdisc ... netem delay` on both ends of each veth.
    Netem,
    /// Userspace UDP relay in the driver process.
    Relay,
}

/// The namespaces and links of one LAN-mode scenario.
#[derive(Debug)]
pub struct Lan {
    nodes: u32,
    delay: Duration,
    netem: bool,
}

fn ns(i: u32) -> String {
    format!("gm-ex{i}")
}

/// Root-side address of link `i`.
pub fn host_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, i as u8, 1)
}

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| Error::io(format!("running {}", args[0]), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

impl Lan {
    /// Creates `nodes` namespaces and links with `delay` one way per direction and `rate_mbit`.
    pub fn create(nodes: u32, delay: Duration, rate_mbit: u32, via: DelayVia) -> Result<Lan> {
        if nodes == 0 || nodes > 250 {
            return Err(Error::Invalid(format!(
                "LAN mode needs 1..=250 executors, got {nodes}"
            )));
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Error::Invalid(
                "LAN mode needs root (network namespaces, veth, tc)".into(),
            ));
        }
        remove_stale();
        // Constructed first so a failure half-way still removes what was made.
        let mut lan = Lan {
            nodes,
            delay,
            netem: false,
        };
        for i in 1..=nodes {
            let (n, vh, vn) = (ns(i), format!("gm-vh{i}"), format!("gm-vn{i}"));
            let host = format!("{}/24", host_addr(i));
            let inner = format!("10.77.{i}.2/24");
            run(&["ip", "netns", "add", &n])?;
            run(&[
                "ip", "link", "add", &vh, "type", "veth", "peer", "name", &vn, "netns", &n,
            ])?;
            run(&["ip", "addr", "add", &host, "dev", &vh])?;
            run(&["ip", "link", "set", &vh, "up"])?;
            run(&["ip", "-n", &n, "addr", "add", &inner, "dev", &vn])?;
            run(&["ip", "-n", &n, "link", "set", &vn, "up"])?;
            run(&["ip", "-n", &n, "link", "set", "lo", "up"])?;
        }
        let want_netem = via != DelayVia::Relay;
        let delay_ms = format!("{}ms", delay.as_secs_f64() * 1e3);
        let rate = format!("{rate_mbit}mbit");
        if want_netem {
            let ok = (1..=nodes).try_for_each(|i| {
                let (n, vh, vn) = (ns(i), format!("gm-vh{i}"), format!("gm-vn{i}"));
                run(&[
                    "tc", "qdisc", "add", "dev", &vh, "root", "netem", "delay", &delay_ms, "rate",
                    &rate,
                ])?;
                run(&[
                    "ip", "netns", "exec", &n, "tc", "qdisc", "add", "dev", &vn, "root", "netem",
                    "delay", &delay_ms, "rate", &rate,
                ])
            });
            match ok {
                Ok(()) => lan.netem = true,
                Err(e) if via == DelayVia::Netem => return Err(e),
                Err(e) => {
                    tracing::warn!("tc netem unavailable ({e}); using the userspace delay relay")
                }
            }
        }
        if !lan.netem {
            for i in 1..=nodes {
                let (n, vh, vn) = (ns(i), format!("gm-vh{i}"), format!("gm-vn{i}"));
                let _ = run(&["tc", "qdisc", "del", "dev", &vh, "root"]);
                let tbf = [
                    "root", "tbf", "rate", &rate, "burst", "256kb", "latency", "50ms",
                ];
                let mut a = vec!["tc", "qdisc", "add", "dev", vh.as_str()];
                a.extend(tbf);
                run(&a)?;
                let mut b = vec![
                    "ip",
                    "netns",
                    "exec",
                    n.as_str(),
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    vn.as_str(),
                ];
                b.extend(tbf);
                run(&b)?;
            }
        }
        Ok(lan)
    }

    /// True if the delay is applied by netem (else by relays from [`Lan::links`]).
    pub fn uses_netem(&self) -> bool {
        self.netem
    }

    /// Per-run links to a manager listening on `manager_port` on all interfaces: the address
    /// executor `i` (1-based) must dial, plus the relays that must live as long as the run.
    pub fn links(&self, manager_port: u16) -> Result<(Vec<SocketAddr>, Vec<DelayRelay>)> {
        let mut addrs = Vec::new();
        let mut relays = Vec::new();
        for i in 1..=self.nodes {
            if self.netem {
                addrs.push(SocketAddr::V4(SocketAddrV4::new(
                    host_addr(i),
                    manager_port,
                )));
            } else {
                let bind = SocketAddr::V4(SocketAddrV4::new(host_addr(i), 0));
                let upstream = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, manager_port));
                let relay = DelayRelay::start(bind, upstream, self.delay)?;
                addrs.push(relay.addr());
                relays.push(relay);
            }
        }
        Ok((addrs, relays))
    }

    /// Wraps `program` so it runs inside executor `i`'s namespace (`ip netns exec` keeps the
    /// pid, so process-group cleanup still reaches it).
    pub fn command(&self, i: u32, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns(i)]).arg(program);
        cmd
    }
}

/// Removes `gm-ex*` namespaces and `gm-vh*` links left by a run that was killed outright
/// (only names this module creates).
fn remove_stale() {
    let list = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    for line in list(&["netns", "list"]).lines() {
        if let Some(name) = line
            .split_whitespace()
            .next()
            .filter(|n| n.starts_with("gm-ex"))
        {
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
    for line in list(&["-o", "link", "show"]).lines() {
        // "12: gm-vh1@if11: <...>"
        if let Some(name) = line
            .split(':')
            .nth(1)
            .map(|n| n.trim().split('@').next().unwrap_or(""))
            .filter(|n| n.starts_with("gm-vh"))
        {
            let _ = run(&["ip", "link", "del", name]);
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting the namespace destroys the inner veth end and with it the pair.
        for i in 1..=self.nodes {
            if let Err(e) = run(&["ip", "netns", "del", &ns(i)]) {
                tracing::warn!("cleanup: {e}");
            }
            let _ = run(&["ip", "link", "del", &format!("gm-vh{i}")]);
        }
    }
}
