//! `secnet`: the command line. `cli` holds the flags and one `run` per subcommand.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    secnet::term::init(cli.verbose, cli.quiet);
    let code = cli.run();
    // The run ids' liveness markers go with the process: a run leaves no file.
    secnet::clean::forget_live();
    code
}
