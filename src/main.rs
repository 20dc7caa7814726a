//! The `driftscope` binary: parses arguments, calls the library, writes outputs, sets the exit
//! code (0 success, 1 accuracy regression for `check`, 2 usage or input error).

mod cli;
mod commands;
mod options;
mod progress;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compare(a) => commands::compare(a),
        Command::Bisect(a) => commands::bisect(a),
        Command::Replay(a) => commands::replay(a),
        Command::Check(a) => commands::check(a),
        Command::Baseline(a) => commands::baseline(a),
        Command::Trend(a) => commands::trend(a),
        Command::Report(a) => commands::report(a),
        Command::Plot(a) => commands::plot(a),
        Command::Export(a) => commands::export(a),
        Command::Merge(a) => commands::merge(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("driftscope: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
