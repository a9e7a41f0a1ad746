//! The operator's loop through the binary against the emulator (moto):
//! `scripts/with-emulator.sh cargo test -p wfs-cli --test emulator`. Skipped when
//! AWS_ENDPOINT_URL is unset, unless WFS_REQUIRE_EMULATOR=1 (then it fails).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::process::Command;

use serde_json::{Value, json};

struct Wfs {
    env: HashMap<String, String>,
}

impl Wfs {
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_wfs"))
            .args(args)
            .envs(&self.env)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.run(args);
        assert_eq!(code, 0, "wfs {args:?}: {stderr}");
        stdout
    }

    fn json_lines(&self, args: &[&str]) -> Vec<Value> {
        self.ok(args)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn emulator() -> Option<Wfs> {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        assert!(
            std::env::var_os("WFS_REQUIRE_EMULATOR").is_none(),
            "WFS_REQUIRE_EMULATOR is set but AWS_ENDPOINT_URL is not"
        );
        eprintln!("skipped: no emulator (scripts/with-emulator.sh)");
        return None;
    }
    let prefix = format!("wfs-cli-{}", std::process::id());
    let setup = Wfs {
        env: HashMap::new(),
    };
    let exports = setup.ok(&["setup-local", "--prefix", &prefix]);
    let env = exports
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Some(Wfs { env })
}

#[test]
fn definitions_backfill_plan_explain_export_status_and_dlq_against_the_emulator() {
    let Some(wfs) = emulator() else { return };
    let dir = std::env::temp_dir().join(format!("wfs-emulator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("defs.jsonl");
    let water = json!({"tenant_id": "acme", "device_workflow_step_id": "water", "workflow_id": "w", "device_id": "valve-1",
        "enabled": true, "version": 1, "schedule": {"type": "rate", "every": "1h", "start": "2030-01-01T00:00:00Z"},
        "payload": {"action": "open"}});
    let open = json!({"tenant_id": "beta", "device_workflow_step_id": "open", "workflow_id": "w", "device_id": "gate-1",
        "enabled": true, "version": 1, "schedule": {"type": "once", "at": "2030-01-01T03:00:00Z"}, "payload": {}});
    std::fs::write(&file, format!("{water}\n{open}\n")).unwrap();
    let path = file.to_str().unwrap();

    assert_eq!(
        wfs.ok(&["definitions", "put", path]),
        "2 written, 0 rejected\n"
    );
    // The same file again: each is written above the stored version.
    let again = wfs.json_lines(&["definitions", "put", path, "--json"]);
    assert!(again.iter().all(|o| o["version"] == 2), "{again:?}");
    let listed = wfs.json_lines(&["definitions", "list", "--json"]);
    assert_eq!(listed.len(), 2);

    let range = [
        "--from",
        "2030-01-01T00:00:00Z",
        "--to",
        "2030-01-01T06:00:00Z",
    ];
    let mut args = vec!["backfill", "--json"];
    args.extend(range);
    let first: Value = serde_json::from_str(&wfs.ok(&args)).unwrap();
    assert_eq!(first["created"], 7, "{first}");
    let second: Value = serde_json::from_str(&wfs.ok(&args)).unwrap();
    assert_eq!(
        (second["created"].clone(), second["already_present"].clone()),
        (json!(0), json!(7)),
        "{second}"
    );

    let plan: Vec<Value> = serde_json::from_str(&wfs.ok(&[
        "plan",
        "--tenant",
        "acme",
        "--date",
        "2030-01-01",
        "--json",
    ]))
    .unwrap();
    let times: Vec<&str> = plan
        .iter()
        .map(|r| r["scheduled_time"].as_str().unwrap())
        .collect();
    assert_eq!(
        times,
        [
            "2030-01-01T00:00:00Z",
            "2030-01-01T01:00:00Z",
            "2030-01-01T02:00:00Z",
            "2030-01-01T03:00:00Z",
            "2030-01-01T04:00:00Z",
            "2030-01-01T05:00:00Z"
        ]
    );
    assert!(
        plan.iter()
            .all(|r| r["status"] == "PENDING" && r["definition_version"] == 2)
    );
    let text = wfs.ok(&["plan", "--tenant", "acme", "--date", "2030-01-01"]);
    assert!(text.contains("02:00:00  water  valve-1  PENDING"), "{text}");

    let story = wfs.ok(&[
        "explain",
        "--tenant",
        "acme",
        "--step",
        "water",
        "--at",
        "2030-01-01T02:00:00Z",
    ]);
    assert!(
        story.contains("from definition version 2") && story.contains("still yields this time"),
        "{story}"
    );
    let (code, _, stderr) = wfs.run(&[
        "explain",
        "--tenant",
        "acme",
        "--step",
        "water",
        "--at",
        "2030-01-01T02:30:00Z",
    ]);
    assert_eq!(code, 1, "{stderr}");

    let mut args = vec!["export"];
    args.extend(range);
    let records = wfs.json_lines(&args);
    assert_eq!(records.len(), 7);
    assert!(
        records.iter().all(|r| r["mode"] == "active"
            && r["status"] == "PENDING"
            && r.get("sent_at").is_none())
    );
    assert_eq!(
        records.iter().filter(|r| r["tenant_id"] == "beta").count(),
        1
    );

    let status: Value = serde_json::from_str(&wfs.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["totals"]["PENDING"], 7, "{status}");
    assert_eq!(status["queues"].as_array().unwrap().len(), 2, "{status}");
    assert_eq!(status["queues"][1]["depth"]["visible"], 0, "{status}");
    let dead: Value = serde_json::from_str(&wfs.ok(&["dlq", "list", "--json"])).unwrap();
    assert_eq!(dead["entries"], json!([]));

    // Two dead execution messages and one that is not: list them (hidden 1 s only), then
    // redrive twice; each goes back to the execution queue once, the bad one is left.
    let dlq_url = wfs.env["EXECUTION_DLQ_URL"].clone();
    let bodies: Vec<String> = plan[..2]
        .iter()
        .map(|r| {
            let at = r["scheduled_time"].as_str().unwrap();
            json!({"v": 1, "PK": "TENANT#acme#DATE#2030-01-01", "SK": format!("TIME#{at}#STEP#water"), "scheduled_time": at}).to_string()
        })
        .chain(["not an execution message".to_owned()])
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            for body in &bodies {
                sqs.send_message()
                    .queue_url(&dlq_url)
                    .message_body(body)
                    .send()
                    .await
                    .unwrap();
            }
        });
    let listed: Value =
        serde_json::from_str(&wfs.ok(&["dlq", "list", "--json", "--visibility", "1"])).unwrap();
    assert_eq!(listed["entries"].as_array().unwrap().len(), 3, "{listed}");
    let text = wfs.ok(&["dlq", "list", "--visibility", "1"]);
    assert!(text.is_empty() || text.contains("would"), "{text}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (code, stdout, stderr) = wfs.run(&["dlq", "redrive"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.ends_with("2 redriven, 1 left in the DLQ\n"),
        "{stdout}"
    );
    let (_, stdout, _) = wfs.run(&["dlq", "redrive"]);
    assert!(stdout.starts_with("0 redriven"), "{stdout}");
    let status: Value = serde_json::from_str(&wfs.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["queues"][0]["name"], "execution");
    assert_eq!(status["queues"][0]["depth"]["visible"], 2, "{status}");

    let disabled: Value = serde_json::from_str(&wfs.ok(&[
        "definitions",
        "disable",
        "--tenant",
        "acme",
        "--step",
        "water",
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        disabled,
        json!({"tenant_id": "acme", "device_workflow_step_id": "water", "version": 3, "enabled": false})
    );
    let got: Value = serde_json::from_str(&wfs.ok(&[
        "definitions",
        "get",
        "--tenant",
        "acme",
        "--step",
        "water",
    ]))
    .unwrap();
    assert_eq!(
        (got["enabled"].clone(), got["version"].clone()),
        (json!(false), json!(3))
    );
    wfs.ok(&[
        "definitions",
        "delete",
        "--tenant",
        "acme",
        "--step",
        "water",
    ]);
    let (code, _, stderr) = wfs.run(&["definitions", "get", "--tenant", "acme", "--step", "water"]);
    assert!(
        code == 1 && stderr.contains("no definition acme/water"),
        "{stderr}"
    );
}
