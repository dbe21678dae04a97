//! `aimbus dlq list|replay`: the dead-letter queue for people and scripts.

use aimbus_amqp::{DeadLetters, Names, Selection};
use aimbus_core::Config;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use lapin::{Connection, ConnectionProperties};
use serde_json::json;

use crate::cli::DlqCommand;

pub fn run(config: &Config, command: DlqCommand) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async move {
        let connection =
            Connection::connect(&config.amqp().url, ConnectionProperties::default()).await?;
        let dead = DeadLetters::open(&connection, Names::new(&config.amqp().namespace)).await?;
        match command {
            DlqCommand::List { limit, output } => {
                let letters = dead.list(limit).await?;
                if output.json {
                    let rows: Vec<_> = letters
                        .iter()
                        .map(|d| {
                            json!({
                                "message_id": d.message_id, "reason": d.reason,
                                "message_type": d.message_type, "source": d.source,
                                "age_seconds": d.age.map(|a| a.as_secs()), "bytes": d.bytes,
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    let mut table = Table::new();
                    table
                        .load_preset(UTF8_FULL_CONDENSED)
                        .set_content_arrangement(ContentArrangement::Dynamic)
                        .set_header(vec![
                            "MESSAGE ID",
                            "REASON",
                            "TYPE",
                            "SOURCE",
                            "AGE",
                            "BYTES",
                        ]);
                    let dash = || "—".to_owned();
                    for d in &letters {
                        table.add_row(vec![
                            d.message_id.clone().unwrap_or_else(dash),
                            d.reason.clone(),
                            d.message_type.clone().unwrap_or_else(dash),
                            d.source.clone().unwrap_or_else(dash),
                            d.age.map_or_else(dash, |a| format!("{}s", a.as_secs())),
                            d.bytes.to_string(),
                        ]);
                    }
                    println!("{table}\n{} dead letters", letters.len());
                }
            }
            DlqCommand::Replay { all, id, limit } => {
                let selection = if all {
                    Selection::All
                } else {
                    Selection::Ids(id)
                };
                let replayed = dead.replay(&selection, limit).await?;
                println!("replayed {replayed} dead letters to the ingress");
            }
        }
        Ok(())
    })
}
