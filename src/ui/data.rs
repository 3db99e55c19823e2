//! The data: every table with its stored snapshots (as-of date, rows, file
//! hash, the expectations they met) and what the plan would load next; every
//! feature view with its online watermark and how fresh it is.

use maud::{Markup, html};

use super::layout::{self, Section};
use super::{Ui, UiError};
use crate::kinds::feature_view::{FeatureView, parse_ttl};
use crate::kinds::table::Table;
use crate::plan::Action;
use crate::store::state::Condition;

/// Whole days from a `YYYY-MM-DD` date to today (UTC), if it parses.
fn age_days(date: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some((chrono::Utc::now().date_naive() - d).num_days())
}

/// The data page.
pub async fn page(ui: &Ui) -> Result<Markup, UiError> {
    let s = ui.snapshot().await?;
    let pending = |id: &crate::spec::ResourceId| {
        s.plan
            .resources
            .iter()
            .find(|p| &p.id == id && p.action != Action::NoOp)
    };
    let tables = s.ws.set.specs::<Table>().map(|(r, t)| {
        let stored = s.observed.tables.get(&t.name.value);
        let mut snapshots: Vec<_> = stored
            .map(|st| st.snapshots.iter().collect())
            .unwrap_or_default();
        snapshots.sort_by(|a, b| a.0.cmp(b.0));
        let expectations: Vec<String> = t.expect.iter().map(|e| e.label()).collect();
        let record = s.observed.records.get(&r.id);
        let plan = pending(&r.id);
        html! {
            section.table data-table=(t.name.value) {
                h2 { "Table " code { (t.name.value) } }
                @if let Some(d) = &t.description { p.desc { (d) } }
                p.muted {
                    (t.columns.len()) " columns · primary key "
                    code { (t.primary_key.iter().map(|k| k.value.as_str()).collect::<Vec<_>>().join(", ")) }
                    " · expectations: "
                    @if expectations.is_empty() { "none" } @else { code { (expectations.join(", ")) } }
                }
                @if let Some(r) = record.filter(|r| r.condition != Condition::Ready) {
                    p.error { (layout::badge(r.condition.as_str(), r.condition.as_str())) " " (crate::spec::env::redact_secrets(&r.message)) }
                }
                @if let Some(p) = plan {
                    p { (layout::badge("pending", p.action.verb())) " " (p.reasons.join("; ")) }
                }
                @if snapshots.is_empty() {
                    p.muted { "No snapshot stored yet." }
                } @else {
                    table.snapshots {
                        thead { tr {
                            th { "As of" } th.num { "Rows" } th { "File hash" } th { "Source" }
                            th { "Loaded" } th { "Expectations" }
                        } }
                        tbody {
                            @for (as_of, snap) in &snapshots {
                                tr data-as-of=(as_of) data-rows=(snap.row_count) {
                                    td.mono { (as_of) }
                                    td.num { (snap.row_count) }
                                    td { (layout::hash(&snap.file_hash)) }
                                    td { code { (snap.source) } }
                                    td.mono { (layout::time(snap.loaded_ms)) }
                                    td {
                                        (layout::badge("ok", "met"))
                                        " " (expectations.len()) " of " (expectations.len())
                                        span.desc { "checked before storing (hash " (layout::hash(&snap.expect_hash)) ")" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    let tables: Vec<Markup> = tables.collect();
    let views: Vec<Markup> = s
        .ws
        .set
        .specs::<FeatureView>()
        .map(|(r, v)| {
            let online = s.observed.online.get(&v.name.value);
            let newest = s
                .observed
                .tables
                .get(&v.table.value)
                .and_then(|t| t.snapshots.keys().max().cloned());
            let ttl_days = parse_ttl(&v.ttl.value).map(|d| d.num_days());
            let freshness = match (online, &newest) {
                (None, _) if !v.online => html! { (layout::badge("absent", "offline only")) },
                (None, _) => html! { (layout::badge("pending", "not materialized")) },
                (Some(o), Some(n)) if o.watermark == *n => {
                    html! { (layout::badge("ok", "up to date")) }
                }
                (Some(_), Some(n)) => {
                    html! { (layout::badge("pending", "behind")) " newest snapshot " (n) }
                }
                (Some(_), None) => html! { (layout::badge("absent", "no source snapshot")) },
            };
            let plan = pending(&r.id);
            html! {
                tr data-view=(v.name.value) data-watermark=[online.map(|o| o.watermark.as_str())] {
                    td {
                        code { (v.name.value) }
                        @if let Some(d) = &v.description { span.desc { (d) } }
                    }
                    td { (v.entity.value) }
                    td { code { (v.table.value) } }
                    td.num { (v.features.len()) }
                    td.mono { (v.ttl.value) }
                    td.mono { (online.map_or("—", |o| o.watermark.as_str())) }
                    td.num { (online.map_or("—".to_string(), |o| o.entity_count.to_string())) }
                    td {
                        (freshness)
                        @if let (Some(o), Some(ttl)) = (online, ttl_days) {
                            @if let Some(age) = age_days(&o.watermark) {
                                span.desc { "watermark " (age) " days old; ttl " (ttl) " days" }
                            }
                        }
                        @if let Some(p) = plan { span.desc { "plan: " (p.reasons.join("; ")) } }
                    }
                }
            }
        })
        .collect();
    let body = html! {
        h2 { "Feature views" }
        @if views.is_empty() {
            p.muted { "No feature views." }
        } @else {
            table.views {
                thead { tr {
                    th { "View" } th { "Entity" } th { "Table" } th.num { "Features" } th { "TTL" }
                    th { "Watermark" } th.num { "Entities online" } th { "Freshness" }
                } }
                tbody { @for v in views { (v) } }
            }
        }
        @for t in tables { (t) }
    };
    Ok(layout::page(
        "Data",
        Section::Data,
        Some(30),
        &s.ws.set.project.name.value,
        body,
    ))
}
