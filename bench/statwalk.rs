//! The kernel's floor for checking a tree file by file: `statwalk DIR
//! THREADS` lists every file below DIR once (not timed), then `lstat`s them
//! all, each relative to its open directory (`fstatat`, as git-sidecar's
//! walk does), split over THREADS threads, three times; prints the medians
//! `<wall µs> <CPU µs> <files>` of the three. Nothing but the system calls
//! is timed: no index is read, no name compared. Exits non-zero if DIR
//! cannot be read or any `fstatat` fails. Built by `scripts/bench` with
//! `rustc -O` (no dependencies); Linux on x86_64 only.

use std::ffi::CString;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Instant;

const AT_SYMLINK_NOFOLLOW: i32 = 0x100;
const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

extern "C" {
    fn fstatat(dirfd: i32, path: *const i8, buf: *mut u8, flags: i32) -> i32;
    fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
}

/// Every non-directory below `dir`: (index of its directory in `dirs`, name).
fn list(dir: &Path, dirs: &mut Vec<File>, files: &mut Vec<(usize, CString)>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", dir.display())));
    dirs.push(
        File::open(dir).unwrap_or_else(|e| fail(&format!("cannot open {}: {e}", dir.display()))),
    );
    let at = dirs.len() - 1;
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", dir.display())));
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            list(&entry.path(), dirs, files);
        } else {
            files.push((
                at,
                CString::new(entry.file_name().as_bytes()).expect("no NUL in a name"),
            ));
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("statwalk: {message}");
    std::process::exit(1);
}

/// CPU time of the whole process (all its threads), in µs.
fn cpu_us() -> i64 {
    let mut time = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime fills the timespec it is given.
    unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut time) };
    time.sec * 1_000_000 + time.nsec / 1000
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, threads) = match args.as_slice() {
        [_, dir, threads] => (
            dir,
            threads
                .parse::<usize>()
                .expect("THREADS is a number")
                .max(1),
        ),
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
                        let rc = unsafe {
                            fstatat(
                                fds[*at],
                                name.as_ptr(),
                                buf.as_mut_ptr(),
                                AT_SYMLINK_NOFOLLOW,
                            )
                        };
                        if rc != 0 {
                            fail(&format!(
                                "lstat of {name:?} failed: {}",
                                std::io::Error::last_os_error()
                            ));
                        }
                    }
                });
            }
        });
        rounds.push((t0.elapsed().as_micros() as i64, cpu_us() - cpu0));
    }
    let median = |mut values: Vec<i64>| {
        values.sort_unstable();
        values[values.len() / 2]
    };
    let wall = median(rounds.iter().map(|r| r.0).collect());
    let cpu = median(rounds.iter().map(|r| r.1).collect());
    println!("{wall} {cpu} {}", files.len());
}
