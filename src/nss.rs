//! Name-service sources for the static build. glibc looks users, groups
//! and host names up through the modules `/etc/nsswitch.conf` lists, and a
//! statically linked program can only `dlopen` the host's module
//! libraries (`libnss_systemd`, `libnss_sss`, `libnss_resolve`), each of
//! which brings its own copy of the shared C library into the process.
//! That crashes: `passwd: files systemd` (Debian's default) and a UID
//! without an `/etc/passwd` entry, HOME unset, killed the sidecar with
//! SIGSEGV at its first sync, in gix's home-directory lookup (probe-15
//! F1). So the static build uses the sources glibc has built in, whatever
//! the host's file says: users and groups from `/etc/passwd` and
//! `/etc/group`, host names from `/etc/hosts` and then DNS
//! (`/etc/resolv.conf`). A dynamically linked build loads the host's
//! modules safely and keeps the host's configuration.

/// What each database is looked up in (glibc's nsswitch.conf syntax).
#[cfg(all(target_os = "linux", target_env = "gnu", target_feature = "crt-static"))]
const BUILT_IN: [(&std::ffi::CStr, &std::ffi::CStr); 3] = [
    (c"passwd", c"files"),
    (c"group", c"files"),
    (c"hosts", c"files dns"),
];

#[cfg(all(target_os = "linux", target_env = "gnu", target_feature = "crt-static"))]
#[allow(unsafe_code)]
unsafe extern "C" {
    // glibc's documented override of nsswitch.conf (its manual, "NSS
    // Configuration File"); the libc crate does not declare it.
    fn __nss_configure_lookup(
        database: *const libc::c_char,
        sources: *const libc::c_char,
    ) -> libc::c_int;
}

/// In the static build, looks users, groups and host names up only in the
/// sources glibc has built in (see the module's comment). Call it while
/// the process has one thread: glibc's setting is not synchronised.
pub fn use_built_in_sources() {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_feature = "crt-static"))]
    for (database, sources) in BUILT_IN {
        // SAFETY: both are NUL-terminated static strings, and no other
        // thread exists yet to look anything up meanwhile.
        #[allow(unsafe_code)]
        let status = unsafe { __nss_configure_lookup(database.as_ptr(), sources.as_ptr()) };
        if status != 0 {
            eprintln!(
                "git-sidecar: could not limit {} lookups to {}; the host's name-service modules may be loaded",
                database.to_string_lossy(),
                sources.to_string_lossy()
            );
        }
    }
}
