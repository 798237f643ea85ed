//! What the server does in the background, beside answering requests: sending due jobs to
//! robots, firing recurring schedules, writing package files, retention, the live event stream,
//! alerts, webhook deliveries, and this instance's lease among several.

pub(crate) mod alerts;
pub(crate) mod committed;
pub(crate) mod dispatch;
pub(crate) mod event_hub;
pub(crate) mod instance;
pub(crate) mod package_files;
pub(crate) mod recurring_jobs;
pub(crate) mod retention;
pub(crate) mod webhooks;
