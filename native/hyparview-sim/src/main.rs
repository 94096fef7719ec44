use hyparview_sim::{parse_args, run, USAGE};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let params = match parse_args(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hyparview-sim: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let report = run(&params);
    if params.json {
        match serde_json::to_string(&report) {
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
