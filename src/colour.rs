//! Whether a stream gets ANSI colours: decided per stream (a plan printed to
//! stdout is coloured when stdout is a terminal, whatever stderr is), by the
//! global `--color auto|always|never` and by `NO_COLOR` (set and non-empty
//! turns colour off in `auto`, as <https://no-color.org> asks).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU8, Ordering};

/// The `--color` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour a stream when it is a terminal and `NO_COLOR` is unset or empty.
    #[default]
    Auto,
    /// Always colour, even into a pipe or a file.
    Always,
    /// Never colour.
    Never,
}

/// An output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The process-wide choice, set once by the CLI before anything prints.
static CHOICE: AtomicU8 = AtomicU8::new(0);

/// Records the `--color` choice for every later [`enabled`] call.
pub fn set_choice(choice: ColorChoice) {
    let n = match choice {
        ColorChoice::Auto => 0,
        ColorChoice::Always => 1,
        ColorChoice::Never => 2,
    };
    CHOICE.store(n, Ordering::Relaxed);
}

/// The recorded choice (`auto` unless the CLI set another).
pub fn choice() -> ColorChoice {
    match CHOICE.load(Ordering::Relaxed) {
        1 => ColorChoice::Always,
        2 => ColorChoice::Never,
        _ => ColorChoice::Auto,
    }
}

/// True when `NO_COLOR` is set to a non-empty value.
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether what is written to `stream` may carry ANSI colours.
pub fn enabled(stream: Stream) -> bool {
    match choice() {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            !no_color()
                && match stream {
                    Stream::Stdout => std::io::stdout().is_terminal(),
                    Stream::Stderr => std::io::stderr().is_terminal(),
                }
        }
    }
}
