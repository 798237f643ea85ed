#![doc = include_str!("../README.md")]

mod cron_expr;
mod due;
mod error;
mod local;
mod misfire;
mod once;
mod recurring;
mod request;
mod wall;

pub use chrono_tz::Tz;
pub use due::{
    Clock, Due, DueKind, DueLoop, DueLoopConfig, DueSource, Heartbeat, SystemClock, Wakeup,
};
pub use error::CronError;
pub use local::{parse_zone, resolve_local};
pub use misfire::{CATCH_UP_COUNT_CAP, CatchUp, catch_up};
pub use once::OnceSchedule;
pub use recurring::{CronSchedule, Occurrences};
pub use request::{ScheduleContext, ScheduleRequest, parse_schedule};
pub use rpa_validation::{FieldError, FieldErrorKind, FieldErrors};
