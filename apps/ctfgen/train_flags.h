// Flags shared by the training subcommands: optimiser, schedule, steps, checkpoints, seed.
#pragma once
#include <CLI/CLI.hpp>

#include "train/optim.h"
#include "train/trainer.h"

namespace ctfgen::cli {

/// Declares --steps --lr --optimizer --beta1 --beta2 --weight-decay --grad-clip --warmup
/// --schedule --min-lr-ratio --checkpoint-every --log-every --max-nonfinite --seed bound to the
/// given structs (their current values are the defaults shown in --help).
void add_training_flags(CLI::App& app, train::OptimConfig& optim, train::TrainerConfig& trainer);

}  // namespace ctfgen::cli
