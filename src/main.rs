//! The `corral` binary: the bundled JWT app served by the corral core.

fn main() -> std::process::ExitCode {
    corral::Server::new(corral::app::jwt()).run()
}
