//! The conformance runner over the silicon-captured vectors in `../shared/testdata`, and its
//! handling of bad input.

use std::path::{Path, PathBuf};

use bt86::conformance::{run_dir, SstError};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata").join(name)
}

fn run(dir: &Path) -> (bt86::conformance::Summary, String) {
    let mut out = Vec::new();
    let s = run_dir(dir, &mut out, false).unwrap_or_else(|e| panic!("{e}"));
    (s, String::from_utf8(out).unwrap())
}

#[test]
fn sst_80286_real_mode_vectors_pass() {
    let (s, out) = run(&testdata("sst-80286"));
    println!("{out}");
    assert_eq!(out.lines().last(), Some(s.line().as_str()), "the report must end with the summary");
    assert!(s.passed + s.failed > 290_000, "most of the 325,000 vectors must be compared: {s:?}");
    assert!(s.pass_rate() >= 99.5, "{}", s.line());
}

#[test]
fn sst_80386_sample_passes() {
    let (s, out) = run(&testdata("sst-80386-sample"));
    println!("{out}");
    assert!(s.passed >= 490, "{}", s.line());
    assert!(s.pass_rate() >= 99.0, "{}", s.line());
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bt86-sst-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One hand-written vector in the format: `inc ax` then HLT.
const GOOD: &str = r#"{ "cpu": "test", "tests": [ { "idx": 0, "name": "inc ax", "bytes": [64, 244],
  "initial": { "regs": { "ax": 1, "bx": 0, "cx": 0, "dx": 0, "cs": 0, "ss": 0, "ds": 0, "es": 0,
    "sp": 256, "bp": 0, "si": 0, "di": 0, "ip": 4096, "flags": 2 },
    "ram": [[4096, 64], [4097, 244]], "queue": [] },
  "final": { "regs": { "ax": 2, "ip": 4098 }, "ram": [], "queue": [] }, "hash": "aa" } ] }"#;

#[test]
fn any_directory_in_the_format_works_and_bad_files_are_counted_not_fatal() {
    let d = scratch("mixed");
    std::fs::write(d.join("40.json"), GOOD).unwrap();
    std::fs::write(d.join("41.json"), GOOD.replace(r#""ax": 2"#, r#""ax": 3"#)).unwrap();
    std::fs::write(d.join("42.json"), &GOOD[..GOOD.len() / 2]).unwrap(); // truncated
    std::fs::write(d.join("43.json.gz"), b"not gzip at all").unwrap();
    let (s, out) = run(&d);
    assert_eq!((s.passed, s.failed, s.skipped), (1, 3, 0), "{out}");
    assert!(out.contains("42.json") && out.contains("malformed"), "{out}");
    assert!(out.contains("43.json.gz") && out.contains("gzip"), "{out}");
    assert!(out.contains("ax: expected 0x0003, got 0x0002"), "{out}");
    assert_eq!(out.lines().last(), Some("sst: 1 passed, 3 failed, 0 skipped"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn revoked_tests_are_skipped() {
    let d = scratch("revoked");
    std::fs::write(d.join("40.json"), GOOD).unwrap();
    std::fs::write(d.join("revocation_list.txt"), "# bad tests\naa\n").unwrap();
    let (s, _) = run(&d);
    assert_eq!((s.passed, s.failed, s.skipped), (0, 0, 1));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn missing_or_empty_directories_are_errors() {
    let mut out = Vec::new();
    let missing = Path::new("/nonexistent/bt86-vectors");
    assert!(matches!(run_dir(missing, &mut out, false), Err(SstError::Dir { .. })));
    let d = scratch("empty");
    assert!(matches!(run_dir(&d, &mut out, false), Err(SstError::Empty(_))));
    std::fs::remove_dir_all(&d).unwrap();
}
