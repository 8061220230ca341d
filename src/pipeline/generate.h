// Generation facade shared by `ctfgen sample`, `ctfgen eval`, `ctfgen demo` and the benchmark:
// loads a tokenizer, a stage-1 (or baseline) GPT and optionally a stage-2 aux model with its
// cluster file, checks that they belong together, and turns class labels into images.
#pragma once
#include <ATen/core/Generator.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cluster/coarse_map.h"
#include "io/checkpoint.h"
#include "models/aux_model.h"
#include "models/gpt.h"
#include "sampling/sampling_config.h"
#include "vq/vq_model.h"

namespace ctfgen::pipeline {

struct GeneratorFiles {
  std::string tokenizer;  // kind "vq" component file
  std::string model;      // kind "gpt": CTF stage 1 (meta stage "coarse") or baseline
  std::string aux;        // kind "aux" (CTF only), "" for the baseline
  std::string clusters;   // kind "clusters" (CTF only)
  std::string code_counts;  // token directory (ctfgen encode) whose code frequencies define the
                            // "frequent" fine decoder; "" = not loaded
};

struct Generator {
  std::string mode;  // "ctf" or "baseline"
  vq::VQModel vq{nullptr};
  models::GPT gpt{nullptr};
  models::Aux aux{nullptr};
  std::optional<cluster::CoarseMap> clusters;
  at::Tensor member_mask;  // [K, V] bool, CTF only
  at::Tensor centroid_member;  // [K] int64: the member nearest its cluster's centroid (CTF only)
  at::Tensor frequent_member;  // [K] int64: the member most frequent in files.code_counts, or
                               // undefined when no token directory was given
  std::string tokenizer_hash;
  nlohmann::json files;  // path and SHA-256 of every input file
  int64_t grid_h = 0, grid_w = 0;
  int64_t num_classes() const;
};

/// Stage-2 decoders (GenerateConfig::fine_decoder). "aux" is the learned stage 2 of CTF; the
/// others are the stage-2-free references that the study measures it against: each coarse
/// label becomes a uniformly random member of its cluster ("uniform"), the member most frequent
/// in the training tokens ("frequent"), or the member nearest the cluster's centroid
/// ("centroid").
const std::vector<std::string>& fine_decoder_names();

/// The model of a loaded component file (kind "gpt" / "aux"; another kind is an Error naming
/// the file), its weights loaded strictly, in eval mode, on default_device().
models::GPT load_gpt_component(const io::Component& c);
models::Aux load_aux_component(const io::Component& c);

/// Loads and cross-checks the files: the GPT's vocabulary must equal K (CTF) or V (baseline),
/// every file must record the same tokenizer hash, the aux model's vocabularies must match.
/// CTF mode = a cluster file is given; its aux model is optional (the stage-2-free decoders
/// need none).
/// The models are put on default_device() (core/device.h).
Generator load_generator(const GeneratorFiles& files);

struct GenerateConfig {
  sampling::SamplingConfig stage1 = sampling::SamplingConfig::ctf_stage1();  // AR loop
  sampling::SamplingConfig stage2 = sampling::SamplingConfig::ctf_stage2();  // aux pass (CTF)
  bool restrict_to_cluster = false;  // CTF: mask stage-2 logits to the sampled cluster's members
  std::string fine_decoder = "aux";  // CTF stage 2: aux | uniform | frequent | centroid
  int64_t batch_size = 16;           // images per AR batch (x2 rows with guidance)
  bool coarse_preview = false;       // CTF: also decode the coarse map through cluster centroids

  nlohmann::json to_json() const;
  static GenerateConfig from_json(const nlohmann::json& j);  // does not validate
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("stage1", self.stage1);
    visit("stage2", self.stage2);
    visit("restrict_to_cluster", self.restrict_to_cluster);
    visit("fine_decoder", self.fine_decoder);
    visit("batch_size", self.batch_size);
    visit("coarse_preview", self.coarse_preview);
  }
  void validate() const;
};

struct GenerateResult {
  at::Tensor images;   // [N, C, H, W] float in [-1, 1] (clamped)
  at::Tensor fine;     // [N, h, w] int64 codebook indices
  at::Tensor coarse;   // [N, h, w] int64 coarse labels (CTF) or undefined
  at::Tensor preview;  // [N, C, H, W] coarse preview (CTF, when asked) or undefined
  double seconds_stage1 = 0, seconds_stage2 = 0, seconds_decode = 0;
  double seconds_total() const { return seconds_stage1 + seconds_stage2 + seconds_decode; }
};

/// labels: [N] int64 in [0, num_classes). Deterministic for the generator state.
GenerateResult generate(Generator& g, const at::Tensor& labels, const GenerateConfig& config,
                        at::Generator& rng, bool show_progress = true);

/// Decodes token maps to images clamped to [-1, 1]. codes: [N, h, w] -> [N, C, H, W]
at::Tensor decode_tokens(Generator& g, const at::Tensor& codes);

}  // namespace ctfgen::pipeline
