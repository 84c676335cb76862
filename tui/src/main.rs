//! `tui`: live ratatui monitor of a gridmatch grid (read-only).
//!
//! Glue only: parses flags, sets up the terminal (restored on exit and on panic), runs the
//! network task on a small tokio runtime, and loops: drain the inbox, read keys, redraw at
//! 10 Hz. State and rendering live in the library (`tui::state`, `tui::ui`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tui::net::{self, Inbox, NetConfig};
use tui::{Action, AppState, Key};

/// Redraw period: the brief asks for at least 4 refreshes a second.
const FRAME: Duration = Duration::from_millis(100);

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Live monitor of a gridmatch grid: nodes, market, matching log."
)]
struct Args {
    #[command(flatten)]
    grid: transport::cli::ManagerArgs,
    #[command(flatten)]
    token: transport::cli::TokenArg,
    /// Levels per side of the Market view's book, from the public market-data feed (an L2
    /// subscription over every security: exact depth and every trade). 0: no feed session;
    /// the view then shows the monitor's sampled depth and trades.
    #[arg(long, default_value_t = tui::market::FEED_LEVELS)]
    feed_levels: u32,
    /// Write tracing logs to this file (stderr would garble the screen); RUST_LOG filters.
    #[arg(long)]
    log: Option<PathBuf>,
}

fn init_file_tracing(path: &PathBuf) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

fn map_key(k: KeyEvent) -> Option<Key> {
    if k.kind == KeyEventKind::Release {
        return None;
    }
    if k.modifiers.contains(KeyModifiers::CONTROL)
        && matches!(k.code, KeyCode::Char('c') | KeyCode::Char('C'))
    {
        return Some(Key::Interrupt);
    }
    Some(match k.code {
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Char(c) => Key::Char(c),
        _ => return None,
    })
}

fn run_ui(
    terminal: &mut ratatui::DefaultTerminal,
    state: &mut AppState,
    inbox: &Inbox,
    quit: &AtomicBool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut next_frame = Instant::now();
    loop {
        for ev in inbox.drain() {
            state.apply(ev);
        }
        if state.fatal.is_some() {
            return Ok(());
        }
        state.feed_dropped = inbox.dropped();
        state.tick(start.elapsed().as_millis() as u64);
        terminal
            .draw(|f| tui::ui::draw(f, state))
            .context("drawing the screen")?;
        next_frame += FRAME;
        // Handle every key that arrives before the next frame is due.
        loop {
            if quit.load(Ordering::Relaxed) {
                return Ok(());
            }
            let wait = next_frame.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                break;
            }
            if !event::poll(wait).context("reading terminal events")? {
                break;
            }
            match event::read().context("reading terminal events")? {
                Event::Key(k) => {
                    if let Some(key) = map_key(k) {
                        if state.handle_key(key) == Action::Quit {
                            return Ok(());
                        }
                        // Redraw right away so typing feels immediate.
                        break;
                    }
                }
                Event::Resize(..) => break,
                _ => {}
            }
        }
        if next_frame < Instant::now() {
            next_frame = Instant::now();
        }
    }
}

fn main() -> std::process::ExitCode {
    transport::runtime::exit_code("tui", run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let token = args.token.resolve().context("--token")?;
    if let Some(path) = &args.log {
        init_file_tracing(path)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tui-net")
        .enable_all()
        .build()
        .context("starting the network runtime")?;
    // Fail before touching the terminal if the CA or the address is unusable.
    let endpoint = {
        let _guard = runtime.enter();
        transport::quic::client_endpoint(&args.grid.ca)
            .with_context(|| format!("loading --ca {}", args.grid.ca.display()))?
    };
    transport::quic::resolve(&args.grid.manager)
        .with_context(|| format!("--manager {}", args.grid.manager))?;

    let inbox = Arc::new(Inbox::default());
    let quit = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = |token| NetConfig {
        manager: args.grid.manager.clone(),
        token,
        feed_levels: args.feed_levels,
    };
    if args.feed_levels > 0 {
        let feed = net::run_feed(
            endpoint.clone(),
            cfg(token.clone()),
            inbox.clone(),
            stop_rx.clone(),
        );
        runtime.spawn(feed);
    }
    let net_task = runtime.spawn(net::run(endpoint, cfg(token), inbox.clone(), stop_rx));
    {
        let quit = quit.clone();
        runtime.spawn(async move {
            transport::runtime::shutdown_signal().await;
            quit.store(true, Ordering::Relaxed);
        });
    }

    // try_init also installs a panic hook that restores the terminal before the message prints.
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let mut state = AppState::new(args.grid.manager.clone());
    let result = run_ui(&mut terminal, &mut state, &inbox, &quit);
    let restored = ratatui::try_restore().context("restoring the terminal");

    let _ = stop_tx.send(true);
    let _ =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(1), net_task).await });
    runtime.shutdown_timeout(Duration::from_millis(200));
    tracing::info!(dropped = state.lost(), "tui exiting");
    result.and(restored)?;
    match state.fatal {
        Some(reason) => anyhow::bail!("cannot monitor {}: {reason}", args.grid.manager),
        None => Ok(()),
    }
}
