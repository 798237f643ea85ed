//! Crontab syntax in, `cron` 0.17 (Quartz) schedules out, iterated on the wall clock.
//!
//! The `cron` crate reads seconds first, numbers days of the week 1 = Sunday, and ANDs
//! day-of-month with day-of-week. Users write crontab: 0 or 7 = Sunday, and a day matches when
//! EITHER restricted day field matches. So the day-of-week field is expanded here into a set of
//! days and handed over as names (`SUN,TUE`), which have one meaning in both worlds, and a
//! schedule that restricts both day fields becomes two schedules whose occurrences are merged.

use std::str::FromStr;

use crate::error::CronError;

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const FULL_DAY_NAMES: [&str; 7] = [
    "SUNDAY",
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
];
const FIELD_NAMES: [&str; 6] = [
    "seconds",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
];

/// Longer than any sensible expression; keeps the work per request bounded.
const MAX_EXPRESSION_LEN: usize = 1024;

/// Translates a crontab expression (5 fields, 6 with leading seconds, or a macro) into one or
/// two Quartz expressions for the `cron` crate. Two means "day-of-month OR day-of-week".
pub(crate) fn translate(expression: &str) -> Result<Vec<String>, CronError> {
    let expression = expression.trim();
    if expression.is_empty() {
        return Err(syntax("the expression is empty"));
    }
    if expression.len() > MAX_EXPRESSION_LEN {
        return Err(syntax(format!(
            "the expression is longer than {MAX_EXPRESSION_LEN} characters"
        )));
    }
    let expanded;
    let source = if expression.starts_with('@') {
        expanded = expand_macro(expression)?;
        expanded
    } else {
        expression
    };
    let mut fields: Vec<&str> = source.split_whitespace().collect();
    match fields.len() {
        5 => fields.insert(0, "0"),
        6 => {}
        found => return Err(CronError::WrongFieldCount { found }),
    }
    reject_quartz_tokens(&fields)?;
    for (index, field) in fields.iter().enumerate().take(3) {
        if field.contains('?') {
            return Err(syntax(format!(
                "`?` is only allowed in the day fields, not in the {} field `{field}`",
                FIELD_NAMES[index]
            )));
        }
    }
    if fields[4].contains('?') {
        return Err(syntax(format!(
            "`?` is only allowed in the day fields, not in the month field `{}`",
            fields[4]
        )));
    }

    let (seconds, minutes, hours, dom, month, dow) = (
        fields[0], fields[1], fields[2], fields[3], fields[4], fields[5],
    );
    let dom_any = matches!(dom, "*" | "?");
    let dow_any = matches!(dow, "*" | "?");
    let dom = if dom_any { "*" } else { dom };
    let dow_names = if dow_any {
        "*".to_owned()
    } else {
        // Report fields in reading order: an earlier bad field wins over the day of week.
        let days =
            expand_day_of_week(dow).map_err(|error| first_field_error(&fields).unwrap_or(error))?;
        day_names(days)
    };

    let parts = if !dom_any && !dow_any {
        vec![
            format!("{seconds} {minutes} {hours} {dom} {month} *"),
            format!("{seconds} {minutes} {hours} * {month} {dow_names}"),
        ]
    } else {
        vec![format!(
            "{seconds} {minutes} {hours} {dom} {month} {dow_names}"
        )]
    };
    for part in &parts {
        if let Err(error) = cron::Schedule::from_str(part) {
            return Err(first_field_error(&fields)
                .unwrap_or_else(|| syntax(crate_reason(&error.to_string()))));
        }
    }
    Ok(parts)
}

pub(crate) fn syntax(reason: impl Into<String>) -> CronError {
    CronError::Syntax {
        reason: reason.into(),
    }
}

fn expand_macro(expression: &str) -> Result<&'static str, CronError> {
    Ok(match expression.to_ascii_lowercase().as_str() {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        _ => {
            return Err(syntax(format!(
                "`{expression}` is not a supported macro (use @hourly, @daily, @midnight, \
                 @weekly, @monthly, @yearly or @annually)"
            )));
        }
    })
}

fn reject_quartz_tokens(fields: &[&str]) -> Result<(), CronError> {
    if fields.iter().any(|field| field.contains('#')) {
        return Err(syntax(
            "`#` (nth weekday of the month) is a Quartz extension and is not supported",
        ));
    }
    let dom = fields[3].to_ascii_uppercase();
    if dom.contains('L') || dom.contains('W') {
        return Err(syntax(format!(
            "`L` and `W` in the day-of-month field (`{}`) are Quartz extensions and are not \
             supported",
            fields[3]
        )));
    }
    Ok(())
}

/// The `cron` crate reports errors without saying which field; retry each field alone (the
/// others `*`) to name it.
fn first_field_error(fields: &[&str]) -> Option<CronError> {
    (0..5).find_map(|index| {
        let probe: Vec<&str> = (0..6)
            .map(|i| if i == index { fields[i] } else { "*" })
            .collect();
        let error = cron::Schedule::from_str(&probe.join(" ")).err()?;
        let reason = crate_reason(&error.to_string());
        let (name, text) = (FIELD_NAMES[index], fields[index]);
        Some(syntax(if reason.is_empty() {
            format!("the {name} field `{text}` is invalid")
        } else {
            format!("the {name} field `{text}` is invalid: {reason}")
        }))
    })
}

/// The `cron` crate's message without its echo of the input and caret line, with its
/// off-by-one wording fixed ("Minutes must be less than 59" means at most 59).
fn crate_reason(message: &str) -> String {
    message
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .replace(" must be less than ", " must be at most ")
}

/// Expands a crontab day-of-week field into a bit set (bit 0 = Sunday ... bit 6 = Saturday).
/// Numbers 0-7 (0 and 7 are Sunday), names (`sun`, `Monday`), ranges, lists, steps.
pub(crate) fn expand_day_of_week(field: &str) -> Result<u8, CronError> {
    let mut days = 0u8;
    for item in field.split(',') {
        if item.is_empty() {
            return Err(syntax(format!(
                "the day-of-week field `{field}` has an empty list item"
            )));
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(parse_step(step, item)?)),
            None => (item, None),
        };
        let (first, last) = if matches!(base, "*" | "?") {
            (0, 6)
        } else if let Some((from, to)) = base.split_once('-') {
            let first = day_value(from, item)?;
            let mut last = day_value(to, item)?;
            if last == 0 && first > 0 && to.chars().all(|c| c.is_ascii_alphabetic()) {
                // `FRI-SUN`: a range that ends on Sunday by name means through the weekend.
                last = 7;
            }
            if first > last {
                return Err(syntax(format!(
                    "the day-of-week range `{base}` runs backwards (write it as `{from}-7` \
                     or split it into a list)"
                )));
            }
            (first, last)
        } else {
            let first = day_value(base, item)?;
            // `N/step` means from N through Saturday (or just Sunday for 7/step).
            let last = if step.is_some() { first.max(6) } else { first };
            (first, last)
        };
        let step = step.unwrap_or(1);
        let mut day = first;
        while day <= last {
            days |= 1 << (day % 7);
            day = day.saturating_add(step);
        }
    }
    Ok(days)
}

fn parse_step(step: &str, item: &str) -> Result<u32, CronError> {
    let digits = !step.is_empty() && step.chars().all(|c| c.is_ascii_digit());
    match step.parse::<u32>() {
        Ok(step) if digits && step >= 1 => Ok(step),
        _ => Err(syntax(format!(
            "the step in the day-of-week item `{item}` must be a whole number of at least 1"
        ))),
    }
}

fn day_value(token: &str, item: &str) -> Result<u32, CronError> {
    if !token.is_empty() && token.chars().all(|c| c.is_ascii_digit()) {
        return match token.parse::<u32>() {
            Ok(day) if day <= 7 => Ok(day),
            _ => Err(syntax(format!(
                "day of week `{token}` does not exist (0-7, where 0 and 7 are Sunday)"
            ))),
        };
    }
    let upper = token.to_ascii_uppercase();
    let position = DAY_NAMES
        .iter()
        .position(|name| *name == upper)
        .or_else(|| FULL_DAY_NAMES.iter().position(|name| *name == upper));
    match position {
        Some(day) => Ok(day as u32),
        None if upper.ends_with('L') => Err(syntax(format!(
            "`L` in the day-of-week item `{item}` is a Quartz extension and is not supported"
        ))),
        None => Err(syntax(format!(
            "`{token}` in the day-of-week item `{item}` is not a day of the week (0-7 or \
             SUN-SAT)"
        ))),
    }
}

fn day_names(days: u8) -> String {
    DAY_NAMES
        .iter()
        .enumerate()
        .filter(|(day, _)| days & (1 << day) != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(field: &str) -> String {
        day_names(expand_day_of_week(field).unwrap())
    }

    #[test]
    fn day_of_week_table() {
        let cases = [
            ("1-5", "MON,TUE,WED,THU,FRI"),
            ("0", "SUN"),
            ("7", "SUN"),
            ("5-7", "SUN,FRI,SAT"),
            ("*/2", "SUN,TUE,THU,SAT"),
            ("?/2", "SUN,TUE,THU,SAT"),
            ("1-5/2", "MON,WED,FRI"),
            ("1/2", "MON,WED,FRI"),
            ("MON-FRI", "MON,TUE,WED,THU,FRI"),
            ("sun", "SUN"),
            ("Mon,wed", "MON,WED"),
            ("FRI-SUN", "SUN,FRI,SAT"),
            ("saturday", "SAT"),
            ("0,7", "SUN"),
            ("6,0-1", "SUN,MON,SAT"),
            ("0-7", "SUN,MON,TUE,WED,THU,FRI,SAT"),
            ("1/4294967295", "MON"),
        ];
        for (field, expected) in cases {
            assert_eq!(names(field), expected, "day-of-week `{field}`");
        }
    }

    #[test]
    fn day_of_week_errors() {
        for field in [
            "8", "5-2", "MON-", "", "1,,2", "FUNDAY", "*/0", "*/x", "5L", "L", "*/-1",
        ] {
            assert!(
                matches!(expand_day_of_week(field), Err(CronError::Syntax { .. })),
                "`{field}` should be refused"
            );
        }
        let Err(CronError::Syntax { reason }) = expand_day_of_week("5L") else {
            panic!("5L must fail");
        };
        assert!(reason.contains("not supported"), "{reason}");
    }

    #[test]
    fn translation_table() {
        let cases: [(&str, &[&str]); 12] = [
            ("30 2 * * *", &["0 30 2 * * *"]),
            ("0 9 * * 1-5", &["0 0 9 * * MON,TUE,WED,THU,FRI"]),
            ("0 9 * * 0", &["0 0 9 * * SUN"]),
            ("0 9 * * 7", &["0 0 9 * * SUN"]),
            ("*/10 0 9 ? * 1", &["*/10 0 9 * * MON"]),
            ("0 0 1 * MON", &["0 0 0 1 * *", "0 0 0 * * MON"]),
            ("  15  10 * JAN,jul sun ", &["0 15 10 * JAN,jul SUN"]),
            ("@daily", &["0 0 0 * * *"]),
            ("@WEEKLY", &["0 0 0 * * SUN"]),
            ("@yearly", &["0 0 0 1 1 *"]),
            ("@hourly", &["0 0 * * * *"]),
            ("@monthly", &["0 0 0 1 * *"]),
        ];
        for (expression, expected) in cases {
            assert_eq!(translate(expression).unwrap(), expected, "`{expression}`");
        }
    }

    #[test]
    fn translation_errors() {
        assert_eq!(
            translate("* * * *"),
            Err(CronError::WrongFieldCount { found: 4 })
        );
        assert_eq!(
            translate("0 0 0 1 1 ? 2030"),
            Err(CronError::WrongFieldCount { found: 7 })
        );
        for expression in [
            "",
            "@reboot",
            "0 0 L * *",
            "0 0 15W * *",
            "0 0 * * 5#3",
            "0 0 * * 5L",
            "61 * * * *",
            "* 25 * * *",
            "0 0 0 * * *x",
            "? * * * *",
            "0 0 * ? *",
            &format!("0 0 * * {}", vec!["1"; 600].join(",")),
        ] {
            assert!(
                matches!(translate(expression), Err(CronError::Syntax { .. })),
                "`{expression}` should be a syntax error, got {:?}",
                translate(expression)
            );
        }
        let Err(CronError::Syntax { reason }) = translate("0 75 * * * *") else {
            panic!("minute 75 must fail");
        };
        assert!(reason.contains("minute field `75`"), "{reason}");
    }
}
