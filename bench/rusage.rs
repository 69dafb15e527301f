//! A tiny launcher that runs one command and reports that command's own
//! resource usage: `rusage OUT_FILE PROGRAM [ARGS...]` writes
//! `<user µs> <system µs> <peak RSS KiB>` to OUT_FILE and exits with the
//! command's exit code.
//!
//! Why it exists: Linux counts the memory a process had *before* `exec` in
//! its peak RSS, so a command forked straight from the Python harness reports
//! at least the harness's own RSS. Forked from this small launcher instead,
//! the pollution is this launcher's ~1 MiB. Built by `scripts/bench` with
//! `rustc -O` (no dependencies); Linux on 64-bit targets only.

use std::process::{Command, ExitCode};

#[repr(C)]
struct Timeval {
    sec: i64,
    usec: i64,
}

/// `struct rusage` on 64-bit Linux: two timevals, then 14 longs.
#[repr(C)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    maxrss: i64,
    rest: [i64; 13],
}

extern "C" {
    fn wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut Rusage) -> i32;
}

fn micros(t: &Timeval) -> i64 {
    t.sec * 1_000_000 + t.usec
}

/// Runs the command and returns (wait status, rusage of it and its waited children).
fn run(program: &str, args: &[String]) -> Result<(i32, Rusage), String> {
    let child = Command::new(program)
        .args(args)
        .spawn()
        .map_err(|e| format!("rusage: cannot start {program}: {e}"))?;
    let pid = i32::try_from(child.id()).map_err(|e| e.to_string())?;
    let mut status = 0;
    let mut usage = Rusage {
        utime: Timeval { sec: 0, usec: 0 },
        stime: Timeval { sec: 0, usec: 0 },
        maxrss: 0,
        rest: [0; 13],
    };
    // SAFETY: `status` and `usage` are valid, writable and laid out as the kernel expects.
    let got = unsafe { wait4(pid, &mut status, 0, &mut usage) };
    if got != pid {
        return Err(format!(
            "rusage: wait4 failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok((status, usage))
}

/// The shell's convention: the exit code, or 128 + the signal that killed it.
fn exit_code(status: i32) -> u8 {
    let code = if status & 0x7f == 0 {
        (status >> 8) & 0xff
    } else {
        128 + (status & 0x7f)
    };
    u8::try_from(code).unwrap_or(255)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: rusage OUT_FILE PROGRAM [ARGS...]");
        return ExitCode::from(125);
    }
    match run(&args[1], &args[2..]) {
        Ok((status, u)) => {
            let line = format!("{} {} {}\n", micros(&u.utime), micros(&u.stime), u.maxrss);
            if let Err(e) = std::fs::write(&args[0], line) {
                eprintln!("rusage: cannot write {}: {e}", args[0]);
                return ExitCode::from(125);
            }
            ExitCode::from(exit_code(status))
        }
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::from(125)
        }
    }
}
