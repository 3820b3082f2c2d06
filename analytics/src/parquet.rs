//! Audit exports as Parquet: rows in, row groups out to a writer the caller opens, one batch
//! at a time so an export of any size runs in the memory of one batch.

use std::io::Write;

use polars::prelude::*;

use warden_core::audit::export::COLUMNS;

/// The text columns, between `seq` and `proof`.
fn texts() -> &'static [&'static str] {
    &COLUMNS[1..COLUMNS.len() - 1]
}

/// One exported record: `seq`, the text cells in [`COLUMNS`] order, and its proof.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// The record's place in the chain.
    pub seq: i64,
    /// The other columns, in order; `None` is null.
    pub cells: Vec<Option<String>>,
    /// The inclusion proof, hex hashes separated by spaces.
    pub proof: String,
}

/// Writes batches of rows as Parquet row groups.
pub struct AuditParquet<W: Write> {
    writer: polars::io::parquet::write::BatchedWriter<W>,
}

fn schema() -> Schema {
    let mut schema = Schema::with_capacity(COLUMNS.len());
    schema.insert("seq".into(), DataType::Int64);
    for c in texts() {
        schema.insert((*c).into(), DataType::String);
    }
    schema.insert("proof".into(), DataType::String);
    schema
}

impl<W: Write> AuditParquet<W> {
    /// Starts a file on `out`.
    pub fn new(out: W) -> crate::Result<AuditParquet<W>> {
        let writer = ParquetWriter::new(out)
            .with_compression(ParquetCompression::Uncompressed)
            .batched(&schema())?;
        Ok(AuditParquet { writer })
    }

    /// Writes one row group.
    pub fn write(&mut self, rows: &[Row]) -> crate::Result<()> {
        let mut columns: Vec<Column> = Vec::with_capacity(COLUMNS.len());
        columns.push(Column::new(
            "seq".into(),
            rows.iter().map(|r| r.seq).collect::<Vec<i64>>(),
        ));
        for (i, name) in texts().iter().enumerate() {
            let values: Vec<Option<&str>> = rows
                .iter()
                .map(|r| r.cells.get(i).and_then(|c| c.as_deref()))
                .collect();
            columns.push(Column::new((*name).into(), values));
        }
        columns.push(Column::new(
            "proof".into(),
            rows.iter().map(|r| r.proof.as_str()).collect::<Vec<&str>>(),
        ));
        let df = DataFrame::new(rows.len(), columns)?;
        self.writer.write_batch(&df)?;
        Ok(())
    }

    /// Writes the footer.
    pub fn finish(self) -> crate::Result<u64> {
        Ok(self.writer.finish()?)
    }
}

/// Reads an export back a row group's worth at a time (for offline verification).
pub fn read_rows(path: &std::path::Path) -> crate::Result<Vec<Row>> {
    let file = std::fs::File::open(path).map_err(|e| PolarsError::IO {
        error: std::sync::Arc::new(e),
        msg: None,
    })?;
    let df = ParquetReader::new(file).finish()?;
    let seq = df.column("seq")?.i64()?.clone();
    let mut columns = Vec::new();
    for name in texts() {
        columns.push(df.column(name)?.str()?.clone());
    }
    let proof = df.column("proof")?.str()?.clone();
    let mut rows = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        rows.push(Row {
            seq: seq.get(i).unwrap_or_default(),
            cells: columns
                .iter()
                .map(|c| c.get(i).map(str::to_string))
                .collect(),
            proof: proof.get(i).unwrap_or_default().to_string(),
        });
    }
    Ok(rows)
}
