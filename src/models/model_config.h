// Configurations of the class-conditional transformers: the LlamaGen GPT (stage 1 and baseline)
// and the CTF stage-2 auxiliary model. Field names and defaults follow LlamaGen's ModelArgs
// (LlamaGen gpt.py: ModelArgs). Presets: "GPT-B", "GPT-L", "GPT-XL", "GPT-XXL", "GPT-3B" (exact
// LlamaGen sizes) and the CPU sizes "tiny", "small", "base"; callers override vocab_size /
// num_classes / block_size (and for the aux model coarse_vocab / fine_vocab) for their data.
#pragma once
#include <nlohmann/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "core/json_config.h"

namespace ctfgen::models {

/// Fields shared by GPTConfig and AuxConfig: the transformer trunk and the class conditioning.
struct TrunkConfig {
  int64_t dim = 768;                // model width D
  int64_t n_layer = 12;             // transformer blocks L
  int64_t n_head = 12;              // heads H (head_dim = dim / n_head, a multiple of 4)
  int64_t num_classes = 1000;       // class labels; embedding row num_classes is the null class
  int64_t cls_token_num = 1;        // class tokens before the image tokens (only 1 is supported)
  int64_t block_size = 256;         // image tokens T per image; a perfect square (grid = sqrt(T))
  int64_t multiple_of = 256;        // SwiGLU hidden width rounding
  double ffn_dim_multiplier = 0.0;  // scales the SwiGLU hidden width; 0 = none (LlamaGen None)
  double norm_eps = 1e-5;           // RMSNorm epsilon
  double rope_base = 10000.0;       // RoPE base
  double token_dropout_p = 0.1;     // dropout on the input embeddings (class token included)
  double resid_dropout_p = 0.1;     // dropout after the attention output projection wo
  double ffn_dropout_p = 0.1;       // dropout after the FFN output projection w2
  double class_dropout_prob = 0.1;  // training-time probability of replacing a label by null
  double initializer_range = 0.02;  // std of the N(0, std) init of Linear/Embedding weights

  int64_t head_dim() const { return dim / n_head; }
  int64_t grid() const;                 // sqrt(block_size)
  int64_t ffn_hidden() const;           // find_multiple(int(8 dim / 3) [* mult], multiple_of)
  int64_t seq_len() const { return cls_token_num + block_size; }  // positions incl. class token
  /// Parameters of the trunk alone: class table, layers, final norm (no token table, no head).
  int64_t trunk_params() const;

  /// The trunk's JSON fields, listed once (core/json_config.h); the models' fields() add theirs.
  template <typename Self, typename Visit>
  static void trunk_fields(Self& self, Visit&& visit) {
    visit("dim", self.dim);
    visit("n_layer", self.n_layer);
    visit("n_head", self.n_head);
    visit("num_classes", self.num_classes);
    visit("cls_token_num", self.cls_token_num);
    visit("block_size", self.block_size);
    visit("multiple_of", self.multiple_of);
    visit("ffn_dim_multiplier", self.ffn_dim_multiplier);
    visit("norm_eps", self.norm_eps);
    visit("rope_base", self.rope_base);
    visit("token_dropout_p", self.token_dropout_p);
    visit("resid_dropout_p", self.resid_dropout_p);
    visit("ffn_dropout_p", self.ffn_dropout_p);
    visit("class_dropout_prob", self.class_dropout_prob);
    visit("initializer_range", self.initializer_range);
  }
  void validate_trunk(const std::string& what) const;  // throws UsageError naming the field
  /// Sets the trunk fields of preset `name` (see preset_names()); throws UsageError if unknown.
  void set_trunk_preset(const std::string& name);
};

/// The LlamaGen c2i GPT (stage-1 coarse model with vocab_size = K, baseline with V).
struct GPTConfig : TrunkConfig {
  int64_t vocab_size = 16384;  // token table rows and output classes

  /// Total parameter count from the formula (equals the module's numel sum).
  int64_t num_params() const;
  nlohmann::json to_json() const;
  static GPTConfig from_json(const nlohmann::json& j);  // does not validate
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    trunk_fields(self, visit);
    visit("vocab_size", self.vocab_size);
  }
  void validate() const;
  /// A preset with its default vocab/classes/block size; override fields afterwards.
  static GPTConfig preset(const std::string& name);
};

/// The CTF stage-2 auxiliary model: [class, coarse_0 .. coarse_{T-1}] -> fine logits at each
/// image position, bidirectional attention.
struct AuxConfig : TrunkConfig {
  int64_t coarse_vocab = 512;   // K: rows of tok_embeddings (coarse labels)
  int64_t fine_vocab = 16384;   // V: output classes (VQ codebook size)

  int64_t num_params() const;
  nlohmann::json to_json() const;
  static AuxConfig from_json(const nlohmann::json& j);  // does not validate
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    trunk_fields(self, visit);
    visit("coarse_vocab", self.coarse_vocab);
    visit("fine_vocab", self.fine_vocab);
  }
  void validate() const;
  /// Same trunk presets as GPTConfig; GPT-* presets default to K 512, V 16384.
  static AuxConfig preset(const std::string& name);
};

/// "GPT-B", "GPT-L", "GPT-XL", "GPT-XXL", "GPT-3B", "tiny", "small", "base".
std::vector<std::string> preset_names();

/// Validates `c` and returns it, for constructor initialiser lists that build from a config.
template <class Config>
const Config& validated(const Config& c) {
  c.validate();
  return c;
}

}  // namespace ctfgen::models
