//! The host side of the serial console (COM1): where the guest's serial output goes and where
//! its input comes from, as `--serial stdio|file:PATH|none` chooses.
//!
//! - `stdio` (the default): output to stdout; input from stdin. When stdin is a terminal it is
//!   put in raw mode for the run (restored on exit, also when the guest is stopped), so every key
//!   reaches the guest — Ctrl-C included. The escape key is **Ctrl-A** as in QEMU: `Ctrl-A x`
//!   quits bt86, `Ctrl-A Ctrl-A` sends one Ctrl-A to the guest, `Ctrl-A h` prints the help.
//! - `file:PATH`: output appended to PATH (created if missing; nothing the user has is
//!   truncated), no input.
//! - `none`: output discarded, no input.
//!
//! Input is read by a helper thread into a channel, so the machine can either poll it (real
//! time: the guest runs on while nobody types) or wait for the next byte (virtual time with
//! piped input: the guest sees each byte at the same virtual instant on every run). When stdin
//! ends, the guest simply receives nothing more.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

/// The escape key (Ctrl-A).
pub const ESCAPE: u8 = 0x01;

/// What `--serial` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialSpec {
    /// Standard input and output.
    Stdio,
    /// Output to a file, no input.
    File(PathBuf),
    /// Nothing.
    None,
}

impl SerialSpec {
    /// Parses `stdio`, `file:PATH` or `none`.
    pub fn parse(s: &str) -> Result<SerialSpec, String> {
        match s {
            "stdio" => Ok(SerialSpec::Stdio),
            "none" => Ok(SerialSpec::None),
            _ => match s.strip_prefix("file:") {
                Some("") => Err("--serial file: needs a path (file:PATH)".into()),
                Some(p) => Ok(SerialSpec::File(PathBuf::from(p))),
                None => Err(format!("--serial: `{s}` is not stdio, file:PATH or none")),
            },
        }
    }
}

/// The next input event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// A byte for the guest.
    Byte(u8),
    /// Nothing right now.
    Empty,
    /// No more input will come.
    Eof,
    /// The user pressed the quit sequence.
    Quit,
}

/// Serial input: bytes from a reader thread, with escape handling for terminals.
#[derive(Debug)]
pub struct SerialInput {
    rx: Receiver<u8>,
    /// Escape sequences are interpreted (a terminal).
    interactive: bool,
    escape_pending: bool,
    ended: bool,
}

impl SerialInput {
    /// Input from any reader (stdin, a file, a test's bytes), read on a helper thread.
    pub fn from_reader(mut r: impl Read + Send + 'static, interactive: bool) -> SerialInput {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if buf[..n].iter().any(|&b| tx.send(b).is_err()) {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
        SerialInput { rx, interactive, escape_pending: false, ended: false }
    }

    /// The next input event; with `block`, waits up to `wait` for one.
    pub fn poll(&mut self, wait: Option<Duration>) -> Poll {
        loop {
            if self.ended {
                return Poll::Eof;
            }
            let got = match wait {
                None => match self.rx.try_recv() {
                    Ok(b) => Ok(b),
                    Err(TryRecvError::Empty) => return Poll::Empty,
                    Err(TryRecvError::Disconnected) => Err(()),
                },
                Some(d) => match self.rx.recv_timeout(d) {
                    Ok(b) => Ok(b),
                    Err(RecvTimeoutError::Timeout) => return Poll::Empty,
                    Err(RecvTimeoutError::Disconnected) => Err(()),
                },
            };
            let Ok(b) = got else {
                self.ended = true;
                return Poll::Eof;
            };
            if !self.interactive {
                return Poll::Byte(b);
            }
            if self.escape_pending {
                self.escape_pending = false;
                match b {
                    b'x' | b'X' => return Poll::Quit,
                    ESCAPE => return Poll::Byte(ESCAPE),
                    b'h' | b'H' | b'?' => {
                        let mut e = std::io::stderr();
                        let _ = e.write_all(
                            b"\r\nbt86 console: Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A, Ctrl-A h this help\r\n",
                        );
                        continue;
                    }
                    other => return Poll::Byte(other),
                }
            }
            if b == ESCAPE {
                self.escape_pending = true;
                continue;
            }
            return Poll::Byte(b);
        }
    }
}

/// Puts a terminal in raw mode and restores it when dropped.
#[derive(Debug)]
pub struct RawTerminal {
    saved: rustix::termios::Termios,
}

impl RawTerminal {
    /// Raw mode on stdin if it is a terminal (no line editing, no echo, no signals from keys),
    /// keeping output processing so a line feed still returns the carriage.
    pub fn enter() -> Option<RawTerminal> {
        use rustix::termios::{self, InputModes, LocalModes, OptionalActions};
        let stdin = rustix::stdio::stdin();
        let saved = termios::tcgetattr(stdin).ok()?;
        let mut raw = saved.clone();
        raw.local_modes &= !(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG | LocalModes::IEXTEN);
        raw.input_modes &= !(InputModes::ICRNL | InputModes::IXON | InputModes::INLCR | InputModes::IGNCR);
        termios::tcsetattr(stdin, OptionalActions::Now, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            rustix::stdio::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// A console opened for the run: the writer for the UART, the input, and the raw-mode guard.
#[derive(Debug)]
pub struct Console {
    /// Serial input, if the spec has any.
    pub input: Option<SerialInput>,
    /// Restores the terminal when the console is dropped.
    pub raw: Option<RawTerminal>,
    /// stdin is an interactive terminal.
    pub interactive: bool,
}

impl Console {
    /// Opens the console for `spec`; returns it and the writer for the guest's output.
    pub fn open(spec: &SerialSpec) -> Result<(Console, Box<dyn Write + Send>), String> {
        match spec {
            SerialSpec::None => {
                Ok((Console { input: None, raw: None, interactive: false }, Box::new(std::io::sink())))
            }
            SerialSpec::File(path) => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("--serial file:{}: cannot open: {e}", path.display()))?;
                Ok((Console { input: None, raw: None, interactive: false }, Box::new(f)))
            }
            SerialSpec::Stdio => {
                let interactive = std::io::stdin().is_terminal();
                let raw = if interactive { RawTerminal::enter() } else { None };
                let input = SerialInput::from_reader(std::io::stdin(), interactive);
                Ok((Console { input: Some(input), raw, interactive }, Box::new(std::io::stdout())))
            }
        }
    }
}

/// A writer that passes everything on and remembers the last [`Tail::KEEP`] bytes, so that a
/// run that ends badly can show what the guest printed last.
#[derive(Debug, Clone, Default)]
pub struct TailBuffer(std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u8>>>);

impl TailBuffer {
    /// The remembered bytes, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        let q = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (a, b) = q.as_slices();
        String::from_utf8_lossy(&[a, b].concat()).into_owned()
    }
}

/// See [`TailBuffer`].
pub struct Tail {
    inner: Box<dyn Write + Send>,
    buf: TailBuffer,
}

impl Tail {
    /// Bytes remembered.
    pub const KEEP: usize = 2048;

    /// Wraps `inner`; the returned buffer shows the tail.
    pub fn new(inner: Box<dyn Write + Send>) -> (Tail, TailBuffer) {
        let buf = TailBuffer::default();
        (Tail { inner, buf: buf.clone() }, buf)
    }
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail").finish_non_exhaustive()
    }
}

impl Write for Tail {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        let mut q = self.buf.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        q.extend(&data[..n]);
        let excess = q.len().saturating_sub(Self::KEEP);
        q.drain(..excess);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut i: SerialInput) -> Vec<Poll> {
        let mut v = Vec::new();
        loop {
            let p = i.poll(Some(Duration::from_secs(5)));
            v.push(p);
            if matches!(p, Poll::Eof | Poll::Quit) {
                return v;
            }
        }
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let (mut t, buf) = Tail::new(Box::new(std::io::sink()));
        for i in 0..1000 {
            writeln!(t, "line {i}").unwrap();
        }
        let text = buf.text();
        assert_eq!(text.len(), Tail::KEEP);
        assert!(text.ends_with("line 999\n"));
    }

    #[test]
    fn piped_input_passes_every_byte_then_ends() {
        let i = SerialInput::from_reader(&b"ab\x01x"[..], false);
        assert_eq!(
            drain(i),
            vec![Poll::Byte(b'a'), Poll::Byte(b'b'), Poll::Byte(ESCAPE), Poll::Byte(b'x'), Poll::Eof]
        );
    }

    #[test]
    fn terminal_escapes_quit_and_pass_ctrl_a() {
        let i = SerialInput::from_reader(&b"a\x01\x01b\x01x"[..], true);
        assert_eq!(drain(i), vec![Poll::Byte(b'a'), Poll::Byte(ESCAPE), Poll::Byte(b'b'), Poll::Quit]);
    }

    #[test]
    fn specs_parse_with_clear_errors() {
        assert_eq!(SerialSpec::parse("stdio"), Ok(SerialSpec::Stdio));
        assert_eq!(SerialSpec::parse("none"), Ok(SerialSpec::None));
        assert_eq!(SerialSpec::parse("file:/tmp/x"), Ok(SerialSpec::File("/tmp/x".into())));
        assert!(SerialSpec::parse("file:").unwrap_err().contains("needs a path"));
        assert!(SerialSpec::parse("tcp:1").unwrap_err().contains("not stdio"));
    }
}
