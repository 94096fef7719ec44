use hyparview_sim::{parse_args, parse_broadcast_args, run, run_broadcast, BROADCAST_USAGE, USAGE};
use serde::Serialize;
use std::fmt::Display;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let broadcast = args.first().is_some_and(|a| a == "broadcast");
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", if broadcast { BROADCAST_USAGE } else { USAGE });
        return ExitCode::SUCCESS;
    }
    // `broadcast` has its own flags and report (see scenarios/broadcast).
    if broadcast {
        return match parse_broadcast_args(&args[1..]) {
            Ok(p) => print(&run_broadcast(&p), p.json),
            Err(e) => {
                eprintln!("hyparview-sim: {e}\n{BROADCAST_USAGE}");
                ExitCode::from(2)
            }
        };
    }
    let params = match parse_args(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hyparview-sim: {e}\n{USAGE}\n{BROADCAST_USAGE}");
            return ExitCode::from(2);
        }
    };
    print(&run(&params), params.json)
}

fn print<R: Serialize + Display>(report: &R, json: bool) -> ExitCode {
    if json {
        match serde_json::to_string(report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("hyparview-sim: cannot encode report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!("{report}");
    }
    ExitCode::SUCCESS
}
