#include "models/model_config.h"

#include <cmath>

#include "core/error.h"

namespace ctfgen::models {
namespace {

struct Preset {
  const char* name;
  int64_t dim, n_layer, n_head, multiple_of;
  int64_t vocab, num_classes, block_size;  // defaults for GPTConfig
  int64_t coarse, fine;                    // defaults for AuxConfig
};

// LlamaGen GPT_models (LlamaGen gpt.py) and small CPU sizes.
const Preset kPresets[] = {
    {"GPT-B", 768, 12, 12, 256, 16384, 1000, 256, 512, 16384},
    {"GPT-L", 1024, 24, 16, 256, 16384, 1000, 256, 512, 16384},
    {"GPT-XL", 1280, 36, 20, 256, 16384, 1000, 256, 512, 16384},
    {"GPT-XXL", 1536, 48, 24, 256, 16384, 1000, 256, 512, 16384},
    {"GPT-3B", 3200, 24, 32, 256, 16384, 1000, 256, 512, 16384},
    {"tiny", 32, 2, 2, 16, 64, 10, 16, 8, 64},
    {"small", 128, 4, 4, 64, 1024, 10, 64, 64, 1024},
    {"base", 256, 8, 8, 256, 1024, 10, 256, 64, 1024},
};

const Preset& find_preset(const std::string& name) {
  for (const auto& p : kPresets)
    if (name == p.name) return p;
  std::string known;
  for (const auto& p : kPresets) known += std::string(known.empty() ? "" : ", ") + p.name;
  throw UsageError(str_cat("unknown model preset '", name, "' (known: ", known, ")"));
}

bool is_perfect_square(int64_t n) {
  if (n < 1) return false;
  auto r = static_cast<int64_t>(std::llround(std::sqrt(double(n))));
  return r * r == n;
}

void check_prob(const std::string& what, const char* field, double p) {
  CTFGEN_CHECK_USAGE(p >= 0.0 && p < 1.0, what, ": ", field, " must be in [0, 1), got ", p);
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> out;
  for (const auto& p : kPresets) out.emplace_back(p.name);
  return out;
}

int64_t TrunkConfig::grid() const {
  return static_cast<int64_t>(std::llround(std::sqrt(double(block_size))));
}

int64_t TrunkConfig::ffn_hidden() const {
  int64_t hidden = (2 * 4 * dim) / 3;
  if (ffn_dim_multiplier > 0) hidden = static_cast<int64_t>(ffn_dim_multiplier * hidden);
  return (hidden + multiple_of - 1) / multiple_of * multiple_of;
}

int64_t TrunkConfig::trunk_params() const {
  const int64_t per_layer = 4 * dim * dim + 3 * dim * ffn_hidden() + 2 * dim;
  return (num_classes + 1) * dim + n_layer * per_layer + dim;
}

void TrunkConfig::validate_trunk(const std::string& what) const {
  CTFGEN_CHECK_USAGE(dim >= 1, what, ": dim must be >= 1, got ", dim);
  CTFGEN_CHECK_USAGE(n_layer >= 1, what, ": n_layer must be >= 1, got ", n_layer);
  CTFGEN_CHECK_USAGE(n_head >= 1 && dim % n_head == 0, what, ": n_head ", n_head,
                     " must be >= 1 and divide dim ", dim);
  CTFGEN_CHECK_USAGE(head_dim() % 4 == 0, what, ": head_dim = dim / n_head = ", head_dim(),
                     " must be a multiple of 4 (2D RoPE)");
  CTFGEN_CHECK_USAGE(num_classes >= 1, what, ": num_classes must be >= 1, got ", num_classes);
  CTFGEN_CHECK_USAGE(cls_token_num == 1, what, ": cls_token_num must be 1 (class-conditional), got ",
                     cls_token_num);
  CTFGEN_CHECK_USAGE(is_perfect_square(block_size), what,
                     ": block_size must be a perfect square (tokens per image), got ", block_size);
  CTFGEN_CHECK_USAGE(multiple_of >= 1, what, ": multiple_of must be >= 1, got ", multiple_of);
  CTFGEN_CHECK_USAGE(ffn_dim_multiplier >= 0, what, ": ffn_dim_multiplier must be >= 0 (0 = none), got ",
                     ffn_dim_multiplier);
  CTFGEN_CHECK_USAGE(norm_eps > 0, what, ": norm_eps must be > 0, got ", norm_eps);
  CTFGEN_CHECK_USAGE(rope_base > 1, what, ": rope_base must be > 1, got ", rope_base);
  check_prob(what, "token_dropout_p", token_dropout_p);
  check_prob(what, "resid_dropout_p", resid_dropout_p);
  check_prob(what, "ffn_dropout_p", ffn_dropout_p);
  check_prob(what, "class_dropout_prob", class_dropout_prob);
  CTFGEN_CHECK_USAGE(initializer_range > 0, what, ": initializer_range must be > 0, got ",
                     initializer_range);
}

void TrunkConfig::set_trunk_preset(const std::string& name) {
  const Preset& p = find_preset(name);
  *this = TrunkConfig{};
  dim = p.dim;
  n_layer = p.n_layer;
  n_head = p.n_head;
  multiple_of = p.multiple_of;
  num_classes = p.num_classes;
  block_size = p.block_size;
}

// ---------------------------------------------------------------------------------------------
int64_t GPTConfig::num_params() const { return trunk_params() + 2 * vocab_size * dim; }

nlohmann::json GPTConfig::to_json() const { return fields_to_json(*this); }

GPTConfig GPTConfig::from_json(const nlohmann::json& j) {
  return fields_from_json<GPTConfig>(j, "GPTConfig");
}

void GPTConfig::validate() const {
  validate_trunk("GPTConfig");
  CTFGEN_CHECK_USAGE(vocab_size >= 1, "GPTConfig: vocab_size must be >= 1, got ", vocab_size);
}

GPTConfig GPTConfig::preset(const std::string& name) {
  GPTConfig c;
  c.set_trunk_preset(name);
  c.vocab_size = find_preset(name).vocab;
  return c;
}

// ---------------------------------------------------------------------------------------------
int64_t AuxConfig::num_params() const {
  return trunk_params() + coarse_vocab * dim + fine_vocab * dim;
}

nlohmann::json AuxConfig::to_json() const { return fields_to_json(*this); }

AuxConfig AuxConfig::from_json(const nlohmann::json& j) {
  return fields_from_json<AuxConfig>(j, "AuxConfig");
}

void AuxConfig::validate() const {
  validate_trunk("AuxConfig");
  CTFGEN_CHECK_USAGE(coarse_vocab >= 1, "AuxConfig: coarse_vocab must be >= 1, got ", coarse_vocab);
  CTFGEN_CHECK_USAGE(fine_vocab >= 1, "AuxConfig: fine_vocab must be >= 1, got ", fine_vocab);
}

AuxConfig AuxConfig::preset(const std::string& name) {
  AuxConfig c;
  c.set_trunk_preset(name);
  c.coarse_vocab = find_preset(name).coarse;
  c.fine_vocab = find_preset(name).fine;
  return c;
}

}  // namespace ctfgen::models
