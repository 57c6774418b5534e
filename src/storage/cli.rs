//! `corral migrate …`.
pub fn run(_m: &clap::ArgMatches) -> u8 {
    0
}
