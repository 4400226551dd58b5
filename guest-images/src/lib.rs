//! Guest programs for bt86, assembled in Rust with iced-x86's `code_asm`.

/// A flat real-mode program: its bytes, where they go in guest-physical memory, and where
/// execution starts. DS and ES start equal to CS; SS:SP as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Short name (used by tests and the CLI).
    pub name: &'static str,
    /// One line saying what the program does.
    pub description: &'static str,
    /// Guest-physical load address of `code[0]`.
    pub load: u32,
    /// Entry CS (real mode).
    pub entry_cs: u16,
    /// Entry IP.
    pub entry_ip: u16,
    /// Initial SS.
    pub stack_ss: u16,
    /// Initial SP.
    pub stack_sp: u16,
    /// The program bytes.
    pub code: Vec<u8>,
}
