//! Local-time formatting for log lines, through libc so that the TZ rules match Apache's.

use std::time::{SystemTime, UNIX_EPOCH};

/// Broken-down local time of one instant, plus its microseconds and UTC offset.
pub(crate) struct LocalTime {
    tm: libc::tm,
    micros: u32,
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl LocalTime {
    pub(crate) fn now() -> Self {
        Self::at(SystemTime::now())
    }

    /// The local time of `instant`.
    pub(crate) fn at(instant: SystemTime) -> Self {
        let since_epoch = instant.duration_since(UNIX_EPOCH).unwrap_or_default();
        let seconds = libc::time_t::try_from(since_epoch.as_secs()).unwrap_or(0);
        // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are valid.
        let tm = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            libc::localtime_r(&raw const seconds, &raw mut tm);
            tm
        };
        Self {
            tm,
            micros: since_epoch.subsec_micros(),
        }
    }

    fn weekday(&self) -> &'static str {
        WEEKDAYS[usize::try_from(self.tm.tm_wday).unwrap_or(0) % 7]
    }

    fn month(&self) -> &'static str {
        MONTHS[usize::try_from(self.tm.tm_mon).unwrap_or(0) % 12]
    }

    /// The error log's stamp: `Wed Nov 25 05:43:55.123456 2026`.
    pub(crate) fn error_log_stamp(&self) -> String {
        format!(
            "{} {} {:02} {:02}:{:02}:{:02}.{:06} {}",
            self.weekday(),
            self.month(),
            self.tm.tm_mday,
            self.tm.tm_hour,
            self.tm.tm_min,
            self.tm.tm_sec,
            self.micros,
            self.tm.tm_year + 1900
        )
    }

    /// The suffix of a rotated log file, as mod_wsgi-express's `rotatelogs` pattern
    /// `%Y-%m-%d-%H_%M_%S` writes it: `2026-11-25-05_43_55`.
    pub(crate) fn rotation_stamp(&self) -> String {
        format!(
            "{}-{:02}-{:02}-{:02}_{:02}_{:02}",
            self.tm.tm_year + 1900,
            self.tm.tm_mon + 1,
            self.tm.tm_mday,
            self.tm.tm_hour,
            self.tm.tm_min,
            self.tm.tm_sec
        )
    }

    /// The error log's stamp to the second (`ErrorLogFormat`'s `%t`):
    /// `Wed Nov 25 05:43:55 2026`.
    pub(crate) fn error_log_stamp_seconds(&self) -> String {
        format!(
            "{} {} {:02} {:02}:{:02}:{:02} {}",
            self.weekday(),
            self.month(),
            self.tm.tm_mday,
            self.tm.tm_hour,
            self.tm.tm_min,
            self.tm.tm_sec,
            self.tm.tm_year + 1900
        )
    }

    /// The access log's stamp (Apache `%t` without brackets): `25/Nov/2026:05:43:55 +0000`.
    pub(crate) fn access_log_stamp(&self) -> String {
        let offset_minutes = self.tm.tm_gmtoff / 60;
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let offset_minutes = offset_minutes.abs();
        format!(
            "{:02}/{}/{}:{:02}:{:02}:{:02} {}{:02}{:02}",
            self.tm.tm_mday,
            self.month(),
            self.tm.tm_year + 1900,
            self.tm.tm_hour,
            self.tm.tm_min,
            self.tm.tm_sec,
            sign,
            offset_minutes / 60,
            offset_minutes % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_have_apache_shapes() {
        let now = LocalTime::now();
        let error_stamp = now.error_log_stamp();
        assert_eq!(error_stamp.len(), "Wed Nov 25 05:43:55.123456 2026".len());
        let access_stamp = now.access_log_stamp();
        assert_eq!(access_stamp.len(), "25/Nov/2026:05:43:55 +0000".len());
        assert_eq!(&access_stamp[2..3], "/");
    }
}
