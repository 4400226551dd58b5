//! `mkinitramfs ROOT OUT`: write the directory tree ROOT as a reproducible newc cpio archive
//! (a Linux initramfs) to OUT, adding `/dev` and the `/dev/console` node (5, 1) the kernel
//! opens for init's standard streams if ROOT lacks them. Used by scripts/fetch-linux-guest.sh.

use std::path::PathBuf;
use std::process::ExitCode;

use guest_images::cpio::{entries_of_dir, newc, Entry};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, out] = args.as_slice() else {
        eprintln!("usage: mkinitramfs ROOT OUT");
        return ExitCode::from(2);
    };
    let root = PathBuf::from(root);
    let mut entries = match entries_of_dir(&root) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("mkinitramfs: {}: {e}", root.display());
            return ExitCode::FAILURE;
        }
    };
    if !entries.iter().any(|e| e.path == "dev") {
        entries.push(Entry::dir("dev", 0o755));
    }
    if !entries.iter().any(|e| e.path == "dev/console") {
        entries.push(Entry::char_device("dev/console", 0o600, 5, 1));
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    if let Err(e) = std::fs::write(out, newc(&entries)) {
        eprintln!("mkinitramfs: {out}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
