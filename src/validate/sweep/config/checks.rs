//! The checks of a run configuration, one per section, in the order `RunConfig::validate` runs them;
//! every error names its key.

use crate::validate::sweep::config::*;

impl RunConfig {
    /// Checks every value; errors name the key.
    pub fn validate(self) -> Result<ValidRun> {
        let model = self.model.resolve()?;
        // An HF model folder as the checkpoint: the model must be the one it describes.
        if let Some(dir) = self.checkpoint.as_ref().filter(|p| p.is_dir()) {
            let folder = crate::engine::hf::read_folder(dir)?;
            if folder.config != model {
                return Err(Error::invalid(
                    "model",
                    format!(
                        "the model of checkpoint folder {} (its config.json and \
                         preprocessor_config.json); write model = {:?}",
                        dir.display(),
                        dir.display().to_string()
                    ),
                    self.model_label(),
                ));
            }
        }
        // The data pipeline feeds RGB (grey images replicated to three channels).
        if model.channels != 3 {
            return Err(Error::invalid(
                "model",
                "a model with 3 input channels: runs feed RGB images (grey ones replicated), so \
                 a model with num_channels (config.json) or channels (TOML) other than 3 can be \
                 inspected and benchmarked but not fine-tuned",
                format!("{} with {} channel(s)", self.model_label(), model.channels),
            ));
        }
        if self.strategies.is_empty() {
            return Err(Error::invalid("strategies", "need at least one strategy", "[]"));
        }
        let strategies = self
            .strategies
            .iter()
            .map(|s| parse_strategy(s))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| e.rename_field("strategy", "strategies"))?;
        if self.seeds.is_empty() {
            return Err(Error::invalid("seeds", "need at least one seed", "[]"));
        }
        for (k, v) in [
            ("max_steps", self.max_steps),
            ("eval_subset", self.eval_subset),
            ("batch_size", self.batch_size),
            ("pretrain.steps", self.pretrain.steps),
            ("pretrain.batch_size", self.pretrain.batch_size),
        ] {
            if v == 0 {
                return Err(Error::invalid(k, "must be >= 1", 0));
            }
        }
        self.check_pretrain(model.image_size)?;
        self.check_optimizer(&strategies)?;
        let new_head = self.head == Some(HeadChoice::New);
        let eval_steps = self.eval_steps()?;
        let attacks = self.attacks()?;
        let ood = self.check_datasets(model.image_size)?;
        let training = self.training()?;
        Ok(ValidRun {
            model,
            strategies,
            eval_steps,
            attacks,
            new_head,
            training,
            ood,
            config: self,
        })
    }

    /// The fine-tuning objective: `train_attack` required by (and only allowed with) a robust
    /// `training`, `trades_beta` only with `trades`; radius and step in [0, 1], step > 0, at least
    /// one step, β finite and ≥ 0.
    fn training(&self) -> Result<crate::engine::robust::Training> {
        use crate::engine::robust::{TrainAttack, Training};
        if self.trades_beta.is_some() && self.training != TrainingKind::Trades {
            return Err(Error::invalid(
                "trades_beta",
                "only with training = \"trades\"",
                self.trades_beta.unwrap_or(0.0),
            ));
        }
        let attack = match (&self.train_attack, self.training) {
            (None, TrainingKind::Standard) => return Ok(Training::Standard),
            (Some(_), TrainingKind::Standard) => {
                return Err(Error::invalid(
                    "train_attack",
                    "only with training = \"pgd-at\" or \"trades\"",
                    "a table",
                ));
            }
            (None, _) => {
                return Err(Error::invalid(
                    "train_attack",
                    "required by a robust training: { eps = \"4/255\", alpha = \"1/255\", steps = 5 }",
                    "nothing",
                ));
            }
            (Some(t), _) => {
                let eps = t.eps.value("train_attack.eps")?;
                let alpha = match &t.alpha {
                    Some(a) => a.value("train_attack.alpha")?,
                    None => eps / 4.0,
                };
                if alpha <= 0.0 && eps > 0.0 {
                    return Err(Error::invalid("train_attack.alpha", "must be > 0", alpha));
                }
                if t.steps == 0 {
                    return Err(Error::invalid("train_attack.steps", "must be >= 1", 0));
                }
                TrainAttack {
                    eps,
                    alpha,
                    steps: t.steps,
                }
            }
        };
        Ok(match self.training {
            TrainingKind::PgdAt => Training::PgdAt(attack),
            _ => {
                let beta = self.trades_beta.unwrap_or(6.0);
                if !beta.is_finite() || beta < 0.0 {
                    return Err(Error::invalid("trades_beta", "a finite number >= 0", beta));
                }
                Training::Trades { attack, beta }
            }
        })
    }

    /// The model as written, for errors: the name or path, or "an inline table".
    fn model_label(&self) -> String {
        match &self.model {
            ModelSpec::Name(n) => n.clone(),
            ModelSpec::Table(_) => "an inline table".into(),
        }
    }

    /// `[pretrain]`: rate and steps, and its dataset (never a `domains` one).
    fn check_pretrain(&self, image_size: usize) -> Result<()> {
        check::positive("pretrain.lr", self.pretrain.lr)?;
        if let Some(d) = &self.pretrain.dataset {
            if d.kind == DataKind::Domains {
                return Err(Error::invalid(
                    "pretrain.dataset.kind",
                    "pretrain on one domain with kind = \"image-folder\" and data_dir = ROOT/<domain>",
                    d.kind,
                ));
            }
            check_source(
                d.kind,
                d.task.as_deref(),
                d.classes.as_deref(),
                image_size,
                "pretrain.dataset.",
            )?;
            if d.train_images == Some(0) {
                return Err(Error::invalid("pretrain.dataset.train_images", "must be >= 1", 0));
            }
        }
        Ok(())
    }

    /// The evaluation steps of `schedule` at `max_steps`; at least one must train.
    fn eval_steps(&self) -> Result<Vec<u64>> {
        let schedule = match &self.schedule {
            ScheduleSpec::Name(n) if n == "paper" => Schedule::Paper,
            ScheduleSpec::Name(n) if n == "repo" => Schedule::Repo,
            ScheduleSpec::Name(n) => {
                return Err(Error::invalid("schedule", "expected paper, repo or a list of steps", n));
            }
            ScheduleSpec::List(v) => Schedule::list(v.clone())?,
        };
        let eval_steps = scaled_steps(&schedule, self.max_steps as u64, self.schedule_reference_steps);
        if eval_steps.iter().all(|&s| s == 0) {
            return Err(Error::invalid(
                "schedule",
                format!("has no step in 1..=max_steps = {}", self.max_steps),
                schedule,
            ));
        }
        Ok(eval_steps)
    }

    /// Every `[[datasets]]` table: source, sizes, a unique plain name, domain and OOD; returns
    /// the parsed OOD of each.
    fn check_datasets(&self, image_size: usize) -> Result<Vec<Ood>> {
        if self.datasets.is_empty() {
            return Err(Error::invalid(
                "datasets",
                "need at least one [[datasets]] table",
                "none",
            ));
        }
        let mut ood = Vec::new();
        for (i, d) in self.datasets.iter().enumerate() {
            let key = |k: &str| format!("datasets[{i}].{k}");
            check_source(d.kind, d.task.as_deref(), d.classes.as_deref(), image_size, &key(""))?;
            if d.train_images == 0 {
                return Err(Error::invalid(key("train_images"), "must be >= 1", 0));
            }
            if d.name.is_empty() || d.name == "." || d.name == ".." || d.name.contains(['/', '\\']) {
                return Err(Error::invalid(key("name"), "must be a plain folder name", &d.name));
            }
            if self.datasets[..i].iter().any(|o| o.name == d.name) {
                return Err(Error::invalid(key("name"), "is used by an earlier dataset", &d.name));
            }
            match (d.kind, &d.domain) {
                (DataKind::Domains, None) => {
                    return Err(Error::invalid(
                        key("domain"),
                        "a domains dataset needs the domain it trains on",
                        "nothing",
                    ));
                }
                (DataKind::Domains, Some(dom))
                    if dom.is_empty() || dom == "." || dom == ".." || dom.contains(['/', '\\']) =>
                {
                    return Err(Error::invalid(key("domain"), "must be a plain folder name", dom));
                }
                (DataKind::Domains, Some(_)) => {}
                (_, Some(dom)) => {
                    return Err(Error::invalid(
                        key("domain"),
                        "only a dataset of kind `domains` has one",
                        dom,
                    ));
                }
                (_, None) => {}
            }
            ood.push(parse_ood(&d.ood, d.kind).map_err(|e| e.rename_field("ood", &key("ood")))?);
        }
        Ok(ood)
    }

    fn check_optimizer(&self, strategies: &[Strategy]) -> Result<()> {
        match &self.optimizer {
            OptimizerSpec::Preset(OptimizerPreset::Paper) => Ok(()),
            OptimizerSpec::Custom(t) => {
                for (k, v) in &t.lr {
                    let s = parse_strategy(k).map_err(|e| e.rename_field("strategy", &format!("optimizer.lr.{k}")))?;
                    if s.id() != k {
                        return Err(Error::invalid(
                            format!("optimizer.lr.{k}"),
                            format!("write the strategy as {}", s.id()),
                            k,
                        ));
                    }
                    check::positive(&format!("optimizer.lr.{k}"), *v)?;
                }
                if let Some(s) = strategies.iter().find(|s| !t.lr.contains_key(s.id())) {
                    return Err(Error::invalid(
                        format!("optimizer.lr.{}", s.id()),
                        "every strategy of the run needs a learning rate",
                        "nothing",
                    ));
                }
                if t.warmup_steps >= self.max_steps {
                    return Err(Error::invalid(
                        "optimizer.warmup_steps",
                        format!("must be < max_steps = {}", self.max_steps),
                        t.warmup_steps,
                    ));
                }
                check::non_negative("optimizer.weight_decay", t.weight_decay)?;
                if let Some(c) = t.clip_grad_norm {
                    check::positive("optimizer.clip_grad_norm", c)?;
                }
                Ok(())
            }
        }
    }

    fn attacks(&self) -> Result<Vec<Attack>> {
        self.attack.attacks()
    }
}

/// The budget of a configured attack, checked against its kind: iterations, Square queries
/// (0 where there is no Square) and targets.
struct Budget {
    steps: usize,
    queries: usize,
    targets: usize,
}

impl AttackSpec {
    /// One attack per radius (increasing), as configured; errors name the `attack.*` key.
    pub fn attacks(&self) -> Result<Vec<Attack>> {
        let eps = self.eps.values()?;
        if self.alpha.is_some() && eps.len() > 1 {
            return Err(Error::invalid(
                "attack.alpha",
                "give alpha only with a single eps (with several, alpha = eps/4 for each)",
                self.alpha.unwrap_or_default(),
            ));
        }
        let budget = self.budget()?;
        eps.iter().map(|&e| self.attack_at(e, &budget)).collect()
    }

    /// The steps, queries and targets, each checked against the kind in that order; the defaults
    /// are the engine's.
    fn budget(&self) -> Result<Budget> {
        let a = self;
        let steps = match (a.kind, a.steps) {
            (_, Some(0)) => return Err(Error::invalid("attack.steps", "must be >= 1", 0)),
            (AttackKind::Pgd, None) => {
                return Err(Error::invalid("attack.steps", "required for kind = \"pgd\"", "none"));
            }
            (AttackKind::Square, Some(_)) => {
                return Err(Error::invalid(
                    "attack.steps",
                    "not for square: give its budget as queries",
                    "steps",
                ));
            }
            (_, s) => s.unwrap_or(ApgdConfig::default().steps),
        };
        let queries = match (a.kind, a.queries) {
            (_, Some(0)) => return Err(Error::invalid("attack.queries", "must be >= 1", 0)),
            (AttackKind::Square | AttackKind::Autoattack, q) => q.unwrap_or(SquareConfig::default().queries),
            (_, Some(q)) => return Err(Error::invalid("attack.queries", "only for square and autoattack", q)),
            (_, None) => 0,
        };
        let targets = match a.targets {
            Some(0) => return Err(Error::invalid("attack.targets", "must be >= 1", 0)),
            Some(_) if !matches!(a.kind, AttackKind::ApgdT | AttackKind::FabT | AttackKind::Autoattack) => {
                return Err(Error::invalid(
                    "attack.targets",
                    "only for apgd-t, fab-t and autoattack",
                    format!("{:?}", a.kind),
                ));
            }
            t => t.unwrap_or(ApgdConfig::default().targets),
        };
        Ok(Budget {
            steps,
            queries,
            targets,
        })
    }

    /// The attack at radius `e` with `budget` (PGD's α: as configured, else `e`/4).
    fn attack_at(&self, e: f64, budget: &Budget) -> Result<Attack> {
        let Budget {
            steps,
            queries,
            targets,
        } = *budget;
        let apgd = |eps, loss| {
            Attack::Apgd(ApgdConfig {
                eps,
                steps,
                loss,
                targets,
            })
        };
        match self.kind {
            AttackKind::Pgd => {
                let alpha = self.alpha.unwrap_or(e / 4.0);
                check::non_negative("attack.alpha", alpha)?;
                Ok(Attack::Pgd(PgdConfig {
                    eps: e,
                    alpha,
                    steps,
                    random_start: true,
                    stop: self.stop.unwrap_or_default(),
                }))
            }
            AttackKind::Apgd => Ok(apgd(e, ApgdLoss::Ce)),
            AttackKind::ApgdDlr => Ok(apgd(e, ApgdLoss::Dlr)),
            AttackKind::ApgdT => Ok(apgd(e, ApgdLoss::DlrTargeted)),
            AttackKind::FabT => Ok(Attack::Fab(FabConfig {
                eps: e,
                steps,
                targets,
                ..FabConfig::default()
            })),
            AttackKind::Square => Ok(Attack::Square(SquareConfig {
                eps: e,
                queries,
                ..SquareConfig::default()
            })),
            AttackKind::Autoattack => Ok(Attack::AutoAttack(AutoAttackConfig {
                eps: e,
                steps,
                targets,
                square_queries: queries,
            })),
        }
    }
}

fn parse_ood(s: &str, kind: DataKind) -> Result<Ood> {
    match s {
        "none" => Ok(Ood::None),
        "shifted" if kind == DataKind::Synthetic => Ok(Ood::Shifted),
        "shifted" => Err(Error::invalid("ood", "`shifted` needs a synthetic dataset", s)),
        "domains" if kind == DataKind::Domains => Ok(Ood::Domains),
        "domains" => Err(Error::invalid("ood", "`domains` needs a dataset of kind `domains`", s)),
        other => {
            let parts: Vec<&str> = other.split(':').collect();
            if parts.len() == 3 && parts[0] == "corruption" {
                let c = Corruption::parse(parts[1]).map_err(|e| e.rename_field("corruption", "ood"))?;
                let sev: u8 = parts[2]
                    .parse()
                    .map_err(|_| Error::invalid("ood", "severity must be 1..5", parts[2]))?;
                if !(1..=5).contains(&sev) {
                    return Err(Error::invalid("ood", "severity must be 1..5", sev));
                }
                return Ok(Ood::Corruption(c, sev));
            }
            Err(Error::invalid(
                "ood",
                "expected none, shifted, domains or corruption:<name>:<severity>",
                other,
            ))
        }
    }
}

/// The schedule's steps, optionally scaled: the steps ≤ `reference` are mapped by
/// k ↦ round(k·max/reference) (duplicates dropped; a step that rounds to 0 is dropped unless the
/// schedule itself lists 0), so a short run keeps the schedule's shape (dense early, sparse
/// late). Without a reference, the schedule's own steps ≤ max. Step 0 (the model before any
/// update) is evaluated whenever the schedule lists it.
pub fn scaled_steps(s: &Schedule, max: u64, reference: Option<u64>) -> Vec<u64> {
    match reference {
        Some(r) if r > 0 && !matches!(s, Schedule::List(_)) => {
            let mut out: Vec<u64> = s
                .steps(r)
                .into_iter()
                .map(|k| (k, ((k as f64) * max as f64 / r as f64).round() as u64))
                .filter(|&(k, m)| (m > 0 || k == 0) && m <= max)
                .map(|(_, m)| m)
                .collect();
            out.dedup();
            out
        }
        _ => s.steps(max),
    }
}
