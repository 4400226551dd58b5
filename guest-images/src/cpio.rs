//! A writer for the "newc" cpio format (the `070701` header of SVR4 cpio without checksums),
//! which is what the Linux kernel unpacks as an initramfs (the kernel's
//! `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! The archive is reproducible: entries are sorted by path, owned by root, stamped with mtime 0
//! and numbered by their position, so the same tree always gives the same bytes.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// File-type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// One archive member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, without a leading `/`.
    pub path: String,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Contents (for a symbolic link, the target).
    pub data: Vec<u8>,
    /// Device number (major, minor) of a device node.
    pub rdev: (u32, u32),
}

impl Entry {
    /// A directory.
    pub fn dir(path: &str, perm: u32) -> Entry {
        Entry { path: path.into(), mode: S_IFDIR | perm, data: Vec::new(), rdev: (0, 0) }
    }

    /// A regular file.
    pub fn file(path: &str, perm: u32, data: Vec<u8>) -> Entry {
        Entry { path: path.into(), mode: S_IFREG | perm, data, rdev: (0, 0) }
    }

    /// A character device node.
    pub fn char_device(path: &str, perm: u32, major: u32, minor: u32) -> Entry {
        Entry { path: path.into(), mode: S_IFCHR | perm, data: Vec::new(), rdev: (major, minor) }
    }

    /// A symbolic link to `target`.
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry { path: path.into(), mode: S_IFLNK | 0o777, data: target.as_bytes().to_vec(), rdev: (0, 0) }
    }
}

/// The members of the host directory `root`, recursively, sorted by path. Regular files,
/// directories and symbolic links are taken; anything else is an error naming the path.
pub fn entries_of_dir(root: &Path) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    walk(root, "", &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> io::Result<()> {
    for item in fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name().into_string().map_err(|n| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: file name is not UTF-8", n.to_string_lossy()),
            )
        })?;
        let path = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let host = item.path();
        let meta = fs::symlink_metadata(&host)?;
        let perm = meta.permissions().mode() & 0o7777;
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = fs::read_link(&host)?;
            out.push(Entry::symlink(&path, &target.to_string_lossy()));
        } else if kind.is_dir() {
            out.push(Entry::dir(&path, perm));
            walk(&host, &path, out)?;
        } else if kind.is_file() {
            out.push(Entry::file(&path, perm, fs::read(&host)?));
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: neither a file, a directory nor a symbolic link", host.display()),
            ));
        }
    }
    Ok(())
}

/// The newc archive of `entries` (in the order given) followed by the trailer.
pub fn newc(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let nlink = if e.mode & 0o170_000 == S_IFDIR { 2 } else { 1 };
        member(&mut out, i as u32 + 1, e.mode, nlink, e.rdev, &e.path, &e.data);
    }
    member(&mut out, 0, 0, 1, (0, 0), "TRAILER!!!", &[]);
    out
}

fn member(out: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), name: &str, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_and_padding() {
        let a = newc(&[Entry::file("init", 0o755, b"abc".to_vec())]);
        assert_eq!(&a[..6], b"070701");
        // ino 1, mode 0100755, size 3, namesize 5.
        assert_eq!(&a[6..14], b"00000001");
        assert_eq!(&a[14..22], b"000081ED");
        assert_eq!(&a[54..62], b"00000003");
        assert_eq!(&a[94..102], b"00000005");
        // 110-byte header + "init\0" = 115, padded to 116; data at 116..119, padded to 120.
        assert_eq!(&a[110..116], b"init\0\0");
        assert_eq!(&a[116..120], b"abc\0");
        assert_eq!(&a[120..126], b"070701");
        assert!(a.ends_with(b"TRAILER!!!\0\0\0\0"));
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn device_nodes_carry_their_numbers() {
        let a = newc(&[Entry::char_device("dev/console", 0o600, 5, 1)]);
        assert_eq!(&a[14..22], b"00002180");
        assert_eq!(&a[78..86], b"00000005");
        assert_eq!(&a[86..94], b"00000001");
    }

    #[test]
    fn directory_walk_is_sorted_and_reproducible() {
        let dir = std::env::temp_dir().join(format!("bt86-cpio-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("b/c")).unwrap();
        fs::write(dir.join("a"), b"1").unwrap();
        fs::write(dir.join("b/c/d"), b"22").unwrap();
        std::os::unix::fs::symlink("a", dir.join("e")).unwrap();
        let e = entries_of_dir(&dir).unwrap();
        let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "b", "b/c", "b/c/d", "e"]);
        assert_eq!(e[4], Entry::symlink("e", "a"));
        assert_eq!(newc(&e), newc(&entries_of_dir(&dir).unwrap()));
        fs::remove_dir_all(&dir).unwrap();
    }
}
