//! Binding a journal to the listing and the rules it was written with: what a seq's security id
//! and price band mean depends on both, so opening with others is an error.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use matching::{MarketRules, SecurityTable};

use crate::codec::{Meta, FORMAT_VERSION};
use crate::{io_err, JournalError};

/// The journal's own copy of its listing, in the journal directory.
pub(crate) const LISTING_FILE: &str = "listing.csv";

/// FNV-1a 64 of `text`: a stable fingerprint (the standard library's hashers may change
/// between Rust releases; this one never does).
fn fnv1a64(text: &[u8]) -> u64 {
    text.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The fingerprint of a listing: FNV-1a 64 of its canonical CSV (`SecurityTable::to_csv`),
/// so it changes when a code, an id (row order) or a reference price changes, and not with
/// whitespace or a missing header in the file it was read from.
pub fn listing_fingerprint(listing: &SecurityTable) -> u64 {
    fnv1a64(listing.to_csv().as_bytes())
}

/// The journal's own copy of its listing (`<journal_dir>/listing.csv`), e.g. for an export
/// that must use exactly the listing the journal was written with; `None` if there is none.
pub fn journal_listing(journal_dir: &Path) -> Result<Option<SecurityTable>, JournalError> {
    let copy = journal_dir.join(LISTING_FILE);
    match fs::read_to_string(&copy) {
        Ok(text) => SecurityTable::parse_csv(&text)
            .map(Some)
            .map_err(|e| JournalError::Corrupt {
                segment: copy,
                offset: 0,
                detail: format!("listing copy does not parse: {e}"),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&copy, e)),
    }
}

/// The listing and rules a journal is (to be) written with.
#[derive(Clone, Debug)]
pub struct Binding {
    csv: String,
    fingerprint: u64,
    rules: String,
}

impl Binding {
    pub fn new(listing: &SecurityTable, rules: MarketRules) -> Self {
        let csv = listing.to_csv();
        Binding {
            fingerprint: fnv1a64(csv.as_bytes()),
            csv,
            rules: rules.name().to_owned(),
        }
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub fn rules(&self) -> &str {
        &self.rules
    }

    pub(crate) fn meta(&self, prior_max_seq: u64) -> Meta {
        Meta {
            version: FORMAT_VERSION,
            fingerprint: self.fingerprint,
            rules: self.rules.clone(),
            prior_max_seq,
        }
    }

    /// Checks the journal's listing copy (if any) against this binding; returns whether the
    /// copy is missing (it is written when the journal is opened for appending).
    pub(crate) fn check_copy(&self, journal_dir: &Path) -> Result<bool, JournalError> {
        let copy = journal_dir.join(LISTING_FILE);
        match fs::read(&copy) {
            Ok(text) => {
                let journal = fnv1a64(&text);
                if journal != self.fingerprint {
                    return Err(JournalError::ListingMismatch {
                        journal,
                        given: self.fingerprint,
                        copy,
                    });
                }
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(io_err(&copy, e)),
        }
    }

    /// Checks one segment's META against this binding (whose fingerprint the journal's copy
    /// has, or which the segments must then carry).
    pub(crate) fn check_meta(
        &self,
        segment: &Path,
        meta: &Meta,
        copy_missing: bool,
        journal_dir: &Path,
    ) -> Result<(), JournalError> {
        if meta.fingerprint != self.fingerprint {
            if copy_missing {
                return Err(JournalError::ListingMismatch {
                    journal: meta.fingerprint,
                    given: self.fingerprint,
                    copy: journal_dir.join(LISTING_FILE),
                });
            }
            return Err(JournalError::MetaMismatch {
                segment: segment.to_owned(),
                expected: self.fingerprint,
                found: meta.fingerprint,
                expected_rules: self.rules.clone(),
                found_rules: meta.rules.clone(),
            });
        }
        if meta.rules != self.rules {
            return Err(JournalError::RulesMismatch {
                journal: meta.rules.clone(),
                given: self.rules.clone(),
                dir: segment.parent().map_or_else(PathBuf::new, Path::to_owned),
            });
        }
        Ok(())
    }

    /// Writes the journal's listing copy (atomically) if it is missing.
    pub(crate) fn write_copy(&self, journal_dir: &Path) -> Result<(), JournalError> {
        let copy = journal_dir.join(LISTING_FILE);
        if copy.exists() {
            return Ok(());
        }
        let tmp = journal_dir.join("listing.csv.tmp");
        crate::files::write_aside(&tmp, &copy, self.csv.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_follows_meaning_not_formatting() {
        let a =
            SecurityTable::parse_csv("security,reference_price\nVNM,60000\nFPT,95000\n").unwrap();
        let same = SecurityTable::parse_csv(" VNM , 60000\r\n\nFPT,95000").unwrap();
        let swapped = SecurityTable::parse_csv("FPT,95000\nVNM,60000\n").unwrap();
        let repriced = SecurityTable::parse_csv("VNM,60100\nFPT,95000\n").unwrap();
        assert_eq!(listing_fingerprint(&a), listing_fingerprint(&same));
        assert_ne!(listing_fingerprint(&a), listing_fingerprint(&swapped));
        assert_ne!(listing_fingerprint(&a), listing_fingerprint(&repriced));
        // Pinned: the fingerprint is part of the file format.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
