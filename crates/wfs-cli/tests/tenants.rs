//! `wfs tenants`: parsing, setting a mode and listing, on the in-memory definitions table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use wfs_cli::CliError;

use clap::Parser;
use schedule_core::adapters::memory::InMemoryDefinitionSource;
use schedule_core::model::{TenantId, TenantMode, Timestamp};
use schedule_core::ports::{DefinitionSource, TenantModes};
use wfs_cli::tenants::{TenantsArgs, TenantsCommand, render_list, set_mode};

#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, clap::Subcommand)]
enum Top {
    Tenants(TenantsArgs),
}

fn parse(args: &[&str]) -> Result<TenantsArgs, clap::Error> {
    Cli::try_parse_from(["wfs", "tenants"].iter().chain(args)).map(|c| match c.command {
        Top::Tenants(t) => t,
    })
}

#[test]
fn the_command_line_names_a_bad_mode_and_takes_the_good_ones() {
    let ok = parse(&["mode", "acme", "shadow", "--table", "defs"]).unwrap();
    assert!(
        matches!(&ok.command, TenantsCommand::Mode { tenant, mode } if tenant == "acme" && *mode == TenantMode::Shadow)
    );
    assert_eq!(ok.table.as_deref(), Some("defs"));
    let err = parse(&["mode", "acme", "on"]).unwrap_err();
    assert!(
        err.to_string().contains("expected off, shadow or active"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
    assert!(matches!(
        parse(&["list", "--json"]).unwrap().command,
        TenantsCommand::List { json: true }
    ));
}

#[tokio::test]
async fn modes_are_set_listed_and_kept_out_of_the_definitions() {
    let source = InMemoryDefinitionSource::new();
    let at = Timestamp::parse("2026-11-26T09:00:00Z").unwrap();
    assert_eq!(
        set_mode(&source, "acme", TenantMode::Shadow, at)
            .await
            .unwrap(),
        "acme: default -> shadow"
    );
    assert_eq!(
        set_mode(&source, "acme", TenantMode::Active, at)
            .await
            .unwrap(),
        "acme: shadow -> active"
    );
    set_mode(&source, "globex", TenantMode::Off, at)
        .await
        .unwrap();
    let bad = set_mode(&source, "a#b", TenantMode::Off, at)
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, CliError::Usage(m) if m.contains("a#b")),
        "{bad:?}"
    );
    assert_eq!(
        source
            .stored_mode(&TenantId::parse("acme").unwrap())
            .await
            .unwrap(),
        Some(TenantMode::Active)
    );

    let listed = source.modes().await.unwrap();
    let table = render_list(&listed, false);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["TENANT", "MODE", "UPDATED_AT"],
            vec!["acme", "active", "2026-11-26T09:00:00Z"],
            vec!["globex", "off", "2026-11-26T09:00:00Z"],
        ]
    );
    let json: serde_json::Value = serde_json::from_str(&render_list(&listed, true)).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"tenant_id": "acme", "mode": "active", "updated_at": "2026-11-26T09:00:00Z"},
            {"tenant_id": "globex", "mode": "off", "updated_at": "2026-11-26T09:00:00Z"}
        ])
    );
    // The settings rows are no definitions.
    let scanned = schedule_core::ports::scan_definitions(&source, 2)
        .await
        .unwrap();
    assert!(scanned.is_empty());
    assert!(source.get_many(&[]).await.unwrap().is_empty());
}
