//! The binary's command line and output formats (scripts depend on them).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hyparview-sim");

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("binary runs")
}

#[test]
fn json_output_has_the_documented_keys() {
    for scenario in ["stable", "failure", "churn", "partition", "rollout"] {
        let out = run(&[
            scenario, "--nodes", "40", "--seed", "7", "--rounds", "2", "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
        for key in [
            "scenario",
            "nodes",
            "seed",
            "components",
            "isolated",
            "asymmetric_links",
            "active_view",
            "passive_view",
            "clustering_coefficient",
            "avg_shortest_path",
            "reliability",
            "rounds_to_full_reliability",
            "messages_per_node_per_round",
            "wall_ms",
        ] {
            assert!(v.get(key).is_some(), "{scenario}: missing {key} in {text}");
        }
        assert_eq!(v["scenario"], scenario);
        assert_eq!(v["nodes"], 40);
        assert_eq!(v["seed"], 7);
        for k in ["min", "mean", "max"] {
            assert!(v["active_view"][k].is_number(), "{text}");
        }
        // View size -> node count, over the live nodes.
        for hist in ["active_view_hist", "passive_view_hist"] {
            let h = v[hist].as_object().expect(hist);
            let nodes: u64 = h.values().map(|c| c.as_u64().expect("count")).sum();
            assert_eq!(Some(nodes), v["live_nodes"].as_u64(), "{hist} in {text}");
            let max: u64 = h
                .keys()
                .map(|k| k.parse::<u64>().expect("size"))
                .max()
                .unwrap();
            assert_eq!(Some(max), v[hist.trim_end_matches("_hist")]["max"].as_u64());
        }
        let rel = v["reliability"].as_array().expect("array");
        let expected = if scenario == "partition" { 5 } else { 3 };
        assert_eq!(rel.len(), expected, "{text}");
        if scenario == "partition" {
            assert_eq!(v["components_per_round"].as_array().map(Vec::len), Some(3));
            assert!(v.get("rounds_to_merge").is_some(), "{text}");
        } else {
            assert!(v.get("components_per_round").is_none(), "{text}");
        }
    }
}

#[test]
fn text_output_and_determinism_through_the_binary() {
    let a = run(&[
        "failure", "--nodes", "60", "--seed", "3", "--rounds", "2", "--json",
    ]);
    let b = run(&[
        "failure", "--nodes", "60", "--seed", "3", "--rounds", "2", "--json",
    ]);
    let strip = |o: &std::process::Output| {
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        v.as_object_mut().expect("object").remove("wall_ms");
        v
    };
    assert_eq!(strip(&a), strip(&b));
    let t = run(&["failure", "--nodes", "60", "--seed", "3", "--rounds", "2"]);
    assert!(t.status.success());
    let text = String::from_utf8(t.stdout).expect("utf-8");
    for needle in ["components", "isolated", "reliability", "avg shortest path"] {
        assert!(text.contains(needle), "missing {needle} in {text}");
    }
}

#[test]
fn bad_arguments_are_rejected() {
    for args in [
        &["nonsense"][..],
        &[][..],
        &["stable", "--nodes"][..],
        &["stable", "--nodes", "x"][..],
        &["stable", "--frobnicate", "1"][..],
        &["failure", "--fail", "1.5"][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}
