use proptest::prelude::*;

use super::*;

#[test]
fn epoch_and_known_days() {
    assert_eq!(Date::parse("1970-01-01").unwrap().days(), 0);
    assert_eq!(Date::parse("2000-03-01").unwrap().days(), 11_017);
    assert_eq!(Date::parse("2026-01-01").unwrap().days(), 20_454);
    assert_eq!(Date::parse("0001-01-01").unwrap(), Date::MIN);
    assert_eq!(Date::parse("9999-12-31").unwrap(), Date::MAX);
    assert_eq!(Date::parse("1969-12-31").unwrap().days(), -1);
}

#[test]
fn impossible_days_are_refused_with_the_reason() {
    let err = Date::parse("2025-02-30").unwrap_err();
    assert_eq!(
        err.0,
        "invalid date '2025-02-30': February 2025 has 28 days"
    );
    assert!(Date::parse("2024-02-29").is_ok());
    assert!(Date::parse("2100-02-29").is_err());
    assert!(Date::parse("2000-02-29").is_ok());
    assert_eq!(
        Date::parse("2025-13-01").unwrap_err().0,
        "invalid date '2025-13-01': month 13 is outside 1..12"
    );
    for bad in [
        "",
        "2025-1-01",
        "2025/01/01",
        "2025-01-01 ",
        "+025-01-01",
        "2025-0a-01",
    ] {
        assert!(Date::parse(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn timestamps_parse_and_print() {
    let ts = Timestamp::parse("2025-03-04T10:22:31Z").unwrap();
    assert_eq!(ts.to_string(), "2025-03-04T10:22:31Z");
    assert_eq!(ts.date(), Date::parse("2025-03-04").unwrap());
    assert_eq!(ts.second_of_day(), 10 * 3600 + 22 * 60 + 31);
    let before_epoch = Timestamp::parse("1969-12-31T23:59:59Z").unwrap();
    assert_eq!(before_epoch.seconds(), -1);
    assert_eq!(before_epoch.date().to_string(), "1969-12-31");
    assert_eq!(
        Timestamp::parse("2025-02-30T00:00:00Z").unwrap_err().0,
        "invalid timestamp '2025-02-30T00:00:00Z': February 2025 has 28 days"
    );
    for bad in [
        "2025-03-04 10:22:31Z",
        "2025-03-04T10:22:31",
        "2025-03-04T24:00:00Z",
        "2025-03-04T10:60:00Z",
        "2025-03-04T10:22:31+01:00",
        "2025-03-04T10:22:31.5Z",
    ] {
        assert!(Timestamp::parse(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn weekdays_and_iso_weeks() {
    let d = |s| Date::parse(s).unwrap();
    assert_eq!(d("1970-01-01").weekday(), 4);
    assert_eq!(d("2025-12-29").weekday(), 1);
    // 2025-12-29 (Monday) starts ISO week 1 of 2026.
    assert_eq!(d("2025-12-29").iso_week(), (2026, 1));
    assert_eq!(d("2021-01-03").iso_week(), (2020, 53));
    assert_eq!(d("2021-01-04").iso_week(), (2021, 1));
    assert_eq!(d("2024-12-31").iso_week(), (2025, 1));
    assert_eq!(d("2023-01-01").iso_week(), (2022, 52));
}

#[test]
fn month_index_counts_calendar_months() {
    let d = |s| Date::parse(s).unwrap();
    assert_eq!(
        d("2025-12-31").month_index() - d("2025-01-01").month_index(),
        11
    );
    assert_eq!(
        d("2026-01-01").month_index() - d("2025-12-31").month_index(),
        1
    );
}

proptest! {
    #[test]
    fn every_day_round_trips_through_text(days in Date::MIN.days()..=Date::MAX.days()) {
        let date = Date::from_days(days);
        let text = date.to_string();
        prop_assert_eq!(Date::parse(&text).unwrap(), date);
        let (y, m, d) = date.ymd();
        prop_assert!(d >= 1 && d <= days_in_month(y, m));
        prop_assert_eq!(date.add_days(1).weekday() % 7, (date.weekday() + 1) % 7);
    }

    #[test]
    fn every_second_round_trips_through_text(seconds in -62_135_596_800i64..253_402_300_799) {
        let ts = Timestamp::from_seconds(seconds);
        prop_assert_eq!(Timestamp::parse(&ts.to_string()).unwrap(), ts);
    }
}

#[test]
fn text_forms_are_the_formatted_ones_for_every_year() {
    // The text is written digit by digit for the years 0 to 9999 and
    // formatted outside them: both must give what formatting gives.
    for days in (-800_000..3_000_000).step_by(997) {
        let date = Date::from_days(days);
        let (y, m, d) = date.ymd();
        assert_eq!(date.to_string(), format!("{y:04}-{m:02}-{d:02}"));
        assert_eq!(
            serde_json::to_string(&date).unwrap(),
            format!("\"{y:04}-{m:02}-{d:02}\"")
        );
        let ts = Timestamp::from_seconds(days as i64 * 86_400 + (days.rem_euclid(86_400)) as i64);
        let s = ts.second_of_day();
        assert_eq!(
            ts.to_string(),
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
                s / 3600,
                s / 60 % 60,
                s % 60
            )
        );
        assert_eq!(serde_json::to_string(&ts).unwrap(), format!("\"{ts}\""));
    }
}

#[test]
fn both_ways_of_finding_the_day_agree_on_every_day_of_the_text_forms_and_beyond() {
    for days in Date::MIN.days() - 1_000..=Date::MAX.days() + 1_000 {
        assert_eq!(
            civil_from_days(days),
            civil_from_days_classic(days),
            "{days}"
        );
    }
    for days in [
        -12_699_422,
        -12_699_421,
        -5_000_000,
        10_000_000,
        (1 << 30) - 12_699_423,
        (1 << 30) - 12_699_422,
        500_000_000,
    ] {
        assert_eq!(
            civil_from_days(days),
            civil_from_days_classic(days),
            "{days}"
        );
    }
}
