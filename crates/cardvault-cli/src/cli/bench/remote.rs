//! Bench against a daemon: one client (one keep-alive connection) per worker task.

use std::{path::Path, sync::Arc, time::Instant};

use anyhow::{Context, bail};
use vault_client::{ApiKey, Client, ClientError};
use vault_wire::{BatchRequest, CardInput, RevealRequest, TokenizeRequest};

use super::{BenchArgs, EXPIRY, Live, Op, Plan, Step, Tally};
use crate::cli::cards::PanSource;

pub(super) struct Run {
    clients: Vec<Client>,
    op: Op,
    batch_size: u32,
    pool: Arc<Vec<String>>,
    pans: Arc<PanSource>,
    live: Arc<Live>,
}

impl Run {
    pub(super) async fn new(
        args: &BenchArgs,
        socket: &Path,
        key: Arc<ApiKey>,
        pans: Arc<PanSource>,
        live: Arc<Live>,
    ) -> anyhow::Result<Self> {
        let mut clients = Vec::new();
        for _ in 0..args.connections {
            clients.push(crate::cli::connect::connect(socket, Some(&key)).await?);
        }
        let pool = if args.op.needs_pool() {
            fill_pool(&clients, &pans, args.pool).await?
        } else {
            Vec::new()
        };
        Ok(Self {
            clients,
            op: args.op,
            batch_size: args.batch_size,
            pool: Arc::new(pool),
            pans,
            live,
        })
    }

    pub(super) async fn go(self, plan: Arc<Plan>) -> anyhow::Result<Tally> {
        let mut tasks = tokio::task::JoinSet::new();
        for (w, client) in self.clients.into_iter().enumerate() {
            let plan = plan.clone();
            let pool = self.pool.clone();
            let pans = self.pans.clone();
            let live = self.live.clone();
            let (op, batch_size) = (self.op, self.batch_size);
            tasks.spawn(async move {
                let mut tally = Tally::new()?;
                let mut i = 0u64;
                while let Some(n) = plan.next() {
                    let step = Step::pick(op, i);
                    i += 1;
                    let started = Instant::now();
                    let token = pool
                        .get(
                            usize::try_from(n.wrapping_mul(7919) + w as u64).unwrap_or(0)
                                % pool.len().max(1),
                        )
                        .map(String::as_str)
                        .unwrap_or("");
                    match one(&client, step, &pans, batch_size, token).await {
                        Ok((items, item_errors)) => {
                            tally.success(started, items, &live);
                            if item_errors > 0 {
                                *tally.errors.entry("batch-item-400".to_owned()).or_default() +=
                                    item_errors;
                            }
                        }
                        Err(e) => tally.failure(label(&e), &live),
                    }
                }
                anyhow::Ok(tally)
            });
        }
        let mut total = Tally::new()?;
        while let Some(done) = tasks.join_next().await {
            total.merge(done.context("bench worker")??)?;
        }
        Ok(total)
    }
}

/// One request; returns the cards stored (or 0 for reads) and the refused batch items.
async fn one(
    client: &Client,
    step: Step,
    pans: &PanSource,
    batch_size: u32,
    token: &str,
) -> Result<(u64, u64), ClientError> {
    match step {
        Step::Tokenize => {
            client.tokenize(&card(pans)).await?;
            Ok((1, 0))
        }
        Step::Batch => {
            let req = BatchRequest {
                items: (0..batch_size).map(|_| card(pans)).collect(),
            };
            let resp = client.tokenize_batch(&req).await?;
            let ok = resp.results.iter().filter(|r| r.status == 201).count() as u64;
            Ok((ok, resp.results.len() as u64 - ok))
        }
        Step::Get => {
            client.get(token).await?;
            Ok((0, 0))
        }
        Step::Reveal => {
            client.reveal(token, &RevealRequest::default()).await?;
            Ok((0, 0))
        }
    }
}

fn card(pans: &PanSource) -> TokenizeRequest {
    TokenizeRequest::card(CardInput::new(pans.next_pan(), EXPIRY))
}

fn label(e: &ClientError) -> String {
    match e {
        ClientError::Http { status, .. } => status.to_string(),
        ClientError::Connect(_) => "connect".to_owned(),
        ClientError::Transport(_) => "transport".to_owned(),
        ClientError::Decode { .. } => "decode".to_owned(),
        _ => "other".to_owned(),
    }
}

/// Tokenizes `n` cards (in batches of up to 1000, spread over the connections) to read back.
async fn fill_pool(clients: &[Client], pans: &PanSource, n: u32) -> anyhow::Result<Vec<String>> {
    let mut tokens = Vec::with_capacity(n as usize);
    let mut left = n;
    while left > 0 {
        let mut round = Vec::new();
        for client in clients {
            if left == 0 {
                break;
            }
            let size = left.min(1000);
            left -= size;
            let req = BatchRequest {
                items: (0..size).map(|_| card(pans)).collect(),
            };
            let client = client.clone();
            round.push(tokio::spawn(
                async move { client.tokenize_batch(&req).await },
            ));
        }
        for r in round {
            let resp = r
                .await
                .context("pool task")?
                .context("tokenizing the card pool")?;
            for item in resp.results {
                match item.token.clone() {
                    Some(t) if item.status == 201 => tokens.push(t),
                    _ => bail!("tokenizing the card pool: an item was refused"),
                }
            }
        }
    }
    Ok(tokens)
}
