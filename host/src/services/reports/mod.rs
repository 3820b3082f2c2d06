//! Weekly behaviour reports (DESIGN.md, "Weekly behaviour reports"): made from the store's
//! facts by `warden-analytics` (`weekly`), kept and announced on a schedule, and rendered as
//! self-contained HTML with SVG charts, Markdown, or CSV per table.

pub mod csv;
pub mod html;
pub mod markdown;
pub mod svg;
mod weekly;

pub use weekly::{
    AgentOverview, Format, Rendered, Reports, ReportsConfig, Schedule, render, scope_of,
};
