//! Whole-file CSV of serde rows: read all (a missing file is empty), write all atomically.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// Reads every row; a missing file is an empty list, a bad row an error naming the file.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let csv_err = |source| Error::Csv {
        path: path.to_owned(),
        source,
    };
    csv::Reader::from_path(path)
        .map_err(csv_err)?
        .deserialize()
        .collect::<std::result::Result<Vec<T>, _>>()
        .map_err(csv_err)
}

/// Writes all rows with a header, through a temporary file renamed into place, so a reader (or
/// an interrupted writer) never sees half a file.
pub fn write<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let tmp = path.with_extension("csv.tmp");
    {
        let csv_err = |source| Error::Csv {
            path: tmp.clone(),
            source,
        };
        let mut writer = csv::Writer::from_path(&tmp).map_err(csv_err)?;
        for r in rows {
            writer.serialize(r).map_err(csv_err)?;
        }
        writer
            .flush()
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    }
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::io(format!("renaming {} into place", tmp.display()), e))
}
