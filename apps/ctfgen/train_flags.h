// Flags shared by the training subcommands: optimiser, schedule, steps, checkpoints, seed.
#pragma once
#include <CLI/CLI.hpp>

#include <memory>

#include "train/distributed.h"
#include "train/optim.h"
#include "train/trainer.h"

namespace ctfgen::cli {

/// Declares --steps --lr --optimizer --beta1 --beta2 --weight-decay --grad-clip --warmup
/// --schedule --min-lr-ratio --checkpoint-every --log-every --max-nonfinite --seed bound to the
/// given structs (their current values are the defaults shown in --help).
void add_training_flags(CLI::App& app, train::OptimConfig& optim, train::TrainerConfig& trainer);
/// --allow-steps-change (TrainerConfig::allow_steps_change), for commands with their own --steps.
void add_allow_steps_change_flag(CLI::App& app, train::TrainerConfig& trainer);

/// Joins the data-parallel group that the environment describes (RANK, WORLD_SIZE, MASTER_ADDR,
/// ...; see train/distributed.h and docs/distributed.md). Ranks other than 0 log only warnings,
/// prefixed "rank <r>: ". Without those variables: a single process, no group.
std::shared_ptr<train::DistContext> start_distributed();

/// Throws UsageError when the environment asks for more than one process: for `command`s that
/// do not support data-parallel training (`why` says what stands in the way).
void refuse_distributed(const std::string& command, const std::string& why);

}  // namespace ctfgen::cli
