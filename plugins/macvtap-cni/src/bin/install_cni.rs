//! `install-cni`: see `macvtap_cni::install`.

use std::process::ExitCode;

use macvtap_cni::install::{self, Action};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let done = install::parse(&args).and_then(|action| match action {
        Action::Idle => install::idle(),
        Action::Install { sources, dest } => {
            for path in install::install(&sources, &dest)? {
                println!("installed {}", path.display());
            }
            Ok(())
        }
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("install-cni: {e}");
            ExitCode::FAILURE
        }
    }
}
