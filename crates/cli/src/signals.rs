//! Ctrl-C and SIGTERM: the first stops the run gracefully (partial report,
//! exit 130); a second one exits at once (interval files are already on disk).

use chokepoint_engine::StopSignal;

/// Makes SIGINT and SIGTERM trigger `stop`.
pub fn stop_on_signals(stop: &StopSignal) {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
            return;
        };
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = 0;
            for _ in signals.forever() {
                seen += 1;
                if seen == 1 {
                    eprintln!("stopping: finishing in-flight requests (press Ctrl-C again to quit at once)");
                    stop.stop();
                } else {
                    std::process::exit(crate::run_cmd::EXIT_INTERRUPTED);
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = stop;
}
