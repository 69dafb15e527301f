//! The kernel's floor for checking a tree file by file: `statwalk DIR
//! THREADS` lists every file below DIR once (not timed), then `lstat`s them
//! all, each relative to its open directory (`fstatat`, as git-sidecar's
//! walk does), split over THREADS threads, three times; prints the median
//! `<wall µs> <CPU µs> <files>` of the three. Nothing but the system calls
//! is timed: no index is read, no name compared. Built by `scripts/bench`
//! with `rustc -O` (no dependencies); Linux on x86_64 only.

use std::ffi::CString;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Instant;

const AT_SYMLINK_NOFOLLOW: i32 = 0x100;
const RUSAGE_SELF: i32 = 0;

#[repr(C)]
struct Timeval {
    sec: i64,
    usec: i64,
}

#[repr(C)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    rest: [i64; 14],
}

extern "C" {
    fn fstatat(dirfd: i32, path: *const i8, buf: *mut u8, flags: i32) -> i32;
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
}

/// Every non-directory below `dir`: (index of its directory in `dirs`, name).
fn list(dir: &Path, dirs: &mut Vec<File>, files: &mut Vec<(usize, CString)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    dirs.push(File::open(dir).expect("open a directory"));
    let at = dirs.len() - 1;
    for entry in entries.flatten() {
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            list(&entry.path(), dirs, files);
        } else {
            files.push((at, CString::new(entry.file_name().as_bytes()).expect("no NUL in a name")));
        }
    }
}

fn cpu_us() -> i64 {
    let mut usage = Rusage { utime: Timeval { sec: 0, usec: 0 }, stime: Timeval { sec: 0, usec: 0 }, rest: [0; 14] };
    // SAFETY: getrusage fills the struct it is given (144 bytes on x86_64 Linux).
    unsafe { getrusage(RUSAGE_SELF, &mut usage) };
    let us = |t: &Timeval| t.sec * 1_000_000 + t.usec;
    us(&usage.utime) + us(&usage.stime)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, threads) = match args.as_slice() {
        [_, dir, threads] => (dir, threads.parse::<usize>().expect("THREADS is a number").max(1)),
        _ => {
            eprintln!("usage: statwalk DIR THREADS");
            std::process::exit(2);
        }
    };
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    list(Path::new(dir), &mut dirs, &mut files);
    let fds: Vec<i32> = dirs.iter().map(|d| d.as_raw_fd()).collect();
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let (cpu0, t0) = (cpu_us(), Instant::now());
        std::thread::scope(|scope| {
            for share in files.chunks(files.len().div_ceil(threads).max(1)) {
                let fds = &fds;
                scope.spawn(move || {
                    let mut buf = [0u8; 256];
                    for (at, name) in share {
                        // SAFETY: a valid directory fd, a NUL-terminated name, a buffer larger than struct stat.
                        unsafe { fstatat(fds[*at], name.as_ptr(), buf.as_mut_ptr(), AT_SYMLINK_NOFOLLOW) };
                    }
                });
            }
        });
        rounds.push((t0.elapsed().as_micros() as i64, cpu_us() - cpu0));
    }
    rounds.sort();
    let (wall, cpu) = rounds[1];
    println!("{wall} {cpu} {}", files.len());
}
