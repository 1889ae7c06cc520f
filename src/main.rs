use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// mimalloc returns freed memory to the system: the parse of a large manifest set is freed
/// once the index is built, and the resident size drops back to what the index holds.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// After each manifest load: the parse allocated many times what the index keeps; hand the
/// free pages back now rather than whenever the allocator next looks at them (measured at
/// 100,000 pods: RSS 1 s after ready was 880 to 950 MB in most runs without this, 90 to
/// 125 MB in the others).
#[allow(unsafe_code)]
fn release_free_memory() {
    // SAFETY: `mi_collect` has no preconditions: any thread may call it at any time, and it
    // only releases memory that no live allocation uses.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// `mi_option_allow_thp` in mimalloc v2's `mimalloc.h` (as `MI_OPTION_PURGE_DELAY` below).
#[cfg(target_os = "linux")]
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 37;

#[cfg(target_os = "linux")]
unsafe extern "C" {
    /// mimalloc v2's `mi_arena_area`: the start and size of arena `id` (1, 2, ...), null past
    /// the last.
    fn mi_arena_area(id: libc::c_int, size: *mut usize) -> *mut libc::c_void;
}

/// Transparent huge pages off for this process (unless `MIMALLOC_ALLOW_THP` is set, which
/// mimalloc then follows), except for memory advised for them: the UDP answer caches
/// (`src/dns/cache.rs`), whose random reads over megabytes missed the TLB on small pages.
/// mimalloc advises its own arenas for THP, and a fault on a huge page zeroes 2 MiB: loading
/// 100,000 pods spent 64 % of its CPU in `clear_page_erms` under `do_huge_pmd_anonymous_page`,
/// and took 2.2 to 2.3 s with them against 0.80 to 0.84 s without (three runs each, same build;
/// see docs/performance.md). So mimalloc is told to advise no more, the arena it reserved
/// before `main` is advised back, and THP is turned off for all memory not advised for it.
/// Kernels before 6.18 know no such exception: THP is then off for all of the process.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn disable_transparent_huge_pages() {
    /// `PR_THP_DISABLE_EXCEPT_ADVISED` of Linux 6.18's `prctl.h` (not in the libc crate).
    const EXCEPT_ADVISED: libc::c_ulong = 1 << 1;
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: mi_option_set writes one integer of mimalloc's option table, which may be set at
    // any time. mi_arena_area only reads mimalloc's arena table, and madvise with
    // MADV_NOHUGEPAGE changes no contents, only how the arena's pages may be backed.
    // PR_SET_THP_DISABLE takes plain integers and sets a flag on this process's memory map.
    // Older kernels refuse the flag (EINVAL), and THP is then turned off whole; on failure THP
    // simply stays as it was.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0);
        for id in 1.. {
            let mut size = 0usize;
            let start = mi_arena_area(id, &mut size);
            if start.is_null() {
                break;
            }
            let _ = libc::madvise(start, size, libc::MADV_NOHUGEPAGE);
        }
        if libc::prctl(
            libc::PR_SET_THP_DISABLE,
            1 as libc::c_ulong,
            EXCEPT_ADVISED,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        ) != 0
        {
            let _ = libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_transparent_huge_pages() {}

/// `mi_option_purge_delay` in mimalloc v2's `mimalloc.h` (the crate exports no constant for
/// it; Cargo.toml pins the v2 sources).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Pages that fall free go back to the system at once instead of 10 ms later. With the delay,
/// the pages the parse freed on other threads stayed resident: at 100,000 materialised
/// identities, RSS 1 s after ready was 35.0 MB on a first start and 73.5 MB on a restart; with
/// purging at once, 32.4 and 30.0 MB (three starts each, docs/performance.md).
#[allow(unsafe_code)]
fn purge_free_pages_at_once() {
    // SAFETY: mi_option_set writes one integer of mimalloc's option table; any value is valid
    // for this option and it may be set at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    purge_free_pages_at_once();
    petdns::source::set_after_load(release_free_memory);
    let cli = petdns::cli::Cli::parse();
    petdns::telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("petdns: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(petdns::commands::run(cli));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("petdns: {e:#}");
            petdns::commands::exit_code(&e).into()
        }
    }
}
