//! The `corral` binary: the bundled JWT app served by the corral master.

fn main() -> std::process::ExitCode {
    corral::Server::new(corral::app::boot)
        .hooks(corral::app::HOOKS)
        .run()
}
