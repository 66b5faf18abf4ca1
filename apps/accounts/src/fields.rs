//! Parse-don't-validate newtypes for the personal data accounts keeps.
//!
//! Invariant: a value of one of these types is already normalised and valid; the only way to make
//! one is its `parse` function (or, inside this crate, reading a row the database has already
//! checked with the same shape). Code that holds a [`Phone`] never re-validates it.

use crate::error::AccountsError;
use chrono::{Datelike, NaiveDate};
use serde::Serialize;
use std::fmt;

/// A phone number that can receive SMS, in E.164 form (`+447911123456`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Phone(String);

impl Phone {
    /// Parses a number as a person types it. Numbers without a country code are read as UK
    /// numbers (`07911 123456`); others need their `+` prefix (`+33 6 12 34 56 78`).
    /// Fixed lines, freephone, premium and other numbers that cannot take a text are refused.
    pub fn parse(input: &str) -> Result<Self, AccountsError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(AccountsError::InvalidPhone("the number is empty"));
        }
        // libphonenumber's own limit is 250; a login field has no business being longer.
        if input.len() > 40 {
            return Err(AccountsError::InvalidPhone("the number is too long"));
        }
        let number = phonenumber::parse(Some(phonenumber::country::Id::GB), input)
            .map_err(|_| AccountsError::InvalidPhone("that is not a phone number"))?;
        if number.extension().is_some() {
            return Err(AccountsError::InvalidPhone(
                "extensions cannot receive texts",
            ));
        }
        if !phonenumber::is_valid(&number) {
            return Err(AccountsError::InvalidPhone("that number does not exist"));
        }
        use phonenumber::Type;
        match number.number_type(&phonenumber::metadata::DATABASE) {
            Type::Mobile | Type::FixedLineOrMobile | Type::PersonalNumber | Type::Voip => {}
            _ => return Err(AccountsError::InvalidPhone("it must be a mobile number")),
        }
        let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
        Ok(Phone(e164))
    }

    /// A value read back from a column that only ever holds parsed phones.
    pub(crate) fn from_stored(e164: String) -> Self {
        Phone(e164)
    }

    /// The E.164 text, e.g. `+447911123456`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address, trimmed and lowercased.
///
/// The syntax accepted is the everyday subset of RFC 5321 (no quoted local parts, no IP-literal
/// domains, ASCII only): what mail providers hand out, and what every mail API accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses and normalises an email address.
    pub fn parse(input: &str) -> Result<Self, AccountsError> {
        let email = input.trim().to_ascii_lowercase();
        if email.len() > 254 || !email.is_ascii() {
            return Err(AccountsError::InvalidEmail);
        }
        let (local, domain) = email.split_once('@').ok_or(AccountsError::InvalidEmail)?;
        if !valid_local_part(local) || !valid_domain(domain) {
            return Err(AccountsError::InvalidEmail);
        }
        Ok(Email(email))
    }

    pub(crate) fn from_stored(email: String) -> Self {
        Email(email)
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_local_part(local: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-.";
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c))
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || domain.len() > 253 {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let tld = labels[labels.len() - 1];
    let tld_ok = (tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
        || (tld.starts_with("xn--") && label_ok(tld));
    labels.iter().all(|l| label_ok(l)) && tld_ok
}

/// A UK postcode in its canonical form: uppercase, one space before the inward code (`SW1A 1AA`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Postcode(String);

impl Postcode {
    /// Parses a postcode typed any way (`sw1a1aa`, ` SW1A  1AA `) against the Royal Mail formats
    /// A9 9AA, A99 9AA, A9A 9AA, AA9 9AA, AA99 9AA, AA9A 9AA (and GIR 0AA), including the letters
    /// each position may hold.
    pub fn parse(input: &str) -> Result<Self, AccountsError> {
        let compact: String = input
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if !compact.is_ascii() || !(5..=7).contains(&compact.len()) {
            return Err(AccountsError::InvalidPostcode);
        }
        let (outward, inward) = compact.split_at(compact.len() - 3);
        if !(valid_outward(outward) && valid_inward(inward)) && compact != "GIR0AA" {
            return Err(AccountsError::InvalidPostcode);
        }
        Ok(Postcode(format!("{outward} {inward}")))
    }

    pub(crate) fn from_stored(postcode: String) -> Self {
        Postcode(postcode)
    }

    /// The canonical text, e.g. `SW1A 1AA`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The outward code, e.g. `SW1A`.
    pub fn outward(&self) -> &str {
        self.0.split(' ').next().unwrap_or(&self.0)
    }

    /// The postcode area: the letters the postcode starts with (`SW` for `SW1A 1AA`, `M` for
    /// `M1 1AE`). Pricing rates by area.
    pub fn area(&self) -> &str {
        let outward = self.outward();
        let end = outward
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(outward.len());
        &outward[..end]
    }
}

impl fmt::Display for Postcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The postcode area (`SW`) of a postcode given as text, or `None` when it is not a UK postcode.
pub fn postcode_area(postcode: &str) -> Option<String> {
    Postcode::parse(postcode).ok().map(|p| p.area().to_owned())
}

fn valid_outward(outward: &str) -> bool {
    // Letters allowed in each position, per Royal Mail's rules.
    let first = |c: char| c.is_ascii_uppercase() && !"QVX".contains(c);
    let second = |c: char| c.is_ascii_uppercase() && !"IJZ".contains(c);
    let third_a9a = |c: char| "ABCDEFGHJKPSTUW".contains(c);
    let fourth_aa9a = |c: char| "ABEHMNPRVWXY".contains(c);
    let d = |c: char| c.is_ascii_digit();
    let c: Vec<char> = outward.chars().collect();
    match c.as_slice() {
        [a, n] => first(*a) && d(*n),
        [a, n, m] if first(*a) && d(*n) => d(*m) || third_a9a(*m),
        [a, b, n] => first(*a) && second(*b) && d(*n),
        [a, b, n, m] if first(*a) && second(*b) && d(*n) => d(*m) || fourth_aa9a(*m),
        _ => false,
    }
}

fn valid_inward(inward: &str) -> bool {
    let unit = |c: char| c.is_ascii_uppercase() && !"CIKMOV".contains(c);
    let c: Vec<char> = inward.chars().collect();
    matches!(c.as_slice(), [n, x, y] if n.is_ascii_digit() && unit(*x) && unit(*y))
}

/// A vehicle registration mark: uppercase letters and digits, no spaces (`AB12CDE`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Vrm(String);

impl Vrm {
    /// Parses a registration as printed on the plate (`ab12 cde` → `AB12CDE`): 2 to 8 letters and
    /// digits once spaces are removed.
    pub fn parse(input: &str) -> Result<Self, AccountsError> {
        let compact: String = input
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if !(2..=8).contains(&compact.len()) || !compact.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(AccountsError::InvalidRegistration);
        }
        Ok(Vrm(compact))
    }

    pub(crate) fn from_stored(vrm: String) -> Self {
        Vrm(vrm)
    }

    /// The normalised registration.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Vrm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A UK (DVLA) driving licence number: the 16 characters of field 5 on the photocard,
/// e.g. `MORGA753116SM9IJ`.
///
/// Layout: surname (5, padded with 9s), decade of birth, month of birth (+50 for women), day of
/// birth, year digit of birth, two initials (padded with 9), a digit, two check letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct LicenceNumber(String);

impl LicenceNumber {
    /// Parses a licence number, ignoring spaces and case.
    pub fn parse(input: &str) -> Result<Self, AccountsError> {
        let s: String = input
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let b = s.as_bytes();
        if b.len() != 16 || !s.is_ascii() {
            return Err(AccountsError::InvalidLicenceNumber(
                "it must be 16 characters",
            ));
        }
        let letter_or_9 = |c: u8| c.is_ascii_uppercase() || c == b'9';
        let surname = &b[0..5];
        // The surname starts with a letter; any padding 9s come only after the letters.
        let letters = surname
            .iter()
            .take_while(|c| c.is_ascii_uppercase())
            .count();
        if letters == 0 || !surname[letters..].iter().all(|&c| c == b'9') {
            return Err(AccountsError::InvalidLicenceNumber(
                "the first five characters must come from the surname",
            ));
        }
        if !b[5..11].iter().all(u8::is_ascii_digit) {
            return Err(AccountsError::InvalidLicenceNumber(
                "characters 6 to 11 must be digits",
            ));
        }
        let month = two_digits(b[6], b[7]);
        let day = two_digits(b[8], b[9]);
        if !((1..=12).contains(&month) || (51..=62).contains(&month)) || !(1..=31).contains(&day) {
            return Err(AccountsError::InvalidLicenceNumber(
                "characters 6 to 11 do not encode a date of birth",
            ));
        }
        if !(b[11].is_ascii_uppercase()
            && letter_or_9(b[12])
            && b[13].is_ascii_digit()
            && b[14].is_ascii_uppercase()
            && b[15].is_ascii_uppercase())
        {
            return Err(AccountsError::InvalidLicenceNumber(
                "the last five characters are not in the DVLA format",
            ));
        }
        Ok(LicenceNumber(s))
    }

    pub(crate) fn from_stored(s: String) -> Self {
        LicenceNumber(s)
    }

    /// The normalised 16 characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the date of birth encoded in the number is `dob`. The encoding keeps only the
    /// last two digits of the year, so this is a consistency check, not proof.
    pub fn matches_date_of_birth(&self, dob: NaiveDate) -> bool {
        let b = self.0.as_bytes();
        let year = dob.year().rem_euclid(100) as u32;
        let month = two_digits(b[6], b[7]);
        let month = if month > 50 { month - 50 } else { month };
        u32::from(b[5] - b'0') == year / 10
            && u32::from(b[10] - b'0') == year % 10
            && month == dob.month()
            && two_digits(b[8], b[9]) == dob.day()
    }
}

impl fmt::Display for LicenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn two_digits(a: u8, b: u8) -> u32 {
    u32::from(a.wrapping_sub(b'0')) * 10 + u32::from(b.wrapping_sub(b'0'))
}

/// Longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Trims a person's or partner's name and checks it is 1 to 100 characters with no control
/// characters (which would break SMS, CSV exports and the admin UI).
pub fn parse_name(input: &str) -> Result<String, AccountsError> {
    let name = input.trim();
    if name.is_empty() {
        return Err(AccountsError::InvalidName("cannot be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AccountsError::InvalidName("must be at most 100 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(AccountsError::InvalidName(
            "cannot contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// Youngest age a driver can be covered at.
pub const MIN_DRIVER_AGE: i32 = 16;
/// Oldest plausible age; anything older is a typing mistake.
pub const MAX_DRIVER_AGE: i32 = 100;

/// Age in whole years on `on`. Someone born on 29 February turns a year older on 1 March in
/// common years, as in UK law.
pub fn age_on(date_of_birth: NaiveDate, on: NaiveDate) -> i32 {
    let mut age = on.year() - date_of_birth.year();
    if (on.month(), on.day()) < (date_of_birth.month(), date_of_birth.day()) {
        age -= 1;
    }
    age
}

/// Checks a date of birth against `today`: not in the future, age 16 to 100.
pub fn check_date_of_birth(dob: NaiveDate, today: NaiveDate) -> Result<NaiveDate, AccountsError> {
    if dob > today {
        return Err(AccountsError::InvalidDateOfBirth("cannot be in the future"));
    }
    let age = age_on(dob, today);
    if age > MAX_DRIVER_AGE {
        return Err(AccountsError::InvalidDateOfBirth(
            "must be within the last 100 years",
        ));
    }
    if age < MIN_DRIVER_AGE {
        return Err(AccountsError::TooYoung);
    }
    Ok(dob)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn uk_numbers_in_any_common_form_become_e164() {
        for input in [
            "07911 123456",
            "07911123456",
            "+44 7911 123456",
            "+447911123456",
            "0044 7911 123456",
            "(07911) 123-456",
        ] {
            assert_eq!(
                Phone::parse(input).unwrap().as_str(),
                "+447911123456",
                "{input}"
            );
        }
        // Foreign mobiles need their country code and keep it.
        assert_eq!(
            Phone::parse("+33 6 12 34 56 78").unwrap().as_str(),
            "+33612345678"
        );
    }

    #[test]
    fn malformed_and_non_mobile_numbers_are_refused() {
        for input in [
            "",
            "   ",
            "hello",
            "0791112345",           // one digit short
            "079111234567",         // one digit long
            "+44 20 7946 0018",     // London landline: cannot take a text
            "0800 123 4567",        // freephone
            "07911 123456 ext. 12", // extension
            "123",
            "+999 1234 5678",
        ] {
            let err = Phone::parse(input).unwrap_err();
            assert!(
                matches!(err, AccountsError::InvalidPhone(_)),
                "{input}: {err:?}"
            );
            assert_eq!(err.user_error().unwrap().code, "INVALID_PHONE");
        }
        let long = "0".repeat(60);
        assert!(matches!(
            Phone::parse(&long),
            Err(AccountsError::InvalidPhone(_))
        ));
    }

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(
            Email::parse("  Ada.Lovelace+cover@Example.CO.UK ")
                .unwrap()
                .as_str(),
            "ada.lovelace+cover@example.co.uk"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "ada@exa mple.com",
            ".ada@example.com",
            "ada.@example.com",
            "a..da@example.com",
            "ada@-example.com",
            "ada@example.c",
            "ada@example.123",
            "adä@example.com",
        ] {
            assert!(
                matches!(Email::parse(bad), Err(AccountsError::InvalidEmail)),
                "{bad}"
            );
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(Email::parse(&long_local).is_err());
    }

    #[test]
    fn postcodes_are_normalised_and_give_their_area() {
        let cases = [
            ("sw1a1aa", "SW1A 1AA", "SW"),
            (" SW1A  1AA ", "SW1A 1AA", "SW"),
            ("m1 1ae", "M1 1AE", "M"),
            ("B33 8TH", "B33 8TH", "B"),
            ("CR2 6XH", "CR2 6XH", "CR"),
            ("DN55 1PT", "DN55 1PT", "DN"),
            ("W1A 0AX", "W1A 0AX", "W"),
            ("EC1A 1BB", "EC1A 1BB", "EC"),
            ("GIR 0AA", "GIR 0AA", "GIR"),
        ];
        for (input, canonical, area) in cases {
            let p = Postcode::parse(input).unwrap();
            assert_eq!(p.as_str(), canonical);
            assert_eq!(p.area(), area);
            assert_eq!(postcode_area(input).as_deref(), Some(area));
        }
        for bad in [
            "", "SW1A", "SW1A 1A", "1AA 1AA", "QA1 1AA", // Q never starts a postcode
            "AI1 1AA", // I never second
            "SW1A 1CA", "SW1A1AAA", "SW1-1AA", "ZZZZ 9ZZ",
        ] {
            assert!(
                matches!(Postcode::parse(bad), Err(AccountsError::InvalidPostcode)),
                "{bad}"
            );
        }
        assert_eq!(postcode_area("nonsense"), None);
    }

    #[test]
    fn registrations_are_uppercased_without_spaces() {
        assert_eq!(Vrm::parse(" ab12 cde ").unwrap().as_str(), "AB12CDE");
        assert_eq!(Vrm::parse("A1").unwrap().as_str(), "A1");
        for bad in ["", "A", "AB12CDEFG", "AB-12", "AB12CDÉ"] {
            assert!(
                matches!(Vrm::parse(bad), Err(AccountsError::InvalidRegistration)),
                "{bad}"
            );
        }
    }

    #[test]
    fn licence_numbers_follow_the_dvla_layout() {
        let l = LicenceNumber::parse("morga 753116 sm9ij").unwrap();
        assert_eq!(l.as_str(), "MORGA753116SM9IJ");
        // Born 11 March 1976: decade 7, month 53 (March, +50 for a woman), day 11, year digit 6.
        assert!(
            LicenceNumber::parse("MORGA753116SM9IJ")
                .unwrap()
                .matches_date_of_birth(d(1976, 3, 11))
        );
        assert!(l.matches_date_of_birth(d(1976, 3, 11)));
        assert!(!l.matches_date_of_birth(d(1976, 3, 12)));
        assert!(!l.matches_date_of_birth(d(1986, 3, 11)));
        // Short surnames are padded with 9s, and so is a missing second initial.
        assert!(LicenceNumber::parse("LEE99802155A9AB").is_err()); // 15 characters
        assert!(LicenceNumber::parse("LEE99802155A99AB").is_ok());
        for bad in [
            "",
            "MORGA753116SM9I",   // 15
            "MORGA753116SM9IJK", // 17
            "9ORGA753116SM9IJ",  // starts with padding
            "MO9GA753116SM9IJ",  // padding before letters end
            "MORGA7531X6SM9IJ",  // letter in the date
            "MORGA713116SM9IJ",  // month 13
            "MORGA763116SM9IJ",  // month 63
            "MORGA753006SM9IJ",  // day 00
            "MORGA753326SM9IJ",  // day 32
            "MORGA7531169M9IJ",  // initial starts with 9
            "MORGA753116SMXIJ",  // letter where the digit goes
            "MORGA753116SM91J",  // digit in the check letters
        ] {
            let err = LicenceNumber::parse(bad).unwrap_err();
            assert!(
                matches!(err, AccountsError::InvalidLicenceNumber(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert_eq!(parse_name(&"é".repeat(100)).unwrap().chars().count(), 100);
        assert!(matches!(
            parse_name(&"é".repeat(101)),
            Err(AccountsError::InvalidName(_))
        ));
        assert!(matches!(
            parse_name("   "),
            Err(AccountsError::InvalidName(_))
        ));
        assert!(matches!(
            parse_name("Ada\u{0}"),
            Err(AccountsError::InvalidName(_))
        ));
    }

    #[test]
    fn ages_count_whole_years_and_leap_day_birthdays_turn_on_first_march() {
        assert_eq!(age_on(d(2000, 6, 15), d(2016, 6, 14)), 15);
        assert_eq!(age_on(d(2000, 6, 15), d(2016, 6, 15)), 16);
        assert_eq!(age_on(d(2004, 2, 29), d(2021, 2, 28)), 16);
        assert_eq!(age_on(d(2004, 2, 29), d(2020, 2, 28)), 15);
        assert_eq!(age_on(d(2004, 2, 29), d(2020, 3, 1)), 16);
        let today = d(2026, 11, 23);
        assert!(check_date_of_birth(d(2010, 11, 23), today).is_ok());
        assert!(matches!(
            check_date_of_birth(d(2010, 11, 24), today),
            Err(AccountsError::TooYoung)
        ));
        assert!(matches!(
            check_date_of_birth(d(2026, 11, 24), today),
            Err(AccountsError::InvalidDateOfBirth(_))
        ));
        assert!(check_date_of_birth(d(1926, 11, 23), today).is_ok());
        assert!(matches!(
            check_date_of_birth(d(1925, 11, 22), today),
            Err(AccountsError::InvalidDateOfBirth(_))
        ));
    }
}
