//! The `bt86` command line.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("conformance") => {
            let dir = args.get(2).map(PathBuf::from).unwrap_or_default();
            let verbose = args.iter().any(|a| a == "--verbose");
            match bt86::conformance::run_dir(&dir, &mut std::io::stdout(), verbose) {
                Ok(s) if s.failed == 0 => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("bt86: {e}");
                    ExitCode::from(2)
                }
            }
        }
        _ => ExitCode::SUCCESS,
    }
}
