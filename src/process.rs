//! What every binary does before and after its server: the allocator, the
//! log, the settings from flags and environment, and the exit code.

use std::future::Future;
use std::net::TcpListener;

use clap::Parser;
use ibl_edge::server::{Running, Settings};
use tracing_subscriber::EnvFilter;

/// mimalloc: per-thread free lists, so the two actix workers do not contend
/// on the allocator (malloc/free were ~10 % of a permission check's CPU).
/// Built without its advice for transparent huge pages (feature `no_thp`):
/// memory it frees goes back to the system in 4 KiB pages, not kept
/// resident in 2 MiB ones. (Where the kernel's THP mode is `always`, the
/// kernel still uses them; `madvise` is the common default.)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option `purge_delay`: its place in `mi_option_t` (the same
/// in `mimalloc.h` of v2 and v3; the crate names only some options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long memory freed stays resident before mimalloc returns it to the
/// system, in milliseconds (ten times that for its arena). Its default,
/// 1,000 ms, kept the peak of a bulk fill resident: 1,000,000 assertions
/// issued in requests of 5,000 ended at 254-255 MiB, and at 159-174 MiB
/// with 100 ms, at the same rate. `MIMALLOC_PURGE_DELAY` overrides it.
const PURGE_DELAY_MS: std::os::raw::c_long = 100;

/// Sets the allocator's options (see [`PURGE_DELAY_MS`]) unless the
/// environment sets them.
#[allow(unsafe_code)]
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` stores a value in mimalloc's table of
        // options; any option below `_mi_option_last` and any value are
        // valid, from any thread, at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
    }
}

/// The allocator's purge delay now, in milliseconds.
#[cfg(test)]
#[allow(unsafe_code)]
fn purge_delay() -> std::os::raw::c_long {
    // SAFETY: reads mimalloc's table of options (see `tune_allocator`).
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
}

/// Sets up the log (to stderr from a thread of its own: a slow reader of
/// stderr never stalls a request; lines beyond a 128k backlog are dropped
/// and counted), runs `main` on an actix system and exits with its code.
pub fn run<F, Fut>(main: F) -> !
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = i32>,
{
    tune_allocator();
    let (writer, flush_on_exit) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(writer)
        .init();
    let code = actix_web::rt::System::new().block_on(main());
    drop(flush_on_exit);
    std::process::exit(code);
}

/// The command line of a split service: the settings and nothing else.
#[derive(Debug, Parser)]
#[command(version)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub settings: Settings,
}

/// Runs one service of the split deployment: parses its settings, binds
/// `IBL_ADDR`, builds it with `build` and serves until SIGTERM.
pub fn service<B, Fut>(name: &'static str, about: &'static str, build: B) -> !
where
    B: FnOnce(Settings, TcpListener) -> Fut,
    Fut: Future<Output = std::io::Result<Running>>,
{
    use clap::{CommandFactory, FromArgMatches};
    let matches = ServiceArgs::command().name(name).about(about).get_matches();
    let args = match ServiceArgs::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    run(|| async move {
        let settings = args.settings;
        let listener = match TcpListener::bind(&settings.addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: binding {}: {e}", settings.addr);
                return 1;
            }
        };
        let addr = settings.addr.clone();
        match build(settings, listener).await {
            Ok(running) => running.until_stopped(&addr).await,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_set_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the operator's value, left as it is
        }
        // Option 15 holds mimalloc's default purge delay (v3: 1,000 ms)
        // until it is set.
        assert_eq!(purge_delay(), 1000);
        tune_allocator();
        assert_eq!(purge_delay(), PURGE_DELAY_MS);
    }
}
