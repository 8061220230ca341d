#include "eval/evaluate.h"

#include <torch/torch.h>

#include <cmath>
#include <memory>

#include "core/error.h"
#include "core/rng.h"
#include "core/fs.h"
#include "core/json_config.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/shape.h"

namespace ctfgen::eval {

std::string network_identity(const std::string& kind, const std::string& config_json,
                             const std::string& tensors_hash) {
  const std::string text = kind + "\n" + config_json + "\n" + tensors_hash;
  return fs::sha256_bytes(text.data(), text.size());
}

nlohmann::json EvalConfig::to_json() const { return fields_to_json(*this); }

EvalConfig EvalConfig::from_json(const nlohmann::json& j) {
  auto c = fields_from_json<EvalConfig>(j, "eval config");
  c.validate();
  return c;
}

void EvalConfig::validate() const {
  CTFGEN_CHECK_USAGE(batch >= 1 && batch <= 65536, "eval config: batch must be in [1, 65536], got ",
                     batch);
  CTFGEN_CHECK_USAGE(is_splits >= 1 && is_splits <= 1000,
                     "eval config: is_splits must be in [1, 1000], got ", is_splits);
  CTFGEN_CHECK_USAGE(pr_k >= 1 && pr_k <= 1000, "eval config: pr_k must be in [1, 1000], got ",
                     pr_k);
  CTFGEN_CHECK_USAGE(pr_block >= 16 && pr_block <= 65536,
                     "eval config: pr_block must be in [16, 65536], got ", pr_block);
}

nlohmann::json EvalResult::to_json() const {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  return {{"fid", num(fid)},           {"is_mean", num(is_mean)}, {"is_std", num(is_std)},
          {"precision", num(precision)}, {"recall", num(recall)},   {"n_fake", n_fake},
          {"n_real", n_real},           {"net", net}};
}

FeatureOutput extract_features(FeatureNet& net, const at::Tensor& images, int64_t batch,
                               bool show_progress) {
  CTFGEN_CHECK(images.defined() && images.dim() == 4,
               "extract_features: expected images [N, C, H, W], got ",
               images.defined() ? shape_str(images.sizes()) : std::string("undefined"));
  CTFGEN_CHECK_USAGE(batch >= 1, "extract_features: batch must be >= 1, got ", batch);
  const int64_t n = images.size(0);
  CTFGEN_CHECK(n >= 1, "extract_features: no images");
  torch::NoGradGuard no_grad;
  {
    const double lo = images.min().item<double>(), hi = images.max().item<double>();
    CTFGEN_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo >= -1.001 && hi <= 1.001,
                 "extract_features: images must lie in [-1, 1], got [", lo, ", ", hi, "]");
  }
  std::vector<at::Tensor> feats, probs;
  std::unique_ptr<Progress> progress;
  if (show_progress) progress = std::make_unique<Progress>("features (" + net.name() + ")", n, "img");
  for (int64_t i = 0; i < n; i += batch) {
    const int64_t j = std::min(n, i + batch);
    auto out = net.run(images.slice(0, i, j).to(torch::kFloat));
    CTFGEN_CHECK_SHAPE(out.features, {j - i, net.feature_dim()}, "FeatureNet features");
    CTFGEN_CHECK_SHAPE(out.probs, {j - i, net.num_classes()}, "FeatureNet probabilities");
    feats.push_back(out.features.to(torch::kFloat));
    probs.push_back(out.probs.to(torch::kFloat));
    if (progress) progress->advance(j - i);
  }
  if (progress) progress->finish();
  return {torch::cat(feats, 0), torch::cat(probs, 0)};
}

EvalResult evaluate_features(const FeatureOutput& fake, const ReferenceStats& real,
                             const EvalConfig& config) {
  config.validate();
  CTFGEN_CHECK(fake.features.defined() && fake.features.dim() == 2,
               "evaluate_features: fake features must be [N, F]");
  CTFGEN_CHECK(fake.features.size(1) == real.stats.dim(), "evaluate_features: fake features have ",
               fake.features.size(1), " dimensions, reference statistics ", real.stats.dim());
  EvalResult r;
  r.n_fake = fake.features.size(0);
  r.n_real = real.stats.n;
  r.net = real.key.net_name;
  r.fid = frechet_distance(compute_feature_stats(fake.features), real.stats);
  if (fake.probs.defined()) {
    if (r.n_fake >= config.is_splits) {
      auto is = inception_score(fake.probs, config.is_splits);
      r.is_mean = is.mean;
      r.is_std = is.std;
    } else {
      log::warn("evaluate: ", r.n_fake, " samples < ", config.is_splits,
                " IS splits; Inception Score not computed");
    }
  }
  if (real.features.defined()) {
    if (r.n_fake > config.pr_k && real.features.size(0) > config.pr_k) {
      auto pr = precision_recall(real.features, fake.features, config.pr_k, config.pr_block);
      r.precision = pr.precision;
      r.recall = pr.recall;
    } else {
      log::warn("evaluate: too few samples for k = ", config.pr_k,
                " precision/recall; not computed");
    }
  } else {
    log::warn("evaluate: reference statistics hold no features; precision/recall not computed");
  }
  return r;
}

EvalResult evaluate_images(const at::Tensor& fake, const ReferenceStats& real, FeatureNet& net,
                           const EvalConfig& config) {
  config.validate();
  CTFGEN_CHECK(real.key.net == net.identity(), "evaluate_images: reference statistics were made with "
               "feature network ", real.key.net.substr(0, 16), " (", real.key.net_name,
               "), not with ", net.identity().substr(0, 16), " (", net.name(), ")");
  auto out = extract_features(net, fake, config.batch);
  auto r = evaluate_features(out, real, config);
  r.net = net.name();
  return r;
}

ReferenceStats reference_stats_for_images(const at::Tensor& real, FeatureNet& net, StatsKey key,
                                          const std::string& cache_dir, int64_t batch) {
  key.net = net.identity();
  key.net_name = net.name();
  return cached_reference_stats(cache_dir, key, [&] {
    return extract_features(net, real, batch).features;
  });
}

EvalResult evaluate_real_vs_real(const at::Tensor& fake, const at::Tensor& real, FeatureNet& net,
                                 const EvalConfig& config) {
  config.validate();
  ReferenceStats ref;
  ref.key.net = net.identity();
  ref.key.net_name = net.name();
  ref.features = extract_features(net, real, config.batch).features;
  ref.stats = compute_feature_stats(ref.features);
  return evaluate_images(fake, ref, net, config);
}

at::Tensor select_part(int64_t n, int64_t part, int64_t parts, uint64_t seed, int64_t limit) {
  CTFGEN_CHECK_USAGE(parts >= 1 && part >= 0 && part < parts, "part ", part, " of ", parts,
                     " does not exist (parts are numbered 0 .. parts-1)");
  CTFGEN_CHECK_USAGE(n >= parts, "cannot split ", n, " images into ", parts, " parts");
  CTFGEN_CHECK_USAGE(limit >= 0, "limit must be >= 0, got ", limit);
  auto gen = make_generator(seed);
  auto perm = torch::randperm(n, gen, torch::kLong);
  const int64_t size = n / parts;
  auto idx = perm.narrow(0, part * size, size);
  return limit > 0 && limit < size ? idx.narrow(0, 0, limit) : idx;
}

}  // namespace ctfgen::eval
