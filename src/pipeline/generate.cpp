#include "pipeline/generate.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/device.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json_config.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/shape.h"
#include "core/timer.h"
#include "data/token_dir.h"
#include "io/checkpoint.h"
#include "io/tensor_hash.h"
#include "io/torch_import.h"
#include "sampling/ar_sampler.h"
#include "sampling/fine_sampler.h"

namespace ctfgen::pipeline {
namespace {


void check_hash(const io::Component& c, const std::string& tok_hash) {
  std::string h = c.meta.value("tokenizer_hash", std::string());
  CTFGEN_CHECK(h.empty() || h == tok_hash, c.path, ": was trained on tokens of another tokenizer (",
               h.substr(0, 12), "... vs ", tok_hash.substr(0, 12), "...)");
}

// A component's stored config; a bad one is an error in that file (exit 1), not a usage error.
template <class Config>
Config component_config(const io::Component& c) {
  try {
    auto config = Config::from_json(c.config);
    config.validate();
    return config;
  } catch (const UsageError& e) {
    throw Error(str_cat(c.path, ": bad ", c.kind, " config: ", e.what()));
  }
}

// For each cluster, the member whose normalised codeword is nearest the cluster's centroid
// (the clustering ran on normalised codewords: cluster/clustering.h). -> [K] int64
at::Tensor centroid_members(const cluster::CoarseMap& m, const at::Tensor& normalized_codebook) {
  torch::NoGradGuard no_grad;
  auto points = normalized_codebook.to(torch::kCPU, torch::kFloat);
  auto cent = m.centroids().to(torch::kFloat);
  CTFGEN_CHECK(points.size(0) == m.num_codes() && points.size(1) == cent.size(1),
               "centroid members: codebook ", shape_str(points.sizes()),
               " does not match the cluster file's centroids ", shape_str(cent.sizes()));
  // distance of every code to its own cluster's centroid; each cluster's minimum by a masked argmin
  auto own = cent.index_select(0, m.coarse_of().to(torch::kLong));
  auto d = (points - own).pow(2).sum(1);  // [V]
  auto table = torch::where(m.member_mask(), d.unsqueeze(0),
                            torch::full_like(d, INFINITY).unsqueeze(0));  // [K, V]
  return table.argmin(1).to(torch::kLong);
}

// For each cluster, its member with the largest count (ties: the smallest code). -> [K] int64
at::Tensor frequent_members(const cluster::CoarseMap& m, const at::Tensor& counts) {
  auto c = counts.to(torch::kDouble);
  auto table = torch::where(m.member_mask(), c.unsqueeze(0), torch::full_like(c, -1.0).unsqueeze(0));
  return table.argmax(1).to(torch::kLong);
}

}  // namespace

const std::vector<std::string>& fine_decoder_names() {
  static const std::vector<std::string> names{"aux", "uniform", "frequent", "centroid"};
  return names;
}

int64_t Generator::num_classes() const { return gpt->config().num_classes; }

models::GPT load_gpt_component(const io::Component& c) {
  CTFGEN_CHECK(c.kind == "gpt", c.path, ": is a '", c.kind, "' file, not a GPT (kind gpt)");
  models::GPT m(component_config<models::GPTConfig>(c));
  io::load_module_strict(*m, c.file);
  m->eval();
  m->to(default_device());
  return m;
}

models::Aux load_aux_component(const io::Component& c) {
  CTFGEN_CHECK(c.kind == "aux", c.path, ": is a '", c.kind, "' file, not a stage-2 model (kind aux)");
  models::Aux m(component_config<models::AuxConfig>(c));
  io::load_module_strict(*m, c.file);
  m->eval();
  m->to(default_device());
  return m;
}

Generator load_generator(const GeneratorFiles& files) {
  Generator g;
  CTFGEN_CHECK_USAGE(!files.tokenizer.empty(), "a tokenizer file is required (--tokenizer)");
  CTFGEN_CHECK_USAGE(!files.model.empty(), "a stage-1 or baseline model file is required (--model)");
  g.vq = vq::load_vq(files.tokenizer);
  g.tokenizer_hash = vq::vq_tokenizer_hash(g.vq);
  g.files["tokenizer"] = {{"path", files.tokenizer}, {"sha256", fs::sha256_file(files.tokenizer)}};

  auto gc = io::load_component_or_torch(files.model, "gpt");
  check_hash(gc, g.tokenizer_hash);
  g.gpt = load_gpt_component(gc);
  g.files["model"] = {{"path", files.model}, {"sha256", fs::sha256_file(files.model)}};
  const int64_t V = g.vq->config.codebook_size;
  const int64_t T = g.gpt->config().block_size;
  int64_t grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(T))));
  g.grid_h = g.grid_w = grid;

  std::string stage = gc.meta.value("stage", std::string("baseline"));
  if (files.clusters.empty()) {
    CTFGEN_CHECK_USAGE(files.aux.empty(), "--aux (CTF mode) also needs --clusters");
    CTFGEN_CHECK_USAGE(files.code_counts.empty(),
                       "--code-counts is only used in CTF mode (with --clusters)");
    CTFGEN_CHECK(stage != "coarse", files.model,
                 ": is a CTF stage-1 (coarse) model; pass its --clusters file (and --aux model)");
    CTFGEN_CHECK(g.gpt->config().vocab_size == V, files.model, ": vocabulary ",
                 g.gpt->config().vocab_size, " does not match the tokenizer's codebook size ", V);
    g.mode = "baseline";
    return g;
  }
  CTFGEN_CHECK(stage == "coarse", files.model, ": is a '", stage,
               "' model, but CTF mode needs a stage-1 (coarse) model");
  g.mode = "ctf";
  g.clusters = cluster::CoarseMap::load(files.clusters);
  g.clusters->check_tokenizer(g.tokenizer_hash, files.clusters);
  g.files["clusters"] = {{"path", files.clusters}, {"sha256", fs::sha256_file(files.clusters)}};
  const int64_t K = g.clusters->num_clusters();
  CTFGEN_CHECK(g.gpt->config().vocab_size == K, files.model, ": vocabulary ",
               g.gpt->config().vocab_size, " does not match the ", K, " clusters of ", files.clusters);
  std::string ch = io::hash_tensors({{"coarse_of", g.clusters->coarse_of()}});
  std::string gpt_ch = gc.meta.value("clusters_hash", std::string());
  CTFGEN_CHECK(gpt_ch.empty() || gpt_ch == ch, files.model,
               ": was trained with another cluster file than ", files.clusters);
  g.member_mask = g.clusters->member_mask().to(default_device());
  g.centroid_member = centroid_members(*g.clusters, g.vq->normalized_codebook());
  if (!files.code_counts.empty()) {
    auto tokens = data::load_token_dir(files.code_counts);
    CTFGEN_CHECK(tokens.meta.value("tokenizer_hash", std::string()) == g.tokenizer_hash,
                 files.code_counts, ": holds tokens of another tokenizer than ", files.tokenizer);
    auto counts = torch::bincount(tokens.codes.flatten().to(torch::kLong), {}, V);
    g.frequent_member = frequent_members(*g.clusters, counts);
    g.files["code_counts"] = {{"path", files.code_counts}, {"tokens", tokens.codes.numel()}};
  }
  if (files.aux.empty()) return g;
  auto ac = io::load_component(files.aux, "aux");
  check_hash(ac, g.tokenizer_hash);
  std::string aux_ch = ac.meta.value("clusters_hash", std::string());
  CTFGEN_CHECK(aux_ch.empty() || aux_ch == ch, files.aux, ": was trained with another cluster file than ",
               files.clusters);
  g.aux = load_aux_component(ac);
  const auto& acfg = g.aux->config();
  CTFGEN_CHECK(acfg.coarse_vocab == K && acfg.fine_vocab == V && acfg.block_size == T, files.aux,
               ": expects K=", acfg.coarse_vocab, ", V=", acfg.fine_vocab, ", T=", acfg.block_size,
               " but the files give K=", K, ", V=", V, ", T=", T);
  g.files["aux"] = {{"path", files.aux}, {"sha256", fs::sha256_file(files.aux)}};
  return g;
}

nlohmann::json GenerateConfig::to_json() const { return fields_to_json(*this); }

GenerateConfig GenerateConfig::from_json(const nlohmann::json& j) {
  return fields_from_json<GenerateConfig>(j, "generate config");
}

void GenerateConfig::validate() const {
  stage1.validate();
  stage2.validate();
  CTFGEN_CHECK_USAGE(batch_size >= 1 && batch_size <= 4096, "batch size must be in [1, 4096], got ",
                     batch_size);
  const auto& names = fine_decoder_names();
  CTFGEN_CHECK_USAGE(std::find(names.begin(), names.end(), fine_decoder) != names.end(),
                     "fine_decoder must be one of aux, uniform, frequent, centroid; got '",
                     fine_decoder, "'");
}

namespace {

// CTF stage 2 by the configured decoder: coarse [b, T] on any device -> fine [b, T] int64.
at::Tensor decode_fine(Generator& g, const at::Tensor& coarse, const at::Tensor& labels,
                       const GenerateConfig& config, at::Generator& rng) {
  const std::string& d = config.fine_decoder;
  if (d == "aux") {
    CTFGEN_CHECK_USAGE(g.aux, "fine decoder 'aux' needs the stage-2 model (--aux)");
    return sampling::sample_fine(g.aux, coarse, labels, config.stage2, rng,
                                 config.restrict_to_cluster ? &g.member_mask : nullptr);
  }
  auto c = coarse.to(torch::kCPU, torch::kLong);
  if (d == "uniform") {  // one draw per position among its cluster's members
    auto rows = g.member_mask.to(torch::kCPU).index_select(0, c.flatten()).to(torch::kFloat);
    return torch::multinomial(rows, 1, /*replacement=*/true, rng).view(c.sizes());
  }
  if (d == "frequent") {
    CTFGEN_CHECK_USAGE(g.frequent_member.defined(),
                       "fine decoder 'frequent' needs the training tokens' counts (--code-counts DIR)");
    return g.frequent_member.index_select(0, c.flatten()).view(c.sizes());
  }
  return g.centroid_member.index_select(0, c.flatten()).view(c.sizes());
}

}  // namespace

at::Tensor decode_tokens(Generator& g, const at::Tensor& codes) {
  return vq::decode_from_indices(g.vq, codes).clamp(-1.0, 1.0);
}

GenerateResult generate(Generator& g, const at::Tensor& labels, const GenerateConfig& config,
                        at::Generator& rng, bool show_progress) {
  config.validate();
  CTFGEN_CHECK_SHAPE(labels, {-1}, "generate: labels");
  const int64_t N = labels.size(0);
  CTFGEN_CHECK_USAGE(N >= 1, "generate: need at least one label");
  auto lab = labels.to(torch::kLong);
  const auto [lo, hi] = int_range(lab);
  CTFGEN_CHECK_USAGE(lo >= 0 && hi < g.num_classes(), "class labels must be in [0, ",
                     g.num_classes(), "), got ", lo, "..", hi);
  const int64_t T = g.gpt->config().block_size;
  GenerateResult r;
  std::vector<at::Tensor> stage1_out, fine_out;
  std::unique_ptr<Progress> progress;
  if (show_progress) progress = std::make_unique<Progress>("sample " + g.mode, N * T, "tok");
  for (int64_t start = 0; start < N; start += config.batch_size) {
    int64_t end = std::min(N, start + config.batch_size);
    auto y = lab.slice(0, start, end);
    auto t0 = std::chrono::steady_clock::now();
    int64_t last = 0;
    auto cb = [&](int64_t done, int64_t) {
      if (progress) progress->advance((done - last) * (end - start));
      last = done;
    };
    auto s1 = sampling::sample_ar(g.gpt, y, config.stage1, rng, cb);
    r.seconds_stage1 += seconds_since(t0);
    const auto s1_cpu = s1.cpu();  // results are gathered on the CPU
    stage1_out.push_back(s1_cpu);
    if (g.mode == "ctf") {
      t0 = std::chrono::steady_clock::now();
      fine_out.push_back(decode_fine(g, s1, y, config, rng).cpu());
      r.seconds_stage2 += seconds_since(t0);
    } else {
      fine_out.push_back(s1_cpu);  // the baseline's tokens are its codes
    }
  }
  if (progress) progress->finish();
  auto shape = std::vector<int64_t>{N, g.grid_h, g.grid_w};
  r.fine = torch::cat(fine_out).view(shape);
  if (g.mode == "ctf") r.coarse = torch::cat(stage1_out).view(shape);
  auto t0 = std::chrono::steady_clock::now();
  r.images = decode_tokens(g, r.fine);
  r.seconds_decode = seconds_since(t0);
  if (config.coarse_preview && g.mode == "ctf") {
    // The coarse map rendered through the (re-normalised) cluster centroids.
    torch::NoGradGuard no_grad;
    auto cent = torch::nn::functional::normalize(
        g.clusters->centroids().to(torch::kFloat),
        torch::nn::functional::NormalizeFuncOptions().dim(1).eps(1e-12));
    auto z = cent.index_select(0, r.coarse.flatten()).view({N, g.grid_h, g.grid_w, -1});
    r.preview = g.vq->decode(z.permute({0, 3, 1, 2}).contiguous().to(module_device(*g.vq)))
                    .clamp(-1.0, 1.0)
                    .cpu();
  }
  return r;
}

}  // namespace ctfgen::pipeline
