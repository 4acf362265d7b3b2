//! Abuse limits as configured: `<count>/<window>` such as `30/1m`, `10/15m` or `60/1h`
//! (windows in `s`, `m`, `h`); `off` turns a limit off.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// At most `max` events in any sliding `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

impl Limit {
    pub const fn new(max: u32, window_secs: u64) -> Self {
        Self {
            max,
            window: Duration::from_secs(window_secs),
        }
    }
}

/// A configured limit: `None` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSpec(pub Option<Limit>);

impl FromStr for LimitSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        let shape = || format!("{s:?} is not <count>/<window> such as 30/1m, or off");
        let (count, window) = s.split_once('/').ok_or_else(shape)?;
        let max: u32 = count.trim().parse().map_err(|_| shape())?;
        let window = window.trim();
        let unit_at = window
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(shape)?;
        let (amount, unit) = window.split_at(unit_at);
        let amount: u64 = if amount.is_empty() {
            1
        } else {
            amount.parse().map_err(|_| shape())?
        };
        let secs = match unit {
            "s" => amount,
            "m" => amount.saturating_mul(60),
            "h" => amount.saturating_mul(3600),
            _ => return Err(shape()),
        };
        if max == 0 || secs == 0 || secs > 7 * 86_400 {
            return Err(format!(
                "{s:?}: the count and the window must be above 0 (window at most 7 days)"
            ));
        }
        Ok(Self(Some(Limit::new(max, secs))))
    }
}

impl fmt::Display for LimitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(l) => write!(f, "{}/{}s", l.max, l.window.as_secs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_units_and_off() {
        let parse = |s: &str| s.parse::<LimitSpec>();
        assert_eq!(parse("30/1m"), Ok(LimitSpec(Some(Limit::new(30, 60)))));
        assert_eq!(
            parse(" 10 / 15m "),
            Ok(LimitSpec(Some(Limit::new(10, 900))))
        );
        assert_eq!(parse("60/h"), Ok(LimitSpec(Some(Limit::new(60, 3600)))));
        assert_eq!(parse("5/2s"), Ok(LimitSpec(Some(Limit::new(5, 2)))));
        assert_eq!(parse("OFF"), Ok(LimitSpec(None)));
        for bad in [
            "", "30", "30/", "x/1m", "30/1d", "0/1m", "30/0s", "-1/1m", "30/1m1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(parse("30/1m").unwrap().to_string(), "30/60s");
    }
}
