// Configuration of the LlamaGen-style VQ tokenizer (LlamaGen vq_model.py: ModelArgs, VQ_models).
// The presets "VQ-16" and "VQ-8" reproduce LlamaGen's tokenizers exactly (names, shapes,
// parameter counts); the small presets ("fmnist", "emoji32", "emoji64") are for the datasets
// ctfgen trains on a CPU.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace ctfgen::vq {

/// Size of LlamaGen's `quantize.codebook_used` rolling window of recent indices (fixed, part of
/// the state dict).
constexpr int64_t kCodebookUsedWindow = 65536;

struct VQConfig {
  // Quantiser.
  int64_t codebook_size = 16384;        // V: number of codes
  int64_t codebook_dim = 8;             // D: code dimension
  bool codebook_l2_norm = true;         // L2-normalise z and codes before lookup (LlamaGen: true)
  double commit_beta = 0.25;            // weight of the commitment loss
  double entropy_loss_ratio = 0.0;      // weight of the entropy loss (0 = off, LlamaGen default)
  double entropy_temperature = 0.01;    // softmax temperature of the entropy loss on -distances
  int64_t dead_code_restart_every = 0;  // training steps between dead-code restarts; 0 = off
  double dead_code_noise = 0.0;         // std of Gaussian noise added to re-seeded codes
  // Autoencoder.
  int64_t in_channels = 3;              // C: image channels (decoder output channels too)
  int64_t base_channels = 128;          // `ch`: channels of the first level
  std::vector<int64_t> encoder_ch_mult{1, 1, 2, 2, 4};  // per-level channel multipliers
  std::vector<int64_t> decoder_ch_mult{1, 1, 2, 2, 4};  // listed from the highest resolution
  int64_t encoder_num_res_blocks = 2;   // ResnetBlocks per encoder level
  int64_t decoder_num_res_blocks = 3;   // ResnetBlocks per decoder level
  int64_t z_channels = 256;             // encoder output / decoder input channels
  double dropout = 0.0;                 // dropout inside ResnetBlocks
  int64_t norm_groups = 32;             // GroupNorm groups; must divide every channel count
  double norm_eps = 1e-6;               // GroupNorm epsilon
  int64_t image_size = 256;             // nominal (square) training image size; the model itself
                                        // accepts any size divisible by the down-sampling factor

  nlohmann::json to_json() const;
  static VQConfig from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("codebook_size", self.codebook_size);
    visit("codebook_dim", self.codebook_dim);
    visit("codebook_l2_norm", self.codebook_l2_norm);
    visit("commit_beta", self.commit_beta);
    visit("entropy_loss_ratio", self.entropy_loss_ratio);
    visit("entropy_temperature", self.entropy_temperature);
    visit("dead_code_restart_every", self.dead_code_restart_every);
    visit("dead_code_noise", self.dead_code_noise);
    visit("in_channels", self.in_channels);
    visit("base_channels", self.base_channels);
    visit("encoder_ch_mult", self.encoder_ch_mult);
    visit("decoder_ch_mult", self.decoder_ch_mult);
    visit("encoder_num_res_blocks", self.encoder_num_res_blocks);
    visit("decoder_num_res_blocks", self.decoder_num_res_blocks);
    visit("z_channels", self.z_channels);
    visit("dropout", self.dropout);
    visit("norm_groups", self.norm_groups);
    visit("norm_eps", self.norm_eps);
    visit("image_size", self.image_size);
  }
  /// Throws UsageError naming the field and value.
  void validate() const;

  /// Spatial down-sampling factor of the encoder: 2^(levels - 1).
  int64_t downsample_factor() const;
  /// Token grid (h, w) for an H x W image; throws UsageError if H or W is not divisible by
  /// downsample_factor().
  std::pair<int64_t, int64_t> grid_size(int64_t height, int64_t width) const;

  /// Named presets: "VQ-16", "VQ-8" (LlamaGen), "fmnist", "emoji32", "emoji64". Throws UsageError
  /// listing the names for an unknown one.
  static VQConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
};

}  // namespace ctfgen::vq
