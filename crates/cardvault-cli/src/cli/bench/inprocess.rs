//! Bench the library in this process: N threads on one `Vault` in a throwaway directory, with the
//! same durability as the daemon, for the "daemon vs library" ratio.

use std::{sync::Arc, time::Instant};

use anyhow::Context;
use cardvault::{
    Expiry, KeySource, MerchantId, NewCard, Pan, SecretKey, Token, TokenizeOptions,
    TokenizeRequest, Vault, VaultOptions,
};

use super::{BenchArgs, EXPIRY, Live, Op, Plan, Step, Tally};
use crate::cli::cards::PanSource;

pub(super) struct Run {
    vault: Vault,
    dir: tempfile::TempDir,
    merchant: MerchantId,
    threads: u32,
    op: Op,
    batch_size: u32,
    pool: Arc<Vec<Token>>,
    pans: Arc<PanSource>,
    live: Arc<Live>,
}

impl Run {
    pub(super) fn new(
        args: &BenchArgs,
        pans: Arc<PanSource>,
        live: Arc<Live>,
    ) -> anyhow::Result<Self> {
        let mut b = tempfile::Builder::new();
        b.prefix("cardvault-bench-");
        let dir = match &args.tmp_dir {
            Some(parent) => b.tempdir_in(parent),
            None => b.tempdir(),
        }
        .context("creating a temporary directory")?;
        let key = KeySource::KeyFile(SecretKey::generate(&mut rand::rng()));
        let vault = Vault::create(dir.path().join("data"), &key, VaultOptions::default())
            .context("creating the bench vault")?;
        let merchant = MerchantId::parse("890490").context("merchant id")?;
        let mut pool = Vec::new();
        if args.op.needs_pool() {
            let mut left = args.pool;
            while left > 0 {
                let size = left.min(1000);
                left -= size;
                let items = (0..size)
                    .map(|_| request(&pans))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                for r in vault.tokenize_batch(merchant, items)? {
                    pool.push(r.context("tokenizing the card pool")?.token);
                }
            }
        }
        Ok(Self {
            vault,
            dir,
            merchant,
            threads: args.connections,
            op: args.op,
            batch_size: args.batch_size,
            pool: Arc::new(pool),
            pans,
            live,
        })
    }

    pub(super) fn describe(&self) -> String {
        format!("in-process vault in {}", self.dir.path().display())
    }

    pub(super) fn go(&self, plan: &Plan) -> anyhow::Result<Tally> {
        let results = std::thread::scope(|s| {
            let workers: Vec<_> = (0..self.threads)
                .map(|w| s.spawn(move || self.worker(u64::from(w), plan)))
                .collect();
            workers
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("bench thread panicked")))
                })
                .collect::<Vec<_>>()
        });
        let mut total = Tally::new()?;
        for r in results {
            total.merge(r?)?;
        }
        Ok(total)
    }

    fn worker(&self, w: u64, plan: &Plan) -> anyhow::Result<Tally> {
        let mut tally = Tally::new()?;
        let mut i = 0u64;
        while let Some(n) = plan.next() {
            let step = Step::pick(self.op, i);
            i += 1;
            let started = Instant::now();
            let pick = usize::try_from(n.wrapping_mul(7919).wrapping_add(w)).unwrap_or(0)
                % self.pool.len().max(1);
            let outcome: anyhow::Result<u64> = match step {
                Step::Tokenize => self
                    .vault
                    .tokenize(self.merchant, card(&self.pans)?, TokenizeOptions::default())
                    .map(|_| 1)
                    .map_err(Into::into),
                Step::Batch => (0..self.batch_size)
                    .map(|_| request(&self.pans))
                    .collect::<anyhow::Result<Vec<_>>>()
                    .and_then(|items| Ok(self.vault.tokenize_batch(self.merchant, items)?))
                    .map(|r| r.iter().filter(|x| x.is_ok()).count() as u64),
                Step::Get => match self.pool.get(pick) {
                    Some(t) => self
                        .vault
                        .get(self.merchant, t)
                        .map(|_| 0)
                        .map_err(Into::into),
                    None => Err(anyhow::anyhow!("empty pool")),
                },
                Step::Reveal => match self.pool.get(pick) {
                    Some(t) => self
                        .vault
                        .reveal(self.merchant, t, None)
                        .map(|_| 0)
                        .map_err(Into::into),
                    None => Err(anyhow::anyhow!("empty pool")),
                },
            };
            match outcome {
                Ok(items) => tally.success(started, items, &self.live),
                Err(e) => tally.failure(label(&e), &self.live),
            }
        }
        Ok(tally)
    }
}

fn card(pans: &PanSource) -> anyhow::Result<NewCard> {
    let pan = Pan::parse(&pans.next_pan()).context("generated card number")?;
    let expiry = Expiry::parse_yymm(EXPIRY).context("expiry")?;
    Ok(NewCard::new(pan, expiry))
}

fn request(pans: &PanSource) -> anyhow::Result<TokenizeRequest> {
    Ok(TokenizeRequest {
        card: card(pans)?,
        options: TokenizeOptions::default(),
    })
}

fn label(e: &anyhow::Error) -> String {
    match e.downcast_ref::<cardvault::VaultError>() {
        Some(cardvault::VaultError::NotFound) => "not-found".to_owned(),
        Some(cardvault::VaultError::Invalid(f)) => format!("invalid:{}", f.field),
        Some(cardvault::VaultError::Store(_)) => "store".to_owned(),
        Some(_) => "vault".to_owned(),
        None => "other".to_owned(),
    }
}
