#include "vq/vq_config.h"

#include <sstream>

#include "core/error.h"
#include "core/json_config.h"

namespace ctfgen::vq {

nlohmann::json VQConfig::to_json() const { return fields_to_json(*this); }

VQConfig VQConfig::from_json(const nlohmann::json& j) {
  return fields_from_json<VQConfig>(j, "VQ config");
}

namespace {
std::string list_str(const std::vector<int64_t>& v) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << "]";
  return os.str();
}

void check_channels(const VQConfig& c, int64_t channels, const char* what) {
  CTFGEN_CHECK_USAGE(channels % c.norm_groups == 0, "VQ config: norm_groups ", c.norm_groups,
                     " does not divide the ", what, " channel count ", channels);
}
}  // namespace

void VQConfig::validate() const {
  CTFGEN_CHECK_USAGE(codebook_size >= 1 && codebook_size <= (int64_t{1} << 24),
                     "VQ config: codebook_size must be in [1, 2^24], got ", codebook_size);
  CTFGEN_CHECK_USAGE(codebook_dim >= 1 && codebook_dim <= 4096,
                     "VQ config: codebook_dim must be in [1, 4096], got ", codebook_dim);
  CTFGEN_CHECK_USAGE(commit_beta >= 0.0, "VQ config: commit_beta must be >= 0, got ", commit_beta);
  CTFGEN_CHECK_USAGE(entropy_loss_ratio >= 0.0, "VQ config: entropy_loss_ratio must be >= 0, got ",
                     entropy_loss_ratio);
  CTFGEN_CHECK_USAGE(entropy_temperature > 0.0,
                     "VQ config: entropy_temperature must be > 0, got ", entropy_temperature);
  CTFGEN_CHECK_USAGE(dead_code_restart_every >= 0,
                     "VQ config: dead_code_restart_every must be >= 0, got ",
                     dead_code_restart_every);
  CTFGEN_CHECK_USAGE(dead_code_noise >= 0.0, "VQ config: dead_code_noise must be >= 0, got ",
                     dead_code_noise);
  CTFGEN_CHECK_USAGE(in_channels >= 1 && in_channels <= 64,
                     "VQ config: in_channels must be in [1, 64], got ", in_channels);
  CTFGEN_CHECK_USAGE(base_channels >= 1, "VQ config: base_channels must be >= 1, got ",
                     base_channels);
  CTFGEN_CHECK_USAGE(!encoder_ch_mult.empty() && encoder_ch_mult.size() <= 8,
                     "VQ config: encoder_ch_mult must have 1..8 levels, got ",
                     list_str(encoder_ch_mult));
  CTFGEN_CHECK_USAGE(decoder_ch_mult.size() == encoder_ch_mult.size(),
                     "VQ config: decoder_ch_mult ", list_str(decoder_ch_mult),
                     " must have as many levels as encoder_ch_mult ", list_str(encoder_ch_mult));
  CTFGEN_CHECK_USAGE(encoder_num_res_blocks >= 1,
                     "VQ config: encoder_num_res_blocks must be >= 1, got ",
                     encoder_num_res_blocks);
  CTFGEN_CHECK_USAGE(decoder_num_res_blocks >= 1,
                     "VQ config: decoder_num_res_blocks must be >= 1, got ",
                     decoder_num_res_blocks);
  CTFGEN_CHECK_USAGE(z_channels >= 1, "VQ config: z_channels must be >= 1, got ", z_channels);
  CTFGEN_CHECK_USAGE(dropout >= 0.0 && dropout < 1.0, "VQ config: dropout must be in [0, 1), got ",
                     dropout);
  CTFGEN_CHECK_USAGE(norm_groups >= 1, "VQ config: norm_groups must be >= 1, got ", norm_groups);
  CTFGEN_CHECK_USAGE(norm_eps > 0.0, "VQ config: norm_eps must be > 0, got ", norm_eps);
  for (auto m : encoder_ch_mult)
    CTFGEN_CHECK_USAGE(m >= 1, "VQ config: encoder_ch_mult entries must be >= 1, got ",
                       list_str(encoder_ch_mult));
  for (auto m : decoder_ch_mult)
    CTFGEN_CHECK_USAGE(m >= 1, "VQ config: decoder_ch_mult entries must be >= 1, got ",
                       list_str(decoder_ch_mult));
  check_channels(*this, base_channels, "base");
  for (auto m : encoder_ch_mult) check_channels(*this, base_channels * m, "encoder level");
  for (auto m : decoder_ch_mult) check_channels(*this, base_channels * m, "decoder level");
  CTFGEN_CHECK_USAGE(image_size >= 1 && image_size % downsample_factor() == 0,
                     "VQ config: image_size ", image_size,
                     " must be a positive multiple of the down-sampling factor ",
                     downsample_factor());
}

int64_t VQConfig::downsample_factor() const {
  return int64_t{1} << (encoder_ch_mult.empty() ? 0 : encoder_ch_mult.size() - 1);
}

std::pair<int64_t, int64_t> VQConfig::grid_size(int64_t height, int64_t width) const {
  const int64_t f = downsample_factor();
  CTFGEN_CHECK_USAGE(height >= f && width >= f && height % f == 0 && width % f == 0,
                     "VQ: image size ", height, "x", width,
                     " is not a positive multiple of the down-sampling factor ", f);
  return {height / f, width / f};
}

std::vector<std::string> VQConfig::preset_names() {
  return {"VQ-16", "VQ-8", "fmnist", "emoji32", "emoji64"};
}

VQConfig VQConfig::preset(const std::string& name) {
  VQConfig c;  // defaults are LlamaGen VQ-16
  if (name == "VQ-16") return c;
  if (name == "VQ-8") {
    c.encoder_ch_mult = c.decoder_ch_mult = {1, 2, 2, 4};
    return c;
  }
  if (name == "fmnist") {
    // 28x28 grey -> 7x7 = 49 tokens of a 4096 x 8 L2-normalised codebook. Channel counts and
    // block counts are sized for ~20 minutes of training on 2 CPU cores (docs/tokenizer.md).
    c.codebook_size = 4096;
    c.in_channels = 1;
    c.base_channels = 32;
    c.encoder_ch_mult = c.decoder_ch_mult = {1, 2, 2};
    c.encoder_num_res_blocks = 1;
    c.decoder_num_res_blocks = 1;
    c.z_channels = 64;
    c.norm_groups = 8;
    c.dead_code_restart_every = 50;
    c.image_size = 28;
    return c;
  }
  if (name == "emoji32" || name == "emoji64") {
    // RGB emoji; 32x32 -> 8x8 tokens, 64x64 -> 8x8 tokens (one more level).
    c.codebook_size = 4096;
    c.in_channels = 3;
    c.base_channels = 32;
    c.encoder_ch_mult = c.decoder_ch_mult =
        name == "emoji32" ? std::vector<int64_t>{1, 2, 2} : std::vector<int64_t>{1, 1, 2, 2};
    c.encoder_num_res_blocks = 1;
    c.decoder_num_res_blocks = 2;
    c.z_channels = 64;
    c.norm_groups = 8;
    c.dead_code_restart_every = 50;
    c.image_size = name == "emoji32" ? 32 : 64;
    return c;
  }
  std::string names;
  for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
  throw UsageError(str_cat("unknown VQ preset '", name, "' (known: ", names, ")"));
}

}  // namespace ctfgen::vq
