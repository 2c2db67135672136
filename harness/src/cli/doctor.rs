//! `secnet doctor`: what this machine has and lacks, and `--fix` to install it.

use std::process::ExitCode;

use super::{could_not_run, exit_code};

#[derive(clap::Args)]
pub(crate) struct DoctorArgs {
    /// Install the missing Debian/Ubuntu packages.
    #[arg(long)]
    fix: bool,
}

pub fn run(args: DoctorArgs) -> ExitCode {
    let checks = secnet::doctor::checks();
    let (text, ok) = secnet::doctor::render(&checks);
    print!("{text}");
    if !args.fix {
        return exit_code(ok);
    }
    match secnet::doctor::fix(&checks) {
        Ok(p) if p.is_empty() => {
            println!("nothing to install");
            exit_code(ok)
        }
        Ok(p) => {
            println!("installed {}; checking again", p.join(" "));
            let (text, ok) = secnet::doctor::render(&secnet::doctor::checks());
            print!("{text}");
            exit_code(ok)
        }
        Err(e) => could_not_run("doctor", e),
    }
}
