// The measurements of `ctfgen bench`, one benchmark case at a time (bench_config.h lists them).
// run_case() is what the hidden `ctfgen bench --case NAME --case-spec JSON` runs in a child
// process; it returns a JSON object whose fields are documented per case in cases.cpp. The model
// helpers are shared with the tests.
#pragma once
#include <nlohmann/json.hpp>
#include <cstdint>
#include <string>

#include "bench_support/bench_config.h"
#include "models/aux_model.h"
#include "models/gpt.h"

namespace ctfgen::bench {

/// GPT of trunk `preset` with vocab_size `vocab`, block_size grid^2 and the preset's classes.
models::GPTConfig gpt_config(const BenchConfig& config, const std::string& preset, int64_t vocab);
/// Stage-2 model: trunk config.aux_preset ("same" = `preset`), K -> V, the same grid and classes
/// as gpt_config(config, preset, ...).
models::AuxConfig aux_config(const BenchConfig& config, const std::string& preset);

/// Random weights: the module's own init from `seed`, then the zero-initialised output head
/// drawn from N(0, initializer_range) too, so the logits are not all equal. Eval mode.
models::GPT random_gpt(const models::GPTConfig& config, uint64_t seed);
models::Aux random_aux(const models::AuxConfig& config, uint64_t seed);
/// Loads a GPT component file (kind "gpt"), eval mode.
models::GPT load_gpt(const std::string& path);

/// Parameters that take part in matrix products per token: L (4 D^2 + 3 D F) + D V (the output
/// head; the embedding tables are row lookups).
int64_t matmul_params(const models::TrunkConfig& trunk, int64_t out_vocab);
/// Weight bytes one decode step of `rows` sequences reads: every parameter except the embedding
/// tables, plus the `rows` looked-up token-embedding rows.
int64_t decode_weight_bytes(const models::GPT& model, int64_t rows);
/// KV-cache bytes one decode step at sequence position `pos` reads: keys and values of positions
/// 0 .. pos for `rows` sequences in every layer.
int64_t decode_kv_bytes(const models::GPTConfig& config, int64_t rows, int64_t pos,
                        int64_t elem_bytes);
/// FLOPs of forward_full over B sequences of S positions as implemented (attention scores are
/// computed for the full S x S square before masking): 2 P_matmul B S + 4 L B S^2 D.
double forward_flops(const models::GPTConfig& config, int64_t B, int64_t S);

/// Runs one case in this process (validates the spec first) and returns its result.
nlohmann::json run_case(const CaseSpec& spec);

}  // namespace ctfgen::bench
