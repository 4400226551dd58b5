//! The engines guest tests run in: every guest test runs with the interpreter and, where the
//! host has a backend for it, the binary translator, and expects the same outcome from both —
//! the same output, exit and retired-instruction count. Tests cheap enough also run in lockstep
//! (the translator checked against the interpreter as it goes, `bt86::lockstep`).

use bt86::engine::{Engine, EngineKind};

/// The interpreter, and the translator where the host has a backend (x86-64).
pub fn engines() -> Vec<EngineKind> {
    let mut v = vec![EngineKind::Interp];
    if cfg!(target_arch = "x86_64") {
        v.push(EngineKind::Jit);
    }
    v
}

/// [`engines`], and lockstep where the translator exists.
pub fn engines_with_lockstep() -> Vec<EngineKind> {
    let mut v = engines();
    if cfg!(target_arch = "x86_64") {
        v.push(EngineKind::Lockstep);
    }
    v
}

/// A machine engine of `kind` (the test fails if the host cannot provide it).
pub fn engine(kind: EngineKind) -> Engine {
    Engine::new(kind).unwrap_or_else(|e| panic!("engine {kind}: {e}"))
}
