//! Reading a rendered screen in the TestBackend tests: the lines, the line holding a text, and
//! the cell where a text starts.

use ratatui::backend::TestBackend;
use ratatui::buffer::{Buffer, Cell};
use ratatui::Terminal;
use tui::AppState;

pub fn render(state: &AppState, w: u16, h: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test backend");
    terminal.draw(|f| tui::ui::draw(f, state)).expect("draw");
    terminal.backend().buffer().clone()
}

pub fn lines(buf: &Buffer) -> Vec<String> {
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

#[allow(dead_code)] // not every test file reads the whole screen
pub fn text(buf: &Buffer) -> String {
    lines(buf).join("\n")
}

/// The line containing `needle`, or a failure that shows the whole screen.
pub fn line_with(buf: &Buffer, needle: &str) -> (u16, String) {
    lines(buf)
        .into_iter()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .map(|(y, l)| (y as u16, l))
        .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{}", lines(buf).join("\n")))
}

/// The cell of the first glyph of `needle` on line `y`. Leading spaces in `needle` only anchor
/// the match.
pub fn cell_at<'a>(buf: &'a Buffer, y: u16, needle: &str) -> &'a Cell {
    let symbols: Vec<&str> = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
    let joined = symbols.concat();
    let byte =
        joined.find(needle).expect("needle on line") + (needle.len() - needle.trim_start().len());
    // Column of the needle: count symbols (of any byte length) before its byte offset.
    let (mut col, mut acc) = (0usize, 0usize);
    while acc < byte {
        acc += symbols[col].len();
        col += 1;
    }
    &buf[(col as u16, y)]
}
