//! `--export FILE`: the top candidate of a task rebuilt — its run replayed from the recorded
//! configuration and checked against its records, then interpolated when the candidate lies on
//! a path — and written as one HF-layout safetensors file with its head.

use std::path::Path;

use candle_core::Device;

use crate::engine::peft::ExportForm;
use crate::error::{Error, Result};
use crate::validate::checkpoints::choose::Choice;
use crate::validate::checkpoints::interpolate::{HeadStart, lp_head, path_start};
use crate::validate::checkpoints::replay::{RunView, replay};
use crate::validate::sweep::config::{RunConfig, ValidRun};
use crate::validate::sweep::records::{self, RunRecords};
use crate::validate::sweep::runner::{self, DatasetRuns};

/// Rebuilds the first candidate of `choice` and writes it to `file` (HF layout, with its head;
/// LoRA and (IA)³ merged). Returns what was written, in words.
pub fn export(choice: &Choice, file: &Path, device: &Device, quiet: bool) -> Result<String> {
    let (c, _) = choice
        .ranked
        .first()
        .ok_or_else(|| Error::invalid("--export", "a candidate to export", "none"))?;
    if file.exists() {
        return Err(Error::invalid(
            "--export",
            "a file that does not exist yet (nothing is overwritten)",
            file.display(),
        ));
    }
    let records_path = crate::validate::sweep::folder::run_paths(&c.folder, &c.dataset, c.strategy, c.seed).0;
    let recs: RunRecords = records::read(&records_path)?;
    let config: RunConfig = serde_json::from_value(recs.header.config.clone()).map_err(|e| Error::Config {
        path: records_path.clone(),
        message: format!("its recorded configuration does not parse: {e}"),
    })?;
    let run: ValidRun = config.validate()?;
    let i = run
        .config
        .datasets
        .iter()
        .position(|d| d.name == c.dataset)
        .expect("the record's own dataset");
    let up = crate::validate::sweep::upstream::upstream(&run, &c.folder, device, quiet)?;
    let data = runner::prepared(&run, i, c.seed, false)?;
    let ctx = DatasetRuns {
        data: &data,
        upstream: &up,
        separability: None,
        device: device.clone(),
    };
    let view = RunView::read(&run, &ctx, c.strategy, c.seed, &c.folder)?;
    let steps: Vec<u64> = if c.alpha.is_some() {
        vec![0, c.step]
    } else {
        vec![c.step]
    };
    let head = match (c.alpha, c.head_start) {
        (Some(_), HeadStart::LinearProbe) => Some(lp_head(&run, &ctx, c.seed, &c.folder, quiet)?),
        _ => None,
    };
    let mut initial = None;
    let mut written = String::new();
    replay(&run, &ctx, &view, c.strategy, c.seed, &steps, quiet, |model, step| {
        if c.alpha.is_some() && step == 0 {
            initial = Some(model.trainable_snapshot()?);
            return Ok(());
        }
        let model = match (c.alpha, &initial) {
            (Some(a), Some(init)) => model.interpolated(&path_start(model, init, head.as_ref())?, a)?,
            _ => model.frozen(),
        };
        let merged = model.merge()?;
        merged.save(file)?;
        written = format!(
            "wrote {} ({} seed {}, {}; {})\n",
            file.display(),
            c.strategy.id(),
            c.seed,
            c.point(),
            match c.strategy.def().export_form() {
                ExportForm::Merged => "merged into the backbone weights: a plain ViT",
                ExportForm::Modules =>
                    "unmerged: the adapter tensors are in the file, the model needs the strategy's modules",
                ExportForm::Plain => "every tensor",
            }
        );
        Ok(())
    })?;
    Ok(written)
}
