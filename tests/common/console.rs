//! A debug console for machines built in a test: keeps what the guest wrote.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

/// A debug console that keeps what the guest wrote (clone it before giving it to a machine).
#[derive(Clone, Default)]
pub struct Console(Rc<RefCell<Vec<u8>>>);

impl Console {
    /// What the guest wrote so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.borrow()).into_owned()
    }
}

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
